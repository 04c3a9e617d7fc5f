// Noise schedules: pure functions from a configuration to the betas and cumulative alphas the
// samplers use.
//
// The arithmetic follows diffusers' schedulers operation for operation (float32 linspace,
// float32 cumprod), because "same seed, same image" needs bit-level agreement on these
// tables, not just closeness.
//
//   ScheduleConfig config = parse_scheduler_config(json_text, "scheduler_config.json");
//   at::Tensor betas = make_betas(config);           // [T] float32
//   at::Tensor alphas_cumprod = cumulative_alphas(betas);
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

namespace gd::core {

enum class BetaSchedule {
  Linear,           // linspace(beta_start, beta_end)
  ScaledLinear,     // linspace(sqrt(beta_start), sqrt(beta_end))^2
  SquaredCosCapV2,  // Nichol & Dhariwal 2021 cosine schedule, betas capped at 0.999
  Sigmoid,          // sigmoid(linspace(-6, 6)) scaled into [beta_start, beta_end]
  Given,            // betas listed by the checkpoint (trained_betas, or stored buffers)
};

// What the network predicts. The conversions between them live in core/prediction.h.
enum class PredictionType { Epsilon, Sample, V };

// How inference timesteps are picked from the training range (diffusers' names).
enum class TimestepSpacing { Linspace, Leading, Trailing };

struct ScheduleConfig {
  std::string scheduler_class = "DDPMScheduler";  // the _class_name it was saved from
  int num_train_timesteps = 1000;
  BetaSchedule beta_schedule = BetaSchedule::Linear;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::vector<double> given_betas;  // for BetaSchedule::Given, num_train_timesteps entries
  PredictionType prediction_type = PredictionType::Epsilon;
  bool clip_sample = true;
  double clip_sample_range = 1.0;
  std::string variance_type = "fixed_small";
  TimestepSpacing timestep_spacing = TimestepSpacing::Leading;
  int steps_offset = 0;
  bool thresholding = false;
  double dynamic_thresholding_ratio = 0.995;
  double sample_max_value = 1.0;

  // Whose sampling semantics apply: diffusers' schedulers (diffusers and TorchScript models),
  // or denoising-diffusion-pytorch's own p_sample_loop / ddim_sample (its checkpoints).
  enum class Family { Diffusers, DdpmPytorch } family = Family::Diffusers;
  // denoising-diffusion-pytorch keeps its tables as float32 buffers computed in float64;
  // samplers of that family use them as stored (betas, alphas_cumprod, posterior_*, ...).
  std::map<std::string, at::Tensor> stored_buffers;
};

// [num_train_timesteps] float32 betas, computed exactly as diffusers does.
at::Tensor make_betas(const ScheduleConfig& config);

// [T] float32 cumulative product of (1 - betas).
at::Tensor cumulative_alphas(const at::Tensor& betas);

// [T] alpha_bar of a model's schedule in `dtype`: the table a denoising-diffusion-pytorch
// checkpoint stores when it has one (its samplers use it as stored), else
// cumulative_alphas(make_betas()) (float32, then converted). For code that needs the noise level
// of a timestep whatever the model's family.
at::Tensor model_alphas_cumprod(const ScheduleConfig& config, at::ScalarType dtype = at::kFloat);

const char* beta_schedule_name(BetaSchedule schedule);  // diffusers' spelling
const char* prediction_type_name(PredictionType type);  // "epsilon", "sample", "v_prediction"
const char* timestep_spacing_name(TimestepSpacing spacing);

}  // namespace gd::core
