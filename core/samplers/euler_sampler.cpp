#include "core/samplers/euler_sampler.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "core/error.h"
#include "core/noise_draw.h"
#include "core/prediction.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/timesteps.h"

namespace gd::core {

EulerSampler::EulerSampler(const ScheduleConfig& schedule, Variant variant)
    : schedule_(schedule), variant_(variant) {
  alphas_cumprod_ = cumulative_alphas(make_betas(schedule));
}

void EulerSampler::set_timesteps(int steps) {
  timesteps_ = euler_timesteps(schedule_, steps);
  sigmas_ = interpolated_sigmas(alphas_cumprod_, timesteps_);
  at::Tensor max_sigma = sigmas_.max();  // 0-d float32
  // With leading spacing the first timestep is below T - 1, and diffusers scales the initial
  // noise by the variance-preserving total sqrt(sigma^2 + 1) rather than sigma.
  init_noise_sigma_ = schedule_.timestep_spacing == TimestepSpacing::Leading
                          ? at::pow(at::pow(max_sigma, 2) + 1, 0.5).item<double>()
                          : max_sigma.item<double>();
}

at::Tensor EulerSampler::add_noise(const at::Tensor& x0, const at::Tensor& noise, int index) const {
  if (!sigmas_.defined()) throw Error(name() + " sampler: set_timesteps was not called");
  return x0 + noise * sigmas_[index].to(x0.dtype());
}

at::Tensor EulerSampler::run(at::Tensor x, int first, const ModelFn& model,
                             at::Generator& generator, const StepFn& on_step) {
  if (!timesteps_.defined()) throw Error(name() + " sampler: set_timesteps was not called");
  const int steps = static_cast<int>(timesteps_.size(0));
  if (first < 0 || first >= steps) {
    throw Error(name() + " sampler: first step " + std::to_string(first) + " is outside 0.." +
                std::to_string(steps - 1));
  }
  const std::int64_t n = x.size(0);
  const at::Tensor one = at::scalar_tensor(1.0, at::kFloat);
  for (int i = first; i < steps; ++i) {
    at::Tensor sigma = sigmas_[i];  // 0-d float32
    at::Tensor sigma_next = sigmas_[i + 1];
    // The network expects the variance-preserving x / sqrt(sigma^2 + 1).
    at::Tensor vp_scale = at::pow(at::pow(sigma, 2) + 1, 0.5);
    at::Tensor model_in = x / vp_scale;                     // [N, C, H, W]
    at::Tensor t = timesteps_.narrow(0, i, 1).repeat({n});  // [N] float32
    at::Tensor out = prediction_channels(model(model_in, t, std::nullopt), x);

    // x0: in sigma space x = 1 * x0 + sigma * eps, so epsilon and sample read with alpha = 1;
    // v is defined on the variance-preserving sample (alpha = 1 / vp_scale).
    at::Tensor x0;
    if (schedule_.prediction_type == PredictionType::V) {
      x0 = interpret_output(PredictionType::V, model_in, out, 1 / vp_scale, sigma / vp_scale).x0;
    } else {
      x0 = interpret_output(schedule_.prediction_type, x, out, one, sigma).x0;
    }

    at::Tensor derivative = (x - x0) / sigma;  // dx/dsigma (Karras et al. eq. 7 ODE)
    if (variant_ == Variant::Euler) {
      // No churn (s_churn = 0): sigma_hat = sigma.
      x = x + derivative * (sigma_next - sigma);
    } else {
      at::Tensor s2 = at::pow(sigma, 2);
      at::Tensor n2 = at::pow(sigma_next, 2);
      at::Tensor sigma_up = at::pow(n2 * (s2 - n2) / s2, 0.5);
      at::Tensor sigma_down = at::pow(n2 - at::pow(sigma_up, 2), 0.5);
      x = x + derivative * (sigma_down - sigma);
      at::Tensor noise = draw_noise(out.sizes(), generator, out.options());  // [N, C, H, W]
      x = x + noise * sigma_up;
    }
    if (on_step && !on_step(i - first + 1, steps - first)) throw Cancelled();
  }
  return x;
}

}  // namespace gd::core
