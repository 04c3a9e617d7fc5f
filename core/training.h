// Training a denoising network: the loss of one batch, parameter initialisation, gradient
// clipping and the exponential moving average of the weights. Pure engine: no file I/O, no
// optimizer (the caller owns one), every random number from the generator it is given.
//
//   DiffusionLoss loss(schedule, LossType::L2);       // schedule.prediction_type = objective
//   at::Tensor value = loss.compute(net, x0, gen);   // x0 in [-1, 1]; value is a 0-d tensor
//   value.backward();
//   clip_grad_norm(params, 1.0);
//   optimizer.step();
//   ema.update(params);
//
// The noisy sample and the targets follow the convention of core/prediction.h
// (x_t = alpha_t x0 + sigma_t eps, alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t)):
//   epsilon: target eps;  sample: target x0;  v: target alpha_t eps - sigma_t x0,
// so a network trained here means what the samplers assume it means.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/sampler.h"
#include "core/schedule.h"

namespace gd::core {

enum class LossType { L1, L2 };

// The regression target for a network of prediction type `type`. alpha and sigma broadcast
// against x0 ([N, 1, 1, 1]).
at::Tensor training_target(PredictionType type, const at::Tensor& x0, const at::Tensor& noise,
                           const at::Tensor& alpha, const at::Tensor& sigma);

class DiffusionLoss {
 public:
  // `schedule` gives the betas (make_betas) and the prediction type (the objective).
  // `offset_noise` > 0 adds offset noise (denoising-diffusion-pytorch's offset_noise_strength,
  // after Crosslabs 2023): one extra N(0, offset^2) value per image and channel, the same at every
  // pixel, so the network learns to move whole-image colour and brightness, which plain noise
  // barely perturbs. Sampling is unchanged: the model stays an ordinary diffusers model.
  DiffusionLoss(const ScheduleConfig& schedule, LossType loss, double offset_noise = 0.0);

  // Draws t uniformly from [0, T) ([N] int64), then noise ([N, C, H, W]), then with offset noise
  // the offsets ([N, C]) from `gen`, in that order, and returns compute_at(network, x0, t, noise).
  at::Tensor compute(const ModelFn& network, const at::Tensor& x0, at::Generator& gen) const;

  // The mean L1 or L2 error between network(q_sample(x0, t, noise), t) and the target.
  // Network outputs of another dtype (bfloat16) are compared in float32.
  at::Tensor compute_at(const ModelFn& network, const at::Tensor& x0, const at::Tensor& t,
                        const at::Tensor& noise) const;

  // x_t = alpha_t x0 + sigma_t noise.
  at::Tensor q_sample(const at::Tensor& x0, const at::Tensor& t, const at::Tensor& noise) const;

  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  PredictionType prediction_type() const { return type_; }

 private:
  at::Tensor alphas_cumprod_;  // [T] float32
  PredictionType type_;
  LossType loss_;
  double offset_noise_;
};

// The learning-rate multiplier of a constant-then-cooldown run ("warmup-stable-decay" without
// the warmup; Hägele et al. 2024): 1 until the last `cooldown` steps before `total`, then a
// linear fall towards 0, reaching 1/cooldown on the last step. `step` is the number of optimizer
// steps already taken, so this is the multiplier of step `step + 1`. Why: a constant rate with
// batches this small leaves the weights rattling around the optimum; annealing at the end
// settles them, at no cost per step. cooldown <= 0: always 1.
double cooldown_factor(std::int64_t step, std::int64_t total, std::int64_t cooldown);

using NamedParams = std::vector<std::pair<std::string, at::Tensor>>;

// PyTorch's default initialisation from parameter names and shapes alone: every weight of
// rank >= 2 (convolution, linear) and the bias beside it uniform in +-1/sqrt(fan_in) (what
// kaiming_uniform_(a=sqrt(5)) amounts to); rank-1 weights (norms) 1, their biases 0. Draws from
// `gen` in parameter order.
void init_parameters(const NamedParams& params, at::Generator& gen);

// Scales every gradient so that their global L2 norm is at most max_norm (as
// torch.nn.utils.clip_grad_norm_, with its 1e-6). Returns the norm before clipping; parameters
// without a gradient are skipped.
double clip_grad_norm(const NamedParams& params, double max_norm);

// Exponential moving average of the weights: every `update_every`-th call to update(),
//   ema = decay * ema + (1 - decay) * param,
// except that while fewer than `update_after_step` calls have been made the average is a plain
// copy of the weights (as ema-pytorch's EMA). The average lives in `ema_params`, which the
// caller owns (typically the parameters of a second network, so it can sample directly).
class Ema {
 public:
  Ema(NamedParams ema_params, double decay, int update_every, int update_after_step = 0);

  // Copies `params` into the average (start of training).
  void copy_from(const NamedParams& params);
  void update(const NamedParams& params);

  std::int64_t calls() const { return calls_; }
  void set_calls(std::int64_t calls) { calls_ = calls; }  // when resuming
  const NamedParams& params() const { return ema_; }

 private:
  NamedParams ema_;
  double decay_;
  int update_every_;
  int update_after_step_;
  std::int64_t calls_ = 0;
};

}  // namespace gd::core
