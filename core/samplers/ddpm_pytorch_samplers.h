// denoising-diffusion-pytorch's own samplers (GaussianDiffusion.p_sample_loop and ddim_sample,
// package 2.3.1), seed for seed: same model times, same clamping, same random draws in the
// same order, on the package's own float32 buffers (ScheduleConfig::stored_buffers).
//
//   auto sampler = make_ddpm_pytorch_sampler("ddim", model.schedule, {/*eta=*/0.0});
//   sampler->set_timesteps(10);                          // model times 99, 89, ..., 9 for T=100
//   at::Tensor x = at::randn({n, c, h, w}, generator);   // = the package's first torch.randn
//   x = sampler->run(x, 0, network_callback, generator, on_step);   // [-1, 1] model space
//
// "ddpm", steps == T: p_sample_loop exactly (DDPM eq. 6/7 posterior, x0 clamped in place,
//   noise drawn after the network call only while t > 0).
// "ddpm", steps < T: the package has no strided ancestral sampler; we run ddim_sample with
//   eta = 1 (DDIM eq. 16: sigma_t = sqrt((1 - a/a_next)(1 - a_next)/(1 - a)), the DDPM posterior
//   variance for the strided chain) on ddim_sample's time pairs.
//   "ddpm" ignores SamplerOptions::eta.
// "ddim": ddim_sample with the SamplerOptions eta: time pairs from
//   torch.linspace(-1, T-1, steps+1) (float32, truncated to int, reversed), x0 clamped and eps
//   re-derived from it, a randn draw at every step but the last one even when eta == 0, and the
//   last pair (time_next == -1) returns the clamped x0.
//
// Self-conditioning: the sampler always offers the previous step's clamped x0 to the model
// callback (nullopt at the first step of a run); the callback decides whether the network
// uses it, as the package does with `x_start if self.self_condition else None`.
//
// Learned variance (network output has 2*C channels, LearnedGaussianDiffusion): the first C
// channels are read as predicted noise, whatever the schedule's prediction type, because
// LearnedGaussianDiffusion trains them against the noise (p_losses) and its p_mean_variance
// reads them as noise. "ddpm" with steps == T interpolates the log variance between
// posterior_log_variance_clipped and log(betas) with the last C channels; ddim ignores them.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/sampler.h"
#include "core/samplers.h"
#include "core/schedule.h"

namespace gd::core {

// "ddpm" or "ddim" on a ScheduleConfig of Family::DdpmPytorch (its stored_buffers are used as
// they are). Throws gd::Error for another name, another family, missing buffers, or eta outside
// [0, 1].
std::unique_ptr<Sampler> make_ddpm_pytorch_sampler(const std::string& name,
                                                   const ScheduleConfig& schedule,
                                                   const SamplerOptions& options);

// ddim_sample's (time, time_next) pairs for `steps` sampling steps out of `num_timesteps`;
// the last pair has time_next == -1. Throws gd::Error unless 1 <= steps <= num_timesteps.
std::vector<std::array<std::int64_t, 2>> ddpm_pytorch_time_pairs(std::int64_t num_timesteps,
                                                                 int steps);

// The package's float32 [T] tables this file uses, on one device.
struct DdpmPytorchTables {
  std::int64_t num_timesteps = 0;
  at::Tensor betas;
  at::Tensor alphas_cumprod;
  at::Tensor sqrt_alphas_cumprod;
  at::Tensor sqrt_one_minus_alphas_cumprod;
  at::Tensor posterior_mean_coef1;
  at::Tensor posterior_mean_coef2;
  at::Tensor posterior_log_variance_clipped;
};

// What both samplers share: the tables, the time pairs, add_noise (q_sample) and the loop.
class DdpmPytorchSamplerBase : public Sampler {
 public:
  DdpmPytorchSamplerBase(const ScheduleConfig& schedule, double eta);

  void set_timesteps(int steps) override;
  const at::Tensor& timesteps() const override { return timesteps_; }
  // q_sample at t = timesteps()[index]:
  // sqrt_alphas_cumprod[t] * x0 + sqrt_one_minus_alphas_cumprod[t] * noise.
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const override;
  // Runs the pairs from timesteps()[first] on; returns the final x in [-1, 1] model space.
  at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                 const StepFn& on_step) override;

 protected:
  struct StepResult {
    at::Tensor x;   // [N, C, H, W] the sample at time_next (or the clamped x0 at the end)
    at::Tensor x0;  // [N, C, H, W] the clamped x0 prediction (next self-conditioning input)
  };
  // One step from `time` to `time_next` (-1 after the last) given the raw network output.
  virtual StepResult step(const DdpmPytorchTables& tables, const at::Tensor& x,
                          const at::Tensor& out, std::int64_t time, std::int64_t time_next,
                          at::Generator& generator) const = 0;

  // ddim_sample's update (DDIM eq. 12 with sigma from eq. 16 scaled by eta).
  StepResult ddim_step(const DdpmPytorchTables& tables, const at::Tensor& x, const at::Tensor& out,
                       std::int64_t time, std::int64_t time_next, double eta,
                       at::Generator& generator) const;

  PredictionType prediction_type_;
  DdpmPytorchTables tables_;  // CPU float32
  double eta_ = 0.0;
  int steps_ = 0;
  std::vector<std::array<std::int64_t, 2>> pairs_;
  at::Tensor timesteps_;  // [steps] int64, the model times in order
};

// p_sample_loop for steps == T; ddim_sample with eta = 1 for fewer steps.
class DdpmPytorchAncestralSampler : public DdpmPytorchSamplerBase {
 public:
  explicit DdpmPytorchAncestralSampler(const ScheduleConfig& schedule)
      : DdpmPytorchSamplerBase(schedule, 1.0) {}
  std::string name() const override { return "ddpm"; }

 protected:
  StepResult step(const DdpmPytorchTables& tables, const at::Tensor& x, const at::Tensor& out,
                  std::int64_t time, std::int64_t time_next,
                  at::Generator& generator) const override;
};

// ddim_sample with the given eta.
class DdpmPytorchDdimSampler : public DdpmPytorchSamplerBase {
 public:
  DdpmPytorchDdimSampler(const ScheduleConfig& schedule, double eta)
      : DdpmPytorchSamplerBase(schedule, eta) {}
  std::string name() const override { return "ddim"; }

 protected:
  StepResult step(const DdpmPytorchTables& tables, const at::Tensor& x, const at::Tensor& out,
                  std::int64_t time, std::int64_t time_next,
                  at::Generator& generator) const override {
    return ddim_step(tables, x, out, time, time_next, eta_, generator);
  }
};

}  // namespace gd::core
