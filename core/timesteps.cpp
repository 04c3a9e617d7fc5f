#include "core/timesteps.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace gd::core {

namespace {

// np.linspace(start, stop, num) in float64: i * step + start, the last point set to stop.
std::vector<double> numpy_linspace(double start, double stop, int num) {
  std::vector<double> y(num);
  const int div = num - 1;
  const double delta = stop - start;
  const double step = div > 0 ? delta / div : 0.0;
  for (int i = 0; i < num; ++i) {
    double v = static_cast<double>(i);
    if (div > 0) {
      v = step == 0.0 ? v / div * delta : v * step;
    } else {
      v = v * delta;
    }
    y[i] = v + start;
  }
  if (num > 1) y[num - 1] = stop;
  return y;
}

// np.arange(start, stop, step) for a float step: length ceil((stop - start) / step), then
// start, start + step, and from there start + i * ((start + step) - start), as numpy fills it.
std::vector<double> numpy_arange(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  std::vector<double> y;
  if (!(length > 0)) return y;
  const auto n = static_cast<std::int64_t>(length);
  y.resize(n);
  y[0] = start;
  if (n > 1) y[1] = start + step;
  const double delta = (n > 1 ? y[1] : start) - start;
  for (std::int64_t i = 2; i < n; ++i) y[i] = start + static_cast<double>(i) * delta;
  return y;
}

// np.round: round half to even (the default rounding mode of nearbyint).
double round_half_even(double v) { return std::nearbyint(v); }

at::Tensor int64_tensor(const std::vector<std::int64_t>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong));
}

at::Tensor float32_tensor(const std::vector<float>& values) {
  return at::tensor(values, at::TensorOptions().dtype(at::kFloat));
}

// np.round(np.arange(T, 0, -T / steps)) - 1, descending ("trailing", Lin et al. 2023 table 2).
std::vector<std::int64_t> trailing_timesteps(int num_train_timesteps, int steps) {
  const double step_ratio = static_cast<double>(num_train_timesteps) / steps;
  std::vector<std::int64_t> out;
  for (double v : numpy_arange(num_train_timesteps, 0.0, -step_ratio)) {
    out.push_back(static_cast<std::int64_t>(round_half_even(v)) - 1);
  }
  return out;
}

}  // namespace

void check_inference_steps(int steps, int num_train_timesteps) {
  if (steps < 1 || steps > num_train_timesteps) {
    throw Error("steps must be between 1 and " + std::to_string(num_train_timesteps) +
                " (the model's training steps), got " + std::to_string(steps));
  }
}

at::Tensor ddpm_timesteps(const ScheduleConfig& config, int steps) {
  const int T = config.num_train_timesteps;
  check_inference_steps(steps, T);
  std::vector<std::int64_t> out;
  switch (config.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      std::vector<double> points = numpy_linspace(0.0, T - 1, steps);
      for (auto it = points.rbegin(); it != points.rend(); ++it) {
        out.push_back(static_cast<std::int64_t>(round_half_even(*it)));
      }
      break;
    }
    case TimestepSpacing::Leading: {
      const std::int64_t step_ratio = T / steps;
      for (int i = steps - 1; i >= 0; --i) out.push_back(i * step_ratio + config.steps_offset);
      break;
    }
    case TimestepSpacing::Trailing: out = trailing_timesteps(T, steps); break;
  }
  return int64_tensor(out);
}

at::Tensor dpm_solver_timesteps(const ScheduleConfig& config, int steps) {
  // With lambda_min_clipped = -inf no timestep is clipped: last_timestep = T.
  const int T = config.num_train_timesteps;
  check_inference_steps(steps, T);
  std::vector<std::int64_t> out;
  switch (config.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      // steps + 1 points, reversed, the final one (t = 0) dropped.
      std::vector<double> points = numpy_linspace(0.0, T - 1, steps + 1);
      for (int i = steps; i >= 1; --i) {
        out.push_back(static_cast<std::int64_t>(round_half_even(points[i])));
      }
      break;
    }
    case TimestepSpacing::Leading: {
      const std::int64_t step_ratio = T / (steps + 1);
      for (int i = steps; i >= 1; --i) out.push_back(i * step_ratio + config.steps_offset);
      break;
    }
    case TimestepSpacing::Trailing: out = trailing_timesteps(T, steps); break;
  }
  return int64_tensor(out);
}

at::Tensor euler_timesteps(const ScheduleConfig& config, int steps) {
  const int T = config.num_train_timesteps;
  check_inference_steps(steps, T);
  std::vector<float> out;
  switch (config.timestep_spacing) {
    case TimestepSpacing::Linspace: {
      // Not rounded: float32 of the float64 linspace points.
      std::vector<double> points = numpy_linspace(0.0, T - 1, steps);
      for (auto it = points.rbegin(); it != points.rend(); ++it) {
        out.push_back(static_cast<float>(*it));
      }
      break;
    }
    case TimestepSpacing::Leading: {
      const std::int64_t step_ratio = T / steps;
      for (int i = steps - 1; i >= 0; --i) {
        out.push_back(static_cast<float>(i * step_ratio) + static_cast<float>(config.steps_offset));
      }
      break;
    }
    case TimestepSpacing::Trailing:
      for (std::int64_t t : trailing_timesteps(T, steps)) out.push_back(static_cast<float>(t));
      break;
  }
  return float32_tensor(out);
}

at::Tensor sigma_table(const at::Tensor& alphas_cumprod) {
  // [T] float32, the same tensor ops as diffusers: ((1 - a) / a) ** 0.5.
  return at::pow((1 - alphas_cumprod) / alphas_cumprod, 0.5);
}

at::Tensor interpolated_sigmas(const at::Tensor& alphas_cumprod, const at::Tensor& timesteps) {
  at::Tensor table = sigma_table(alphas_cumprod).to(at::kDouble).contiguous();  // [T]
  at::Tensor times = timesteps.to(at::kDouble).contiguous();                    // [S]
  const double* fp = table.data_ptr<double>();
  const double* x = times.data_ptr<double>();
  const std::int64_t n = table.size(0);
  const std::int64_t s = times.size(0);
  std::vector<float> out(s + 1);
  for (std::int64_t i = 0; i < s; ++i) {
    // np.interp(x, arange(T), table): clamp outside [0, T-1]; exact hits return the table
    // value; otherwise slope * (x - x_j) + fp_j with slope = (fp_{j+1} - fp_j) / 1.
    double v;
    if (x[i] >= static_cast<double>(n - 1)) {
      v = fp[n - 1];
    } else if (x[i] <= 0.0) {
      v = fp[0];
    } else {
      const auto j = static_cast<std::int64_t>(std::floor(x[i]));
      const double xj = static_cast<double>(j);
      if (x[i] == xj) {
        v = fp[j];
      } else {
        const double slope = (fp[j + 1] - fp[j]) / (static_cast<double>(j + 1) - xj);
        v = slope * (x[i] - xj) + fp[j];
      }
    }
    out[i] = static_cast<float>(v);
  }
  out[s] = 0.0f;
  return float32_tensor(out);
}

}  // namespace gd::core
