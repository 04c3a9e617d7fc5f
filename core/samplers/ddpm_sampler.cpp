#include "core/samplers/ddpm_sampler.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "core/error.h"
#include "core/noise_draw.h"
#include "core/prediction.h"
#include "core/timesteps.h"

namespace gd::core {

at::Tensor dynamic_threshold(const at::Tensor& x0, double ratio, double max_value) {
  const std::int64_t n = x0.size(0);
  at::Tensor flat = x0.reshape({n, -1});                                         // [N, C*H*W]
  at::Tensor s = at::quantile(flat.abs(), ratio, /*dim=*/1, /*keepdim=*/false);  // [N]
  // Clamped to at least 1: with s = 1 this is plain clipping to [-1, 1].
  s = at::clamp(s, 1.0, max_value).unsqueeze(1);  // [N, 1]
  return (at::clamp(flat, -s, s) / s).reshape(x0.sizes());
}

at::Tensor clip_or_threshold(const at::Tensor& x0, const ScheduleConfig& schedule) {
  if (schedule.thresholding) {
    return dynamic_threshold(x0, schedule.dynamic_thresholding_ratio, schedule.sample_max_value);
  }
  if (schedule.clip_sample) {
    return x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range);
  }
  return x0;
}

at::Tensor prediction_channels(const at::Tensor& out, const at::Tensor& x) {
  if (out.size(1) == 2 * x.size(1)) return out.narrow(1, 0, x.size(1));
  return out;
}

DdpmSampler::DdpmSampler(const ScheduleConfig& schedule) : schedule_(schedule) {
  const std::string& v = schedule.variance_type;
  if (v != "fixed_small" && v != "fixed_small_log" && v != "fixed_large" && v != "learned" &&
      v != "learned_range") {
    throw Error("ddpm sampler: variance_type '" + v +
                "' is not supported (fixed_small, fixed_small_log, fixed_large, learned, "
                "learned_range)");
  }
  alphas_cumprod_ = cumulative_alphas(make_betas(schedule));
}

void DdpmSampler::set_timesteps(int steps) { timesteps_ = ddpm_timesteps(schedule_, steps); }

at::Tensor DdpmSampler::add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const {
  if (!timesteps_.defined()) throw Error("ddpm sampler: set_timesteps was not called");
  const std::int64_t t = timesteps_[index].item<std::int64_t>();
  at::Tensor a = alphas_cumprod_[t].to(x0.dtype());  // 0-d
  return at::pow(a, 0.5) * x0 + at::pow(1 - a, 0.5) * noise;
}

at::Tensor DdpmSampler::step(const at::Tensor& raw, int index, const at::Tensor& x,
                             at::Generator& generator) const {
  const std::int64_t steps = timesteps_.size(0);
  const std::int64_t t = timesteps_[index].item<std::int64_t>();
  const std::int64_t T = alphas_cumprod_.size(0);
  if (t < 0 || t >= T) {
    throw Error("ddpm sampler: timestep " + std::to_string(t) + " is outside the " +
                std::to_string(T) + " training steps");
  }
  // The previous timestep is the next entry of the schedule; -1 after the last one.
  const std::int64_t prev_t = index + 1 < steps ? timesteps_[index + 1].item<std::int64_t>() : -1;

  const bool learned =
      schedule_.variance_type == "learned" || schedule_.variance_type == "learned_range";
  at::Tensor out = raw;           // [N, C, H, W]
  at::Tensor predicted_variance;  // [N, C, H, W] for learned variance
  if (learned && raw.size(1) == 2 * x.size(1)) {
    out = raw.narrow(1, 0, x.size(1));
    predicted_variance = raw.narrow(1, x.size(1), x.size(1));
  } else {
    out = prediction_channels(raw, x);
  }

  // 0-d float32 scalars, in diffusers' order of operations.
  at::Tensor a_t = alphas_cumprod_[t];
  at::Tensor a_prev = prev_t >= 0 ? alphas_cumprod_[prev_t] : at::scalar_tensor(1.0, at::kFloat);
  at::Tensor beta_prod_t = 1 - a_t;
  at::Tensor beta_prod_prev = 1 - a_prev;
  at::Tensor current_alpha = a_t / a_prev;
  at::Tensor current_beta = 1 - current_alpha;  // strided beta

  // x0 from the network output (x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps), then clipped.
  at::Tensor x0 = interpret_output(schedule_.prediction_type, x, out, at::pow(a_t, 0.5),
                                   at::pow(beta_prod_t, 0.5))
                      .x0;
  x0 = clip_or_threshold(x0, schedule_);

  // Posterior mean (Ho et al. 2020 eq. 7).
  at::Tensor x0_coeff = (at::pow(a_prev, 0.5) * current_beta) / beta_prod_t;
  at::Tensor xt_coeff = at::pow(current_alpha, 0.5) * beta_prod_prev / beta_prod_t;
  at::Tensor prev = x0_coeff * x0 + xt_coeff * x;  // [N, C, H, W]

  if (t > 0) {
    at::Tensor noise = draw_noise(out.sizes(), generator, out.options());  // [N, C, H, W]
    // Posterior variance beta~ = (1 - a_prev) / (1 - a_t) * beta (Ho et al. eq. 7).
    at::Tensor variance = at::clamp_min((1 - a_prev) / (1 - a_t) * current_beta, 1e-20);
    const std::string& type = schedule_.variance_type;
    at::Tensor term;
    if (type == "fixed_small_log") {
      term = at::exp(0.5 * at::log(variance)) * noise;
    } else if (type == "fixed_large") {
      term = at::pow(current_beta, 0.5) * noise;
    } else if (type == "learned" && predicted_variance.defined()) {
      term = at::pow(predicted_variance, 0.5) * noise;
    } else if (type == "learned_range" && predicted_variance.defined()) {
      // Improved DDPM (Nichol & Dhariwal 2021, eq. 15): interpolate the log variance between
      // beta~ and beta with v = (out + 1) / 2.
      at::Tensor min_log = at::log(variance);
      at::Tensor max_log = at::log(current_beta);
      at::Tensor frac = (predicted_variance + 1) / 2;
      at::Tensor log_var = frac * max_log + (1 - frac) * min_log;
      term = at::exp(0.5 * log_var) * noise;
    } else {
      term = at::pow(variance, 0.5) * noise;
    }
    prev = prev + term;
  }
  return prev;
}

at::Tensor DdpmSampler::run(at::Tensor x, int first, const ModelFn& model, at::Generator& generator,
                            const StepFn& on_step) {
  if (!timesteps_.defined()) throw Error("ddpm sampler: set_timesteps was not called");
  const int steps = static_cast<int>(timesteps_.size(0));
  if (first < 0 || first >= steps) {
    throw Error("ddpm sampler: first step " + std::to_string(first) + " is outside 0.." +
                std::to_string(steps - 1));
  }
  const std::int64_t n = x.size(0);
  for (int i = first; i < steps; ++i) {
    at::Tensor t = timesteps_.narrow(0, i, 1).repeat({n});  // [N] int64
    at::Tensor out = model(x, t, std::nullopt);             // no input scaling for DDPM
    x = step(out, i, x, generator);
    if (on_step && !on_step(i - first + 1, steps - first)) throw Cancelled();
  }
  return x;
}

}  // namespace gd::core
