#include "core/samplers/ddpm_pytorch_samplers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <utility>

#include "core/error.h"
#include "core/noise_draw.h"
#include "core/prediction.h"

namespace gd::core {

namespace {

// One stored buffer as a CPU float32 [T] tensor, or gd::Error naming what is wrong.
at::Tensor stored_table(const ScheduleConfig& schedule, const std::string& name) {
  auto it = schedule.stored_buffers.find(name);
  if (it == schedule.stored_buffers.end() || !it->second.defined()) {
    throw Error("denoising-diffusion-pytorch sampler: the schedule has no buffer '" + name + "'");
  }
  if (it->second.dim() != 1 || it->second.numel() == 0) {
    throw Error("denoising-diffusion-pytorch sampler: buffer '" + name + "' is not a 1-d table");
  }
  return it->second.to(at::kCPU, at::kFloat).contiguous();
}

DdpmPytorchTables read_tables(const ScheduleConfig& schedule) {
  if (schedule.family != ScheduleConfig::Family::DdpmPytorch) {
    throw Error(
        "denoising-diffusion-pytorch samplers need a denoising-diffusion-pytorch model "
        "(its stored schedule buffers)");
  }
  DdpmPytorchTables t;
  t.betas = stored_table(schedule, "betas");
  t.alphas_cumprod = stored_table(schedule, "alphas_cumprod");
  t.sqrt_alphas_cumprod = stored_table(schedule, "sqrt_alphas_cumprod");
  t.sqrt_one_minus_alphas_cumprod = stored_table(schedule, "sqrt_one_minus_alphas_cumprod");
  t.posterior_mean_coef1 = stored_table(schedule, "posterior_mean_coef1");
  t.posterior_mean_coef2 = stored_table(schedule, "posterior_mean_coef2");
  t.posterior_log_variance_clipped = stored_table(schedule, "posterior_log_variance_clipped");
  t.num_timesteps = t.betas.numel();
  for (const at::Tensor* table :
       {&t.alphas_cumprod, &t.sqrt_alphas_cumprod, &t.sqrt_one_minus_alphas_cumprod,
        &t.posterior_mean_coef1, &t.posterior_mean_coef2, &t.posterior_log_variance_clipped}) {
    if (table->numel() != t.num_timesteps) {
      throw Error("denoising-diffusion-pytorch sampler: schedule buffers differ in length (" +
                  std::to_string(table->numel()) + " vs " + std::to_string(t.num_timesteps) +
                  " betas)");
    }
  }
  return t;
}

DdpmPytorchTables tables_on(const DdpmPytorchTables& t, const at::Device& device) {
  if (device == t.betas.device()) return t;
  DdpmPytorchTables d = t;
  for (at::Tensor* table :
       {&d.betas, &d.alphas_cumprod, &d.sqrt_alphas_cumprod, &d.sqrt_one_minus_alphas_cumprod,
        &d.posterior_mean_coef1, &d.posterior_mean_coef2, &d.posterior_log_variance_clipped}) {
    *table = table->to(device);
  }
  return d;
}

// torch.randn_like(x) drawn from `generator`: one draw of x's full shape (the CPU normal
// sampler depends on numel, so draws must never be split or merged), on the CPU, moved to x's
// device (core/noise_draw.h).
at::Tensor randn_like(const at::Tensor& x, at::Generator& generator) {
  return draw_noise(x.sizes(), generator, x.options());
}

// The network output split into the prediction [N, C, H, W] and, for learned variance
// (2*C channels), the variance interpolation channels [N, C, H, W] (undefined otherwise).
std::pair<at::Tensor, at::Tensor> split_output(const at::Tensor& x, const at::Tensor& out) {
  const std::int64_t c = x.size(1);
  if (out.dim() != 4 || out.size(0) != x.size(0) || out.size(2) != x.size(2) ||
      out.size(3) != x.size(3) || (out.size(1) != c && out.size(1) != 2 * c)) {
    throw Error("denoising-diffusion-pytorch sampler: the network returned shape " +
                std::string(c10::str(out.sizes())) + " for an input of shape " +
                std::string(c10::str(x.sizes())));
  }
  if (out.size(1) == c) return {out, at::Tensor()};
  std::vector<at::Tensor> halves = out.chunk(2, 1);  // model_output.chunk(2, dim = 1)
  return {halves[0], halves[1]};
}

// The clamped x0 (model_predictions / p_mean_variance with clipping). LearnedGaussianDiffusion
// reads the prediction channels as noise whatever the objective (see the header).
at::Tensor clamped_x0(const DdpmPytorchTables& tables, PredictionType type, bool learned_variance,
                      const at::Tensor& x, const at::Tensor& prediction, std::int64_t time) {
  const at::Tensor alpha = tables.sqrt_alphas_cumprod[time];            // 0-d
  const at::Tensor sigma = tables.sqrt_one_minus_alphas_cumprod[time];  // 0-d
  const PredictionType read_as = learned_variance ? PredictionType::Epsilon : type;
  at::Tensor x0 = interpret_output(read_as, x, prediction, alpha, sigma).x0;
  // An x0 that is the network output itself (pred_x0) must not be clamped in the caller's
  // tensor; the package clamps a fresh tensor too (torch.clamp) in model_predictions.
  if (x0.is_same(prediction)) x0 = x0.clone();
  return x0.clamp_(-1.0, 1.0);
}

}  // namespace

std::vector<std::array<std::int64_t, 2>> ddpm_pytorch_time_pairs(std::int64_t num_timesteps,
                                                                 int steps) {
  if (steps < 1 || steps > num_timesteps) {
    throw Error("denoising-diffusion-pytorch sampler: steps must be between 1 and " +
                std::to_string(num_timesteps) + ", got " + std::to_string(steps));
  }
  // times = torch.linspace(-1, T - 1, steps + 1) in float32, .int() truncates toward zero,
  // then reversed; pairs are consecutive entries, the last one (t, -1).
  at::Tensor times = at::linspace(-1.0, static_cast<double>(num_timesteps - 1), steps + 1,
                                  at::TensorOptions().dtype(at::kFloat))
                         .to(at::kInt)
                         .to(at::kLong)
                         .flip(0);
  const std::int64_t* t = times.data_ptr<std::int64_t>();
  std::vector<std::array<std::int64_t, 2>> pairs;
  for (int i = 0; i < steps; ++i) pairs.push_back({t[i], t[i + 1]});
  return pairs;
}

DdpmPytorchSamplerBase::DdpmPytorchSamplerBase(const ScheduleConfig& schedule, double eta)
    : prediction_type_(schedule.prediction_type), tables_(read_tables(schedule)), eta_(eta) {
  if (!(eta >= 0.0 && eta <= 1.0)) {
    throw Error("denoising-diffusion-pytorch sampler: eta must be between 0 and 1, got " +
                std::to_string(eta));
  }
}

void DdpmPytorchSamplerBase::set_timesteps(int steps) {
  pairs_ = ddpm_pytorch_time_pairs(tables_.num_timesteps, steps);
  steps_ = steps;
  // For steps == T the pairs are (T-1, T-2), ..., (0, -1): p_sample_loop's reversed(range(T)).
  timesteps_ = at::empty({steps}, at::kLong);
  for (int i = 0; i < steps; ++i) timesteps_[i] = pairs_[i][0];
}

at::Tensor DdpmPytorchSamplerBase::add_noise(const at::Tensor& x0, const at::Tensor& noise,
                                             int index) const {
  if (index < 0 || index >= steps_) {
    throw Error("denoising-diffusion-pytorch sampler: add_noise index " + std::to_string(index) +
                " outside the " + std::to_string(steps_) + " timesteps");
  }
  const std::int64_t t = pairs_[index][0];
  // q_sample (DDPM eq. 4): x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.
  const at::Tensor a = tables_.sqrt_alphas_cumprod[t].to(x0.device());
  const at::Tensor s = tables_.sqrt_one_minus_alphas_cumprod[t].to(x0.device());
  return a * x0 + s * noise;
}

at::Tensor DdpmPytorchSamplerBase::run(at::Tensor x, int first, const ModelFn& model,
                                       at::Generator& generator, const StepFn& on_step) {
  if (steps_ == 0) throw Error("denoising-diffusion-pytorch sampler: set_timesteps not called");
  if (first < 0 || first >= steps_) {
    throw Error("denoising-diffusion-pytorch sampler: first step " + std::to_string(first) +
                " outside the " + std::to_string(steps_) + " timesteps");
  }
  if (x.dim() != 4) {
    throw Error("denoising-diffusion-pytorch sampler: expected x of shape [N, C, H, W], got " +
                std::string(c10::str(x.sizes())));
  }
  const DdpmPytorchTables tables = tables_on(tables_, x.device());
  const int total = steps_ - first;
  std::optional<at::Tensor> x0;  // x_start: None before the first step
  for (int i = first; i < steps_; ++i) {
    const std::int64_t time = pairs_[i][0];
    const std::int64_t time_next = pairs_[i][1];
    // time_cond = torch.full((b,), time, dtype = torch.long)
    const at::Tensor t = at::full({x.size(0)}, time, x.options().dtype(at::kLong));
    const at::Tensor out = model(x, t, x0);  // [N, C or 2C, H, W]
    StepResult r = step(tables, x, out, time, time_next, generator);
    x = std::move(r.x);
    x0 = std::move(r.x0);
    if (on_step && !on_step(i - first + 1, total)) throw Cancelled();
  }
  return x;
}

DdpmPytorchSamplerBase::StepResult DdpmPytorchSamplerBase::ddim_step(
    const DdpmPytorchTables& tables, const at::Tensor& x, const at::Tensor& out, std::int64_t time,
    std::int64_t time_next, double eta, at::Generator& generator) const {
  auto [prediction, variance] = split_output(x, out);  // ddim ignores learned variance
  // model_predictions(clip_x_start = True, rederive_pred_noise = True): clamp x0, then the
  // noise implied by the clamped x0.
  at::Tensor x0 = clamped_x0(tables, prediction_type_, variance.defined(), x, prediction, time);
  if (time_next < 0) return {x0, x0};  // the last pair returns x_start, no draw
  const at::Tensor eps = eps_from_x0(x, x0, tables.sqrt_alphas_cumprod[time],
                                     tables.sqrt_one_minus_alphas_cumprod[time]);

  // DDIM eq. 12 with float32 0-d alphas as the package has them (alphas_cumprod[time]):
  // sigma = eta * sqrt((1 - a / a_next) * (1 - a_next) / (1 - a)), c = sqrt(1 - a_next - sigma^2)
  const at::Tensor a = tables.alphas_cumprod[time];
  const at::Tensor a_next = tables.alphas_cumprod[time_next];
  const at::Tensor sigma = ((1 - a / a_next) * (1 - a_next) / (1 - a)).sqrt() * eta;
  const at::Tensor c = (1 - a_next - sigma.pow(2)).sqrt();
  // ddim_sample draws at every step with time_next >= 0, even when eta == 0.
  const at::Tensor noise = randn_like(x, generator);
  at::Tensor x_next = x0 * a_next.sqrt() + c * eps + sigma * noise;
  return {x_next, x0};
}

DdpmPytorchSamplerBase::StepResult DdpmPytorchAncestralSampler::step(
    const DdpmPytorchTables& tables, const at::Tensor& x, const at::Tensor& out, std::int64_t time,
    std::int64_t time_next, at::Generator& generator) const {
  // Fewer steps than T: the strided chain of ddim_sample with eta = 1 (see the header).
  if (steps_ < tables.num_timesteps) {
    return ddim_step(tables, x, out, time, time_next, 1.0, generator);
  }

  // p_sample: p_mean_variance(clip_denoised = True), then one draw if t > 0.
  auto [prediction, variance] = split_output(x, out);
  at::Tensor x0 = clamped_x0(tables, prediction_type_, variance.defined(), x, prediction, time);
  // q_posterior (DDPM eq. 7): mean = coef1[t] * x0 + coef2[t] * x_t.
  at::Tensor mean = tables.posterior_mean_coef1[time] * x0 + tables.posterior_mean_coef2[time] * x;
  if (time == 0) return {mean, x0};  // no noise at t == 0 (and no draw)

  at::Tensor log_variance;  // 0-d, or [N, C, H, W] for learned variance
  if (variance.defined()) {
    // LearnedGaussianDiffusion.p_mean_variance (Nichol & Dhariwal 2021 eq. 15): interpolate in
    // log space between the posterior variance (min) and beta (max) with frac = (v + 1) / 2.
    const at::Tensor min_log = tables.posterior_log_variance_clipped[time];
    const at::Tensor max_log = tables.betas.log()[time];
    const at::Tensor frac = (variance + 1) * 0.5;
    log_variance = frac * max_log + (1 - frac) * min_log;
  } else {
    log_variance = tables.posterior_log_variance_clipped[time];
  }
  const at::Tensor noise = randn_like(x, generator);  // drawn after the network call
  return {mean + (0.5 * log_variance).exp() * noise, x0};
}

std::unique_ptr<Sampler> make_ddpm_pytorch_sampler(const std::string& name,
                                                   const ScheduleConfig& schedule,
                                                   const SamplerOptions& options) {
  if (name == "ddpm") return std::make_unique<DdpmPytorchAncestralSampler>(schedule);
  if (name == "ddim") return std::make_unique<DdpmPytorchDdimSampler>(schedule, options.eta);
  throw Error("unknown sampler '" + name +
              "' for a denoising-diffusion-pytorch model (known: ddpm, ddim)");
}

}  // namespace gd::core
