#include "core/samplers/ddim_sampler.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "core/error.h"
#include "core/noise_draw.h"
#include "core/prediction.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/timesteps.h"

namespace gd::core {

DdimSampler::DdimSampler(const ScheduleConfig& schedule, double eta)
    : schedule_(schedule), eta_(eta) {
  alphas_cumprod_ = cumulative_alphas(make_betas(schedule));
}

void DdimSampler::set_timesteps(int steps) {
  timesteps_ = ddpm_timesteps(schedule_, steps);
  steps_ = steps;
}

at::Tensor DdimSampler::add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const {
  if (!timesteps_.defined()) throw Error("ddim sampler: set_timesteps was not called");
  const std::int64_t t = timesteps_[index].item<std::int64_t>();
  at::Tensor a = alphas_cumprod_[t].to(x0.dtype());  // 0-d
  return at::pow(a, 0.5) * x0 + at::pow(1 - a, 0.5) * noise;
}

at::Tensor DdimSampler::step(const at::Tensor& raw, int index, const at::Tensor& x,
                             at::Generator& generator) const {
  const std::int64_t T = alphas_cumprod_.size(0);
  const std::int64_t t = timesteps_[index].item<std::int64_t>();
  if (t < 0 || t >= T) {
    throw Error("ddim sampler: timestep " + std::to_string(t) + " is outside the " +
                std::to_string(T) + " training steps");
  }
  // diffusers strides by T // steps, not to the next entry of the schedule.
  const std::int64_t prev_t = t - T / steps_;
  at::Tensor out = prediction_channels(raw, x);  // [N, C, H, W]

  // 0-d float32 scalars (alpha_bar_{t'} = 1 past the end: set_alpha_to_one).
  at::Tensor a_t = alphas_cumprod_[t];
  at::Tensor a_prev = prev_t >= 0 ? alphas_cumprod_[prev_t] : at::scalar_tensor(1.0, at::kFloat);
  at::Tensor beta_prod_t = 1 - a_t;

  Prediction p = interpret_output(schedule_.prediction_type, x, out, at::pow(a_t, 0.5),
                                  at::pow(beta_prod_t, 0.5));
  at::Tensor x0 = clip_or_threshold(p.x0, schedule_);

  // sigma_t of Song et al. eq. 16, scaled by eta.
  at::Tensor beta_prod_prev = 1 - a_prev;
  at::Tensor variance = (beta_prod_prev / beta_prod_t) * (1 - a_t / a_prev);
  at::Tensor std_dev = at::pow(variance, 0.5) * eta_;

  // Eq. 12: "predicted x0" + "direction pointing to x_t" (+ random noise).
  at::Tensor direction = at::pow(1 - a_prev - at::pow(std_dev, 2), 0.5) * p.eps;
  at::Tensor prev = at::pow(a_prev, 0.5) * x0 + direction;  // [N, C, H, W]
  if (eta_ > 0) {
    at::Tensor noise = draw_noise(out.sizes(), generator, out.options());  // [N, C, H, W]
    prev = prev + std_dev * noise;
  }
  return prev;
}

at::Tensor DdimSampler::run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                            const StepFn& on_step) {
  if (!timesteps_.defined()) throw Error("ddim sampler: set_timesteps was not called");
  const int steps = static_cast<int>(timesteps_.size(0));
  if (first < 0 || first >= steps) {
    throw Error("ddim sampler: first step " + std::to_string(first) + " is outside 0.." +
                std::to_string(steps - 1));
  }
  const std::int64_t n = x.size(0);
  for (int i = first; i < steps; ++i) {
    at::Tensor t = timesteps_.narrow(0, i, 1).repeat({n});  // [N] int64
    at::Tensor out = model(x, t, std::nullopt);             // no input scaling for DDIM
    x = step(out, i, x, generator);
    if (on_step && !on_step(i - first + 1, steps - first)) throw Cancelled();
  }
  return x;
}

}  // namespace gd::core
