// Ancestral DDPM sampling (Ho et al. 2020) with diffusers' DDPMScheduler semantics.
//
// Each step samples x_{t'} from the posterior q(x_{t'} | x_t, x0) (Ho et al. eq. 6/7) between
// consecutive inference timesteps t > t' (t' = -1 after the last, where alpha_bar = 1), using
// the strided beta 1 - alpha_bar_t / alpha_bar_t', with x0 predicted by the network and clipped
// (or dynamically thresholded). Noise is one randn of the sample's shape, drawn after the mean,
// only when t > 0.
//
//   DdpmSampler sampler(schedule);
//   sampler.set_timesteps(20);
//   x = sampler.run(noise, 0, model, generator, on_step);
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

// Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3) as diffusers does it: per
// sample, s = the `ratio` quantile of |x0| clamped to [1, max_value]; x0 -> clamp(x0, -s, s) / s.
at::Tensor dynamic_threshold(const at::Tensor& x0, double ratio, double max_value);

// DDPM/DDIM's treatment of the predicted x0 [N, C, H, W]: thresholding if configured, else
// clamping to [-clip_sample_range, clip_sample_range] if clip_sample, else unchanged.
at::Tensor clip_or_threshold(const at::Tensor& x0, const ScheduleConfig& schedule);

// The prediction channels of a network output: the first C of 2*C when the network also
// predicts a variance (learned / learned_range), else the output itself.
at::Tensor prediction_channels(const at::Tensor& out, const at::Tensor& x);

class DdpmSampler : public Sampler {
 public:
  // Throws gd::Error for a variance_type other than fixed_small, fixed_small_log,
  // fixed_large, learned or learned_range.
  explicit DdpmSampler(const ScheduleConfig& schedule);

  std::string name() const override { return "ddpm"; }
  void set_timesteps(int steps) override;
  const at::Tensor& timesteps() const override { return timesteps_; }
  // sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise at t = timesteps()[index].
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const override;
  at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                 const StepFn& on_step) override;

 private:
  // One reverse step at timesteps_[index] given the raw network output.
  at::Tensor step(const at::Tensor& out, int index, const at::Tensor& x,
                  at::Generator& generator) const;

  ScheduleConfig schedule_;
  at::Tensor alphas_cumprod_;  // [T] float32
  at::Tensor timesteps_;       // [S] int64
};

}  // namespace gd::core
