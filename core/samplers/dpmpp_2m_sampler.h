// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", algorithm 2, midpoint form) with
// diffusers' DPMSolverMultistepScheduler semantics: algorithm_type "dpmsolver++",
// solver_order 2, solver_type "midpoint", lower_order_final, final_sigmas_type "zero".
//
// Works on the data prediction x0 and the half-log-SNR lambda = log(alpha_t / sigma_t) with
// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (sigma from the interpolated
// sigma table). The first step of a run (no history) and the last step (to sigma = 0) are
// first order (DDIM-like); the last one returns exactly the x0 prediction. Never draws noise,
// never clips (thresholding only if configured).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

class DpmSolverPP2MSampler : public Sampler {
 public:
  explicit DpmSolverPP2MSampler(const ScheduleConfig& schedule);

  std::string name() const override { return "dpmpp_2m"; }
  void set_timesteps(int steps) override;
  const at::Tensor& timesteps() const override { return timesteps_; }
  const at::Tensor& sigmas() const { return sigmas_; }
  // alpha_t * x0 + sigma_t * noise with alpha_t, sigma_t from sigmas()[index].
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const override;
  at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                 const StepFn& on_step) override;

 private:
  ScheduleConfig schedule_;
  at::Tensor alphas_cumprod_;  // [T] float32
  at::Tensor timesteps_;       // [S] int64
  at::Tensor sigmas_;          // [S + 1] float32, last 0
};

}  // namespace gd::core
