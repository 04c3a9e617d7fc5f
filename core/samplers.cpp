#include "core/samplers.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "core/samplers/ddim_sampler.h"
#include "core/samplers/ddpm_pytorch_samplers.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/samplers/dpmpp_2m_sampler.h"
#include "core/samplers/euler_sampler.h"

namespace gd::core {

namespace {

std::string valid_names() {
  std::string out;
  for (const std::string& name : sampler_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// denoising-diffusion-pytorch checkpoints under the diffusers-style solvers: their own betas,
// with trailing spacing so that the first step starts at the last training time (T - 1), as
// the package's own samplers do.
ScheduleConfig solver_schedule_for_ddpm_pytorch(const ScheduleConfig& schedule) {
  ScheduleConfig s = schedule;
  if (s.beta_schedule == BetaSchedule::Given && s.given_betas.empty()) {
    auto it = s.stored_buffers.find("betas");
    if (it != s.stored_buffers.end()) {
      at::Tensor betas = it->second.to(at::kCPU).to(at::kDouble).contiguous();
      s.given_betas.assign(betas.data_ptr<double>(), betas.data_ptr<double>() + betas.numel());
    }
  }
  s.timestep_spacing = TimestepSpacing::Trailing;
  s.steps_offset = 0;
  s.family = ScheduleConfig::Family::Diffusers;
  return s;
}

}  // namespace

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> names = {"ddpm", "ddim", "dpmpp_2m", "euler", "euler_a"};
  return names;
}

std::unique_ptr<Sampler> make_sampler(const std::string& name, const ScheduleConfig& schedule,
                                      const SamplerOptions& options) {
  bool known = false;
  for (const std::string& n : sampler_names()) known = known || n == name;
  if (!known) throw Error("unknown sampler '" + name + "' (valid: " + valid_names() + ")");
  if (!(options.eta >= 0.0 && options.eta <= 1.0)) {
    throw Error("eta must be between 0 and 1, got " + std::to_string(options.eta));
  }

  if (schedule.family == ScheduleConfig::Family::DdpmPytorch) {
    if (name == "ddpm" || name == "ddim") return make_ddpm_pytorch_sampler(name, schedule, options);
    const ScheduleConfig s = solver_schedule_for_ddpm_pytorch(schedule);
    if (name == "dpmpp_2m") return std::make_unique<DpmSolverPP2MSampler>(s);
    if (name == "euler") return std::make_unique<EulerSampler>(s, EulerSampler::Variant::Euler);
    return std::make_unique<EulerSampler>(s, EulerSampler::Variant::Ancestral);
  }

  if (name == "ddpm") return std::make_unique<DdpmSampler>(schedule);
  if (name == "ddim") return std::make_unique<DdimSampler>(schedule, options.eta);
  if (name == "dpmpp_2m") return std::make_unique<DpmSolverPP2MSampler>(schedule);
  if (name == "euler")
    return std::make_unique<EulerSampler>(schedule, EulerSampler::Variant::Euler);
  return std::make_unique<EulerSampler>(schedule, EulerSampler::Variant::Ancestral);
}

}  // namespace gd::core
