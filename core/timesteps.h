// Inference timesteps and sigma tables, computed as diffusers' schedulers compute them.
//
// Each diffusers scheduler has its own set_timesteps, and they differ in small ways that
// change which network times are visited (and so the image for a given seed):
//   DDPM / DDIM:    int64, `steps` points; leading = i * (T // steps) + steps_offset,
//                   trailing = round(arange(T, 0, -T/steps)) - 1, linspace = round(linspace(0,
//                   T-1)).
//   DPM-Solver:     int64, steps + 1 points with the last one dropped (never reaches t = 0).
//   Euler (and a):  float32; linspace is not rounded, so timesteps can be fractional.
// diffusers computes these with numpy in float64 (np.linspace, np.arange, np.round = round half
// to even, np.interp); so do we, and only then round to the stored dtype.
//
//   at::Tensor t = euler_timesteps(config, 10);                 // [10] float32
//   at::Tensor s = interpolated_sigmas(alphas_cumprod, t);      // [11] float32, last = 0
#pragma once

#include <ATen/core/Tensor.h>

#include "core/schedule.h"

namespace gd::core {

// Throws gd::Error unless 1 <= steps <= num_train_timesteps.
void check_inference_steps(int steps, int num_train_timesteps);

// DDPMScheduler / DDIMScheduler.set_timesteps: [steps] int64, descending.
at::Tensor ddpm_timesteps(const ScheduleConfig& config, int steps);

// DPMSolverMultistepScheduler.set_timesteps (lambda_min_clipped = -inf): [steps] int64
// (trailing spacing can give one more when T / steps is not exact, as numpy's arange does).
at::Tensor dpm_solver_timesteps(const ScheduleConfig& config, int steps);

// EulerDiscreteScheduler / EulerAncestralDiscreteScheduler.set_timesteps: [steps] float32.
at::Tensor euler_timesteps(const ScheduleConfig& config, int steps);

// sigma(t) = sqrt((1 - alpha_bar_t) / alpha_bar_t) for every training step: [T] float32
// (the variance-exploding noise level equivalent to x_t / sqrt(alpha_bar_t), Karras et al. 2022).
at::Tensor sigma_table(const at::Tensor& alphas_cumprod);

// The sigma table linearly interpolated at `timesteps` (np.interp in float64, rounded to
// float32), with a final 0 appended: [S + 1] float32.
at::Tensor interpolated_sigmas(const at::Tensor& alphas_cumprod, const at::Tensor& timesteps);

}  // namespace gd::core
