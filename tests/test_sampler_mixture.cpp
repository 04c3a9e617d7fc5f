// The reverse process itself, with no network: every sampler, driven by the exact noise
// prediction of a known mixture of Gaussians, must reproduce the mixture's weights and means.
//
// Tolerances are statistical: with n = 2000 samples the weight of a component with p = 0.3
// has a standard deviation of sqrt(0.3 * 0.7 / 2000) = 0.010, so 0.05 is five standard
// deviations; the component means are estimated from ~600+ samples each, and the samplers'
// own discretisation error at the documented step counts is what the 0.05 bound on the means
// really checks. Seeds are fixed, so the test is deterministic.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "core/pipeline.h"
#include "core/samplers.h"
#include "core/schedule.h"
#include "tests/gaussian_mixture.h"

using gd::core::PredictionType;
using gd::core::ScheduleConfig;

namespace {

gd::test::GaussianMixture two_blobs() {
  gd::test::GaussianMixture mixture;
  mixture.weights = {0.3, 0.7};
  // [2, 1, 1, 2]: two points in 2-D, well separated relative to the spread.
  mixture.means = at::tensor({-0.6f, -0.5f, 0.5f, 0.4f}).reshape({2, 1, 1, 2});
  mixture.spread = 0.05;
  return mixture;
}

at::Tensor table_for(const ScheduleConfig& schedule) {
  if (schedule.stored_buffers.count("alphas_cumprod"))
    return schedule.stored_buffers.at("alphas_cumprod");
  return gd::core::cumulative_alphas(gd::core::make_betas(schedule));
}

void check_reproduces_mixture(const std::string& sampler_name, int steps,
                              const ScheduleConfig& schedule, double eta = 0.0) {
  SCOPED_TRACE(sampler_name + " " + std::to_string(steps) + " steps, " +
               gd::core::prediction_type_name(schedule.prediction_type));
  const auto mixture = two_blobs();
  gd::core::SamplerOptions options;
  options.eta = eta;
  auto sampler = gd::core::make_sampler(sampler_name, schedule, options);
  sampler->set_timesteps(steps);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  const int n = 2000;
  at::Tensor x = at::randn({n, 1, 1, 2}, gen) * sampler->init_noise_sigma();
  x = sampler->run(x, 0, mixture.as_model(table_for(schedule), schedule.prediction_type), gen, {});
  ASSERT_FALSE(at::isnan(x).any().item<bool>());
  at::Tensor label = mixture.nearest(x);
  for (int k = 0; k < 2; ++k) {
    at::Tensor mine = label.eq(k);
    const double weight = mine.to(at::kDouble).mean().item<double>();
    EXPECT_NEAR(weight, mixture.weights[k], 0.05) << "component " << k;
    at::Tensor mean = x.index({mine}).mean(0).reshape({-1});
    at::Tensor expected = mixture.means[k].reshape({-1});
    EXPECT_LE((mean - expected).abs().max().item<double>(), 0.05) << "component " << k;
    // Each cluster's spread must be of the right size too (not collapsed, not blown up).
    const double spread = (x.index({mine}) - mixture.means[k]).std().item<double>();
    EXPECT_GT(spread, 0.02) << "component " << k;
    EXPECT_LT(spread, 0.12) << "component " << k;
  }
}

ScheduleConfig diffusers_schedule(PredictionType type) {
  ScheduleConfig schedule;  // DDPMScheduler defaults: linear betas over 1000 steps, leading
  schedule.prediction_type = type;
  schedule.clip_sample = false;
  return schedule;
}

ScheduleConfig ddpm_pytorch_schedule(PredictionType type) {
  ScheduleConfig schedule;
  schedule.family = ScheduleConfig::Family::DdpmPytorch;
  schedule.num_train_timesteps = 200;
  schedule.beta_schedule = gd::core::BetaSchedule::Given;
  ScheduleConfig linear;
  linear.num_train_timesteps = 200;
  linear.beta_end = 0.05;
  at::Tensor betas = gd::core::make_betas(linear).to(at::kDouble);
  for (int i = 0; i < 200; ++i) schedule.given_betas.push_back(betas[i].item<double>());
  // The buffers GaussianDiffusion registers, from the same betas.
  at::Tensor ac = at::cumprod(1 - betas, 0);
  at::Tensor ac_prev = at::cat({at::ones({1}, at::kDouble), ac.narrow(0, 0, 199)});
  at::Tensor post_var = betas * (1 - ac_prev) / (1 - ac);
  auto f = [](const at::Tensor& t) { return t.to(at::kFloat); };
  schedule.stored_buffers = {
      {"betas", f(betas)},
      {"alphas_cumprod", f(ac)},
      {"alphas_cumprod_prev", f(ac_prev)},
      {"sqrt_alphas_cumprod", f(ac.sqrt())},
      {"sqrt_one_minus_alphas_cumprod", f((1 - ac).sqrt())},
      {"log_one_minus_alphas_cumprod", f((1 - ac).log())},
      {"sqrt_recip_alphas_cumprod", f((1 / ac).sqrt())},
      {"sqrt_recipm1_alphas_cumprod", f((1 / ac - 1).sqrt())},
      {"posterior_variance", f(post_var)},
      {"posterior_log_variance_clipped", f(post_var.clamp_min(1e-20).log())},
      {"posterior_mean_coef1", f(betas * ac_prev.sqrt() / (1 - ac))},
      {"posterior_mean_coef2", f((1 - ac_prev) * (1 - betas).sqrt() / (1 - ac))},
      {"loss_weight", f(at::ones({200}, at::kDouble))}};
  schedule.prediction_type = type;
  return schedule;
}

}  // namespace

