// A closed-form denoiser for data drawn from a mixture of isotropic Gaussians.
//
// If x0 ~ sum_k w_k N(mu_k, s^2 I) and x_t = alpha x0 + sigma eps, then x_t is itself a mixture
// sum_k w_k N(alpha mu_k, (alpha^2 s^2 + sigma^2) I), its score is known exactly, and the ideal
// noise prediction is eps(x_t) = -sigma * grad log p(x_t). A sampler driven by this callback
// must reproduce the mixture: that tests the reverse process itself, with no network.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "core/prediction.h"
#include "core/sampler.h"

namespace gd::test {

struct GaussianMixture {
  std::vector<double> weights;  // sum to 1
  at::Tensor means;             // [K, C, H, W] in model space
  double spread = 0.05;         // s, the per-coordinate standard deviation of each component

  // Draws n samples [n, C, H, W] (for images to denoise) and their component labels.
  at::Tensor sample(int n, at::Generator& gen, at::Tensor* labels = nullptr) const {
    at::Tensor w = at::tensor(weights, at::kDouble);
    at::Tensor k = at::multinomial(w, n, /*replacement=*/true, gen);
    if (labels) *labels = k;
    at::Tensor x = means.index_select(0, k);
    return x + spread * at::randn(x.sizes(), gen);
  }

  // Index of the nearest mean for each sample [n, C, H, W] -> [n].
  at::Tensor nearest(const at::Tensor& x) const {
    at::Tensor flat = x.reshape({x.size(0), 1, -1});
    at::Tensor mu = means.reshape({1, means.size(0), -1});
    return (flat - mu).pow(2).sum(-1).argmin(1);
  }

  // The exact eps (or x0, or v) prediction at noise-to-signal ratio r = sigma / alpha.
  at::Tensor predict(const at::Tensor& x_t, const at::Tensor& ratio,
                     core::PredictionType type) const {
    const std::int64_t n = x_t.size(0);
    at::Tensor r = ratio.to(at::kDouble).reshape({-1, 1});  // [n or 1, 1]
    at::Tensor alpha = 1.0 / (1.0 + r * r).sqrt();          // [n, 1]
    at::Tensor sigma = r * alpha;
    at::Tensor x = x_t.to(at::kDouble).reshape({n, 1, -1});                            // [n, 1, D]
    at::Tensor mu = means.to(at::kDouble).reshape({1, means.size(0), -1});             // [1, K, D]
    at::Tensor var = (alpha * alpha * spread * spread + sigma * sigma).unsqueeze(-1);  // [n, 1, 1]
    at::Tensor diff = x - alpha.unsqueeze(-1) * mu;                                    // [n, K, D]
    at::Tensor logw = at::tensor(weights, at::kDouble).log().reshape({1, -1});
    at::Tensor logp = logw - 0.5 * diff.pow(2).sum(-1) / var.squeeze(-1);  // [n, K]
    at::Tensor resp = at::softmax(logp, 1).unsqueeze(-1);                  // [n, K, 1]
    at::Tensor score = -(resp * diff).sum(1) / var.squeeze(-1);            // [n, D]
    at::Tensor eps = (-sigma * score).reshape(x_t.sizes());
    at::Tensor a = alpha.reshape({-1, 1, 1, 1}), s = sigma.reshape({-1, 1, 1, 1});
    at::Tensor xt = x_t.to(at::kDouble);
    at::Tensor x0 = (xt - s * eps) / a;
    switch (type) {
      case core::PredictionType::Epsilon: return eps.to(at::kFloat);
      case core::PredictionType::Sample: return x0.to(at::kFloat);
      case core::PredictionType::V: return (a * eps - s * x0).to(at::kFloat);
    }
    return eps.to(at::kFloat);
  }

  // A network callback for a schedule with these cumulative alphas ([T] float): fractional
  // timesteps (Euler-type samplers) interpolate the noise-to-signal ratio linearly, as
  // diffusers interpolates its sigmas.
  core::ModelFn as_model(const at::Tensor& alphas_cumprod, core::PredictionType type) const {
    at::Tensor table =
        ((1 - alphas_cumprod.to(at::kDouble)) / alphas_cumprod.to(at::kDouble)).sqrt();
    return [this, table, type](const at::Tensor& x, const at::Tensor& t,
                               const std::optional<at::Tensor>&) {
      at::Tensor tt = t.to(at::kDouble).clamp(0, table.size(0) - 1);
      at::Tensor lo = tt.floor().to(at::kLong), hi = tt.ceil().to(at::kLong);
      at::Tensor frac = tt - lo.to(at::kDouble);
      at::Tensor r = table.index_select(0, lo) * (1 - frac) + table.index_select(0, hi) * frac;
      if (r.numel() == 1 && x.size(0) > 1) r = r.expand({x.size(0)});
      return predict(x, r, type);
    };
  }
};

}  // namespace gd::test
