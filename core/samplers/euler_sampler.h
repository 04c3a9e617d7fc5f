// Euler and Euler ancestral sampling in sigma space (Karras et al. 2022, alg. 1 with no churn;
// the ancestral variant of k-diffusion), with diffusers' EulerDiscreteScheduler and
// EulerAncestralDiscreteScheduler semantics.
//
// The sample is variance exploding, x = x0 + sigma * eps, starting at noise * init_noise_sigma();
// the network sees x / sqrt(sigma^2 + 1) at a float32 timestep. A step moves along
// d = (x - x0) / sigma from sigma to the next sigma (Euler), or to sigma_down and then adds
// sigma_up * z with one randn z of the sample's shape at every step, the last included
// (ancestral; sigma_up^2 = s'^2 (s^2 - s'^2) / s^2, sigma_down^2 = s'^2 - sigma_up^2).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

class EulerSampler : public Sampler {
 public:
  enum class Variant { Euler, Ancestral };

  EulerSampler(const ScheduleConfig& schedule, Variant variant);

  std::string name() const override { return variant_ == Variant::Euler ? "euler" : "euler_a"; }
  void set_timesteps(int steps) override;
  const at::Tensor& timesteps() const override { return timesteps_; }
  const at::Tensor& sigmas() const { return sigmas_; }
  // max(sigmas) for linspace / trailing spacing, sqrt(max^2 + 1) for leading (diffusers).
  double init_noise_sigma() const override { return init_noise_sigma_; }
  // x0 + noise * sigmas()[index].
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const override;
  at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                 const StepFn& on_step) override;

 private:
  ScheduleConfig schedule_;
  Variant variant_;
  at::Tensor alphas_cumprod_;  // [T] float32
  at::Tensor timesteps_;       // [S] float32
  at::Tensor sigmas_;          // [S + 1] float32, last 0
  double init_noise_sigma_ = 1.0;
};

}  // namespace gd::core
