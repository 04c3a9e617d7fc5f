// Choosing a sampler by name for a model's schedule.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

struct SamplerOptions {
  double eta = 0.0;  // DDIM's stochasticity (0 deterministic, 1 DDPM-like)
};

// "ddpm", "ddim", "dpmpp_2m", "euler", "euler_a".
const std::vector<std::string>& sampler_names();

// The sampler `name` with the semantics of the model's family: diffusers' schedulers for
// diffusers and TorchScript models; denoising-diffusion-pytorch's p_sample_loop / ddim_sample
// for its checkpoints (ddpm and ddim), and diffusers-style solvers on their betas otherwise.
// Throws gd::Error for an unknown name or an option out of range.
std::unique_ptr<Sampler> make_sampler(const std::string& name, const ScheduleConfig& schedule,
                                      const SamplerOptions& options);

}  // namespace gd::core
