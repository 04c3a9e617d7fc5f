// What the engine sees of a denoising network: one forward call.
//
// Samplers never see this class; pipelines wrap forward() into the sampler's callback.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "models/param_store.h"

namespace gd::models {

class Network {
 public:
  virtual ~Network() = default;

  // x: [N, C_in, H, W] float; t: [N] int64 timesteps (float for fractional ones);
  // self_cond: [N, C, H, W] previous x0 estimate, only for self-conditioned models.
  // Returns [N, C_out, H, W]: the prediction (and, with learned variance, the variance
  // channels after it).
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                             const std::optional<at::Tensor>& self_cond) const = 0;

  // Wrap-around (circular) padding in every convolution instead of zeros: the network sees the
  // image as a torus, so what it makes tiles seamlessly. Returns false when the network cannot
  // (TorchScript modules own their padding).
  virtual bool set_seamless(bool on) { return !on; }

  // Parameters by checkpoint name (empty for TorchScript networks, which own theirs).
  virtual ParamStore* params() { return nullptr; }
};

}  // namespace gd::models
