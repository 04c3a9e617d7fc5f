#include "core/schedule.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gd::core {

namespace {

// Improved DDPM (Nichol & Dhariwal 2021, eq. 17): alpha_bar(t) = cos^2(((t + s) / (1 + s)) * pi/2)
// with s = 0.008, and beta_i = min(1 - alpha_bar((i+1)/T) / alpha_bar(i/T), 0.999).
// diffusers evaluates this in Python floats (double) and only then converts to float32.
at::Tensor squared_cosine_betas(int steps) {
  auto alpha_bar = [](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2.0);
    return c * c;
  };
  std::vector<double> betas(steps);
  for (int i = 0; i < steps; ++i) {
    const double t1 = static_cast<double>(i) / steps;
    const double t2 = static_cast<double>(i + 1) / steps;
    betas[i] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
  }
  return at::tensor(betas, at::kDouble).to(at::kFloat);
}

}  // namespace

at::Tensor make_betas(const ScheduleConfig& config) {
  const int steps = config.num_train_timesteps;
  if (steps < 1) throw Error("schedule: num_train_timesteps must be at least 1");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  switch (config.beta_schedule) {
    case BetaSchedule::Linear: return at::linspace(config.beta_start, config.beta_end, steps, f32);
    case BetaSchedule::ScaledLinear:
      return at::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), steps, f32)
          .pow(2);
    case BetaSchedule::SquaredCosCapV2: return squared_cosine_betas(steps);
    case BetaSchedule::Sigmoid: {
      at::Tensor x = at::linspace(-6, 6, steps, f32);
      return at::sigmoid(x) * (config.beta_end - config.beta_start) + config.beta_start;
    }
    case BetaSchedule::Given:
      if (static_cast<int>(config.given_betas.size()) != steps) {
        throw Error("schedule: " + std::to_string(config.given_betas.size()) +
                    " betas given but num_train_timesteps is " + std::to_string(steps));
      }
      return at::tensor(config.given_betas, at::kDouble).to(at::kFloat);
  }
  throw Error("schedule: unknown beta schedule");
}

at::Tensor cumulative_alphas(const at::Tensor& betas) { return at::cumprod(1.0 - betas, 0); }

at::Tensor model_alphas_cumprod(const ScheduleConfig& config, at::ScalarType dtype) {
  const auto stored = config.stored_buffers.find("alphas_cumprod");
  if (stored != config.stored_buffers.end()) return stored->second.to(dtype);
  return cumulative_alphas(make_betas(config)).to(dtype);
}

const char* beta_schedule_name(BetaSchedule schedule) {
  switch (schedule) {
    case BetaSchedule::Linear: return "linear";
    case BetaSchedule::ScaledLinear: return "scaled_linear";
    case BetaSchedule::SquaredCosCapV2: return "squaredcos_cap_v2";
    case BetaSchedule::Sigmoid: return "sigmoid";
    case BetaSchedule::Given: return "given";
  }
  return "?";
}

const char* prediction_type_name(PredictionType type) {
  switch (type) {
    case PredictionType::Epsilon: return "epsilon";
    case PredictionType::Sample: return "sample";
    case PredictionType::V: return "v_prediction";
  }
  return "?";
}

const char* timestep_spacing_name(TimestepSpacing spacing) {
  switch (spacing) {
    case TimestepSpacing::Linspace: return "linspace";
    case TimestepSpacing::Leading: return "leading";
    case TimestepSpacing::Trailing: return "trailing";
  }
  return "?";
}

}  // namespace gd::core