// Step counts documented here are the ones each sampler is expected to handle well.
TEST(MixtureDiffusers, Ddpm1000Steps) {
  check_reproduces_mixture("ddpm", 1000, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, DdpmStrided100Steps) {
  check_reproduces_mixture("ddpm", 100, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, Ddim50Steps) {
  check_reproduces_mixture("ddim", 50, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, Ddim50StepsEta1) {
  check_reproduces_mixture("ddim", 50, diffusers_schedule(PredictionType::Epsilon), 1.0);
}
TEST(MixtureDiffusers, DpmSolver20Steps) {
  check_reproduces_mixture("dpmpp_2m", 20, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, Euler50Steps) {
  check_reproduces_mixture("euler", 50, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, EulerAncestral50Steps) {
  check_reproduces_mixture("euler_a", 50, diffusers_schedule(PredictionType::Epsilon));
}
TEST(MixtureDiffusers, VPredictionDdim50Steps) {
  check_reproduces_mixture("ddim", 50, diffusers_schedule(PredictionType::V));
}
TEST(MixtureDiffusers, SamplePredictionDpmSolver20Steps) {
  check_reproduces_mixture("dpmpp_2m", 20, diffusers_schedule(PredictionType::Sample));
}

TEST(MixtureDdpmPytorch, PSampleLoopFullChain) {
  check_reproduces_mixture("ddpm", 200, ddpm_pytorch_schedule(PredictionType::Epsilon));
}
TEST(MixtureDdpmPytorch, DdimSample50Steps) {
  check_reproduces_mixture("ddim", 50, ddpm_pytorch_schedule(PredictionType::V));
}
TEST(MixtureDdpmPytorch, DdimSample50StepsEta1) {
  check_reproduces_mixture("ddim", 50, ddpm_pytorch_schedule(PredictionType::Sample), 1.0);
}

// Denoise, end to end through the pipeline, with the exact denoiser as the "network": images
// drawn from the mixture plus known Gaussian noise must come back closer to the clean ones.
TEST(MixtureDenoise, RaisesPsnrAtKnownAndEstimatedNoise) {
  gd::test::GaussianMixture mixture;
  mixture.weights = {0.5, 0.5};
  // Two smooth 1 x 32 x 32 patterns in model space.
  at::Tensor yy = at::linspace(-1, 1, 32).reshape({32, 1}).expand({32, 32});
  at::Tensor xx = at::linspace(-1, 1, 32).reshape({1, 32}).expand({32, 32});
  mixture.means = at::stack({0.6 * at::sin(3 * xx) * at::cos(2 * yy), 0.5 * at::cos(4 * (xx + yy))})
                      .reshape({2, 1, 32, 32})
                      .to(at::kFloat);
  mixture.spread = 0.01;
  gd::core::PipelineModel model;
  model.schedule = diffusers_schedule(PredictionType::Epsilon);
  model.channels = 1;
  const at::Tensor table = table_for(model.schedule);
  const gd::core::ModelFn fn = mixture.as_model(table, PredictionType::Epsilon);
  model.network = [fn](const at::Tensor& x, const at::Tensor& t, const gd::core::Conditioning& c) {
    return fn(x, t, c.self_cond);
  };
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  at::Tensor clean = ((mixture.sample(4, gen) + 1) / 2).clamp(0, 1);  // [4, 1, 32, 32] in [0, 1]
  auto psnr = [](const at::Tensor& a, const at::Tensor& b) {
    return -10.0 * std::log10((a - b).pow(2).mean().item<double>());
  };
  for (double sigma : {10.0 / 255, 25.0 / 255, 50.0 / 255}) {
    at::Tensor noisy = clean + sigma * at::randn(clean.sizes(), gen);
    for (bool estimate : {false, true}) {
      SCOPED_TRACE("sigma " + std::to_string(sigma) + (estimate ? " estimated" : " given"));
      gd::core::RunOptions options;
      options.sampler = "ddim";
      options.steps = 20;
      options.seed = 3;
      gd::core::DenoiseResult result = gd::core::denoise(
          model, noisy, estimate ? std::nullopt : std::optional<double>(sigma), options);
      EXPECT_EQ(result.estimated, estimate);
      EXPECT_GT(result.steps_run, 0);
      const double before = psnr(noisy, clean), after = psnr(result.image, clean);
      EXPECT_GT(after, before + 3.0) << "PSNR " << before << " -> " << after;
    }
  }
}
