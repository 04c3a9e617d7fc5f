// The one place where prediction types are converted.
//
// Every sampler writes the noisy sample as x_t = alpha_t * x0 + sigma_t * eps (variance
// preserving: alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t)), and asks this file
// for the x0 and eps that a network output means:
//   epsilon: eps = out,                 x0 = (x_t - sigma_t * eps) / alpha_t
//   sample:  x0 = out,                  eps = (x_t - alpha_t * x0) / sigma_t
//   v:       x0 = alpha_t x_t - sigma_t v,  eps = alpha_t v + sigma_t x_t   (Salimans & Ho 2022)
// alpha and sigma are float32 tensors broadcastable against x_t (0-d for one timestep).
#pragma once

#include <ATen/core/Tensor.h>

#include "core/schedule.h"

namespace gd::core {

struct Prediction {
  at::Tensor x0;   // [N, C, H, W] predicted clean sample
  at::Tensor eps;  // [N, C, H, W] predicted noise
};

Prediction interpret_output(PredictionType type, const at::Tensor& x_t,
                            const at::Tensor& model_output, const at::Tensor& alpha,
                            const at::Tensor& sigma);

// eps implied by x_t and a (possibly clipped) x0: (x_t - alpha * x0) / sigma.
at::Tensor eps_from_x0(const at::Tensor& x_t, const at::Tensor& x0, const at::Tensor& alpha,
                       const at::Tensor& sigma);

}  // namespace gd::core
