// DDIM sampling (Song et al. 2021) with diffusers' DDIMScheduler semantics.
//
// Each step goes from t to t' = t - T // steps (whatever the spacing; alpha_bar_{t'} = 1 when
// t' < 0) with Song et al. eq. 12:
//   x_{t'} = sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z,
//   s = eta * sqrt((1 - a') / (1 - a) * (1 - a / a'))      (eq. 16 scaled by eta),
// x0 clipped (or thresholded) but eps the network's own. z is one randn of the sample's shape,
// drawn at every step, the last included, iff eta > 0. eta = 0 is deterministic.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

class DdimSampler : public Sampler {
 public:
  // eta in [0, 1] (checked by make_sampler).
  DdimSampler(const ScheduleConfig& schedule, double eta);

  std::string name() const override { return "ddim"; }
  void set_timesteps(int steps) override;
  const at::Tensor& timesteps() const override { return timesteps_; }
  // sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise at t = timesteps()[index].
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const override;
  at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                 const StepFn& on_step) override;

 private:
  at::Tensor step(const at::Tensor& out, int index, const at::Tensor& x,
                  at::Generator& generator) const;

  ScheduleConfig schedule_;
  double eta_;
  int steps_ = 0;              // the count given to set_timesteps (sets the stride T // steps)
  at::Tensor alphas_cumprod_;  // [T] float32
  at::Tensor timesteps_;       // [S] int64
};

}  // namespace gd::core
