#include "core/training.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <map>

#include "core/error.h"

namespace gd::core {

at::Tensor training_target(PredictionType type, const at::Tensor& x0, const at::Tensor& noise,
                           const at::Tensor& alpha, const at::Tensor& sigma) {
  switch (type) {
    case PredictionType::Epsilon: return noise;
    case PredictionType::Sample: return x0;
    // The inverse of interpret_output's v branch: x0 = alpha x_t - sigma v.
    case PredictionType::V: return alpha * noise - sigma * x0;
  }
  throw Error("internal: unknown prediction type");
}

DiffusionLoss::DiffusionLoss(const ScheduleConfig& schedule, LossType loss, double offset_noise)
    : alphas_cumprod_(cumulative_alphas(make_betas(schedule))),
      type_(schedule.prediction_type),
      loss_(loss),
      offset_noise_(offset_noise) {
  if (!(offset_noise >= 0.0 && offset_noise <= 1.0)) throw Error("offset noise must be in [0, 1]");
}

at::Tensor DiffusionLoss::q_sample(const at::Tensor& x0, const at::Tensor& t,
                                   const at::Tensor& noise) const {
  const at::Tensor abar = alphas_cumprod_.index_select(0, t.to(at::kLong)).to(x0.device());
  const at::Tensor alpha = abar.sqrt().view({-1, 1, 1, 1});
  const at::Tensor sigma = (1 - abar).sqrt().view({-1, 1, 1, 1});
  return alpha * x0 + sigma * noise;
}

at::Tensor DiffusionLoss::compute(const ModelFn& network, const at::Tensor& x0,
                                  at::Generator& gen) const {
  const std::int64_t n = x0.size(0);
  const at::Tensor t = at::randint(alphas_cumprod_.size(0), {n}, gen, at::kLong);
  at::Tensor noise = at::randn(x0.sizes(), gen, x0.options().device(at::kCPU));  // [N, C, H, W]
  if (offset_noise_ > 0) {
    // [N, C, 1, 1], broadcast over the pixels. Not drawn at all without it, so runs without
    // offset noise draw exactly the numbers they always did.
    const at::Tensor offset = at::randn({x0.size(0), x0.size(1), 1, 1}, gen, noise.options());
    noise = noise + offset_noise_ * offset;
  }
  return compute_at(network, x0, t.to(x0.device()), noise.to(x0.device()));
}

at::Tensor DiffusionLoss::compute_at(const ModelFn& network, const at::Tensor& x0,
                                     const at::Tensor& t, const at::Tensor& noise) const {
  if (x0.dim() != 4 || noise.sizes() != x0.sizes() || t.dim() != 1 || t.size(0) != x0.size(0)) {
    throw Error("internal: DiffusionLoss needs x0 [N, C, H, W], noise like it and t [N]");
  }
  const at::Tensor abar = alphas_cumprod_.to(x0.device()).index_select(0, t.to(at::kLong));
  const at::Tensor alpha = abar.sqrt().view({-1, 1, 1, 1});
  const at::Tensor sigma = (1 - abar).sqrt().view({-1, 1, 1, 1});
  const at::Tensor x_t = alpha * x0 + sigma * noise;
  const at::Tensor target = training_target(type_, x0, noise, alpha, sigma);
  const at::Tensor out = network(x_t, t, std::nullopt).to(at::kFloat);
  if (out.sizes() != target.sizes()) {
    throw Error("internal: network output shape does not match the training target");
  }
  const at::Tensor diff = out - target;
  return loss_ == LossType::L1 ? diff.abs().mean() : diff.square().mean();
}

void init_parameters(const NamedParams& params, at::Generator& gen) {
  std::map<std::string, std::int64_t> fan_in;  // weight name without ".weight" -> fan_in
  for (const auto& [name, p] : params) {
    if (p.dim() >= 2 && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0) {
      fan_in[name.substr(0, name.size() - 7)] = p.numel() / p.size(0);
    }
  }
  at::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    const bool is_bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const std::string stem = name.substr(0, name.rfind('.'));
    auto it = fan_in.find(stem);
    if (p.dim() >= 2 || (is_bias && it != fan_in.end())) {
      const std::int64_t fan = p.dim() >= 2 ? p.numel() / p.size(0) : it->second;
      const double bound = 1.0 / std::sqrt(static_cast<double>(fan));
      // Drawn on the CPU, where the generator is, then copied: the same numbers on any device.
      p.copy_(
          at::empty(p.sizes(), at::TensorOptions().dtype(p.dtype())).uniform_(-bound, bound, gen));
    } else if (is_bias) {
      p.zero_();
    } else {
      p.fill_(1.0);
    }
  }
}

double cooldown_factor(std::int64_t step, std::int64_t total, std::int64_t cooldown) {
  if (cooldown <= 0) return 1.0;
  const std::int64_t remaining = total - step;  // steps still to take, this one included
  if (remaining >= cooldown) return 1.0;
  return remaining > 0 ? static_cast<double>(remaining) / static_cast<double>(cooldown) : 0.0;
}

double clip_grad_norm(const NamedParams& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& [name, p] : params) {
    if (p.grad().defined()) norms.push_back(p.grad().to(at::kFloat).norm(2));
  }
  if (norms.empty()) return 0.0;
  const double total = at::stack(norms).norm(2).item<double>();
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    for (const auto& [name, p] : params) {
      if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
  }
  return total;
}

Ema::Ema(NamedParams ema_params, double decay, int update_every, int update_after_step)
    : ema_(std::move(ema_params)),
      decay_(decay),
      update_every_(update_every),
      update_after_step_(update_after_step) {
  if (!(decay >= 0.0 && decay <= 1.0)) throw Error("EMA decay must be in [0, 1]");
  if (update_every < 1) throw Error("EMA update_every must be at least 1");
  if (update_after_step < 0) throw Error("EMA update_after_step must not be negative");
}

void Ema::copy_from(const NamedParams& params) {
  if (params.size() != ema_.size()) throw Error("internal: EMA and model differ in parameters");
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) ema_[i].second.copy_(params[i].second);
}

void Ema::update(const NamedParams& params) {
  if (params.size() != ema_.size()) throw Error("internal: EMA and model differ in parameters");
  ++calls_;
  if (calls_ % update_every_ != 0) return;
  if (calls_ <= update_after_step_) {
    copy_from(params);
    return;
  }
  at::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) {
    // ema + (1 - decay) * (param - ema), i.e. lerp, as ema-pytorch does.
    ema_[i].second.lerp_(params[i].second.detach().to(ema_[i].second.dtype()), 1.0 - decay_);
  }
}

}  // namespace gd::core
