// Samplers: small classes behind one interface. They see the network only as a callback.
//
//   std::unique_ptr<Sampler> sampler = make_sampler(...);   // see core/samplers.h
//   sampler->set_timesteps(20);
//   at::Tensor x = noise * sampler->init_noise_sigma();
//   x = sampler->run(x, 0, network_callback, generator, on_step);
//
// img2img starts later in the chain: x = sampler->add_noise(image, noise, first) and
// run(x, first, ...). The loop itself, the order of random draws and the timesteps are each
// sampler's own business, because "same seed, same image" depends on them.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <string>

namespace gd::core {

// The network: (model input [N, C, H, W], timesteps [N] int64 or float32, optional
// self-conditioning x0 [N, C, H, W]) -> raw output [N, C_out, H, W].
using ModelFn = std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t,
                                         const std::optional<at::Tensor>& self_cond)>;

// Called after each step with (steps done, total steps in this run). Returning false cancels:
// run() then throws gd::Cancelled.
using StepFn = std::function<bool(int done, int total)>;

class Sampler {
 public:
  virtual ~Sampler() = default;

  virtual std::string name() const = 0;

  // Chooses `steps` inference timesteps (and sigmas, for sigma-space samplers).
  virtual void set_timesteps(int steps) = 0;

  // The timesteps the loop visits, in order ([S] int64 or float32, as the reference has them).
  virtual const at::Tensor& timesteps() const = 0;

  // Standard deviation of the starting noise (1 for DDPM/DDIM, sigma_max-ish for Euler).
  virtual double init_noise_sigma() const { return 1.0; }

  // The noisy sample at timesteps()[index] for a clean sample x0 (img2img's starting point).
  virtual at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const = 0;

  // Runs the reverse process from timesteps()[first] to the end and returns the final sample.
  virtual at::Tensor run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                         const StepFn& on_step) = 0;
};

}  // namespace gd::core
