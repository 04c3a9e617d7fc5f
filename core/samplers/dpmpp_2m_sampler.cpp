#include "core/samplers/dpmpp_2m_sampler.h"

#include <ATen/ATen.h>

#include <cstdint>

#include "core/error.h"
#include "core/prediction.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/timesteps.h"

namespace gd::core {

namespace {

// The variance-preserving (alpha_t, sigma_t) of a variance-exploding sigma (0-d float32):
// alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t.
struct AlphaSigma {
  at::Tensor alpha;
  at::Tensor sigma;
};

AlphaSigma alpha_sigma(const at::Tensor& sigma) {
  at::Tensor alpha = 1 / at::pow(at::pow(sigma, 2) + 1, 0.5);
  return {alpha, sigma * alpha};
}

// lambda = log(alpha_t) - log(sigma_t), half the log-SNR (+inf at sigma = 0).
at::Tensor lambda_of(const AlphaSigma& s) { return at::log(s.alpha) - at::log(s.sigma); }

}  // namespace

DpmSolverPP2MSampler::DpmSolverPP2MSampler(const ScheduleConfig& schedule) : schedule_(schedule) {
  alphas_cumprod_ = cumulative_alphas(make_betas(schedule));
}

void DpmSolverPP2MSampler::set_timesteps(int steps) {
  timesteps_ = dpm_solver_timesteps(schedule_, steps);
  sigmas_ = interpolated_sigmas(alphas_cumprod_, timesteps_);
}

at::Tensor DpmSolverPP2MSampler::add_noise(const at::Tensor& x0, const at::Tensor& noise,
                                           int index) const {
  if (!sigmas_.defined()) throw Error("dpmpp_2m sampler: set_timesteps was not called");
  AlphaSigma s = alpha_sigma(sigmas_[index].to(x0.dtype()));
  return s.alpha * x0 + s.sigma * noise;
}

at::Tensor DpmSolverPP2MSampler::run(at::Tensor x, int first, const ModelFn& model,
                                     at::Generator& /*generator*/, const StepFn& on_step) {
  if (!timesteps_.defined()) throw Error("dpmpp_2m sampler: set_timesteps was not called");
  const int steps = static_cast<int>(timesteps_.size(0));
  if (first < 0 || first >= steps) {
    throw Error("dpmpp_2m sampler: first step " + std::to_string(first) + " is outside 0.." +
                std::to_string(steps - 1));
  }
  const std::int64_t n = x.size(0);
  at::Tensor m0, m1;  // [N, C, H, W] x0 predictions of this step and the previous one
  int history = 0;    // how many x0 predictions this run has made (diffusers' lower_order_nums)
  for (int i = first; i < steps; ++i) {
    at::Tensor t = timesteps_.narrow(0, i, 1).repeat({n});  // [N] int64
    at::Tensor out = prediction_channels(model(x, t, std::nullopt), x);

    // The data prediction (DPM-Solver++ integrates x0, not eps).
    AlphaSigma s0 = alpha_sigma(sigmas_[i]);
    at::Tensor x0 = interpret_output(schedule_.prediction_type, x, out, s0.alpha, s0.sigma).x0;
    if (schedule_.thresholding) {
      x0 = dynamic_threshold(x0, schedule_.dynamic_thresholding_ratio, schedule_.sample_max_value);
    }
    m1 = m0;
    m0 = x0;

    AlphaSigma st = alpha_sigma(sigmas_[i + 1]);
    at::Tensor lambda_t = lambda_of(st);
    at::Tensor lambda_s0 = lambda_of(s0);
    at::Tensor h = lambda_t - lambda_s0;
    at::Tensor phi = st.alpha * (at::exp(-h) - 1.0);  // alpha_t (e^{-h} - 1)
    const bool last = i == steps - 1;                 // final sigma 0: always first order
    if (history < 1 || last) {
      // First order (Lu et al. 2022 eq. 9 with k = 1, = DDIM):
      // x_t = sigma_t / sigma_s x_s - alpha_t (e^{-h} - 1) x0.
      x = (st.sigma / s0.sigma) * x - phi * m0;
    } else {
      // Second order multistep, midpoint (alg. 2): D1 = (m0 - m1) / r0, r0 = h_prev / h;
      // x_t = sigma_t / sigma_s x_s - alpha_t (e^{-h} - 1) (D0 + D1 / 2).
      AlphaSigma s1 = alpha_sigma(sigmas_[i - 1]);
      at::Tensor h_prev = lambda_s0 - lambda_of(s1);
      at::Tensor r0 = h_prev / h;
      at::Tensor d1 = r0.reciprocal() * (m0 - m1);
      x = (st.sigma / s0.sigma) * x - phi * m0 - (phi * 0.5) * d1;
    }
    if (history < 2) ++history;
    if (on_step && !on_step(i - first + 1, steps - first)) throw Cancelled();
  }
  return x;
}

}  // namespace gd::core
