// denoising-diffusion-pytorch's own samplers (core/samplers/ddpm_pytorch_samplers.h) against the
// package's outputs (tests/data/lucidrains-tiny, see its README), and on toy networks: call
// sequence, self-conditioning, learned variance, number of random draws, cancellation, bad input.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/samplers/ddpm_pytorch_samplers.h"
#include "models/model_loader.h"
#include "tests/test_util.h"

using namespace gd::core;
using gd::test::data_path;
using gd::test::expect_error;
using gd::test::fixture_tensor;
using gd::test::max_abs_diff;

namespace {

const std::string kCase = "lucidrains-tiny/";

nlohmann::json read_json(const std::string& relative) {
  std::ifstream in(data_path(relative));
  if (!in) throw std::runtime_error("cannot open " + relative);
  return nlohmann::json::parse(in);
}

const gd::models::LoadedModel& tiny_model() {
  static const gd::models::LoadedModel model =
      gd::models::load_model(data_path(kCase + "model-1.pt"));  // EMA weights by default
  return model;
}

// A Family::DdpmPytorch schedule built like GaussianDiffusion.__init__ (float64, stored
// float32) from a linear beta schedule of T steps, for the toy networks.
ScheduleConfig toy_schedule(int T, PredictionType type) {
  at::Tensor betas = at::linspace(1e-2, 0.2, T, at::kDouble);
  at::Tensor ac = (1 - betas).cumprod(0);
  at::Tensor ac_prev = at::cat({at::ones({1}, at::kDouble), ac.slice(0, 0, T - 1)});
  at::Tensor post_var = betas * (1 - ac_prev) / (1 - ac);
  ScheduleConfig s;
  s.family = ScheduleConfig::Family::DdpmPytorch;
  s.num_train_timesteps = T;
  s.prediction_type = type;
  auto put = [&](const std::string& name, const at::Tensor& v) {
    s.stored_buffers[name] = v.to(at::kFloat);
  };
  put("betas", betas);
  put("alphas_cumprod", ac);
  put("alphas_cumprod_prev", ac_prev);
  put("sqrt_alphas_cumprod", ac.sqrt());
  put("sqrt_one_minus_alphas_cumprod", (1 - ac).sqrt());
  put("sqrt_recip_alphas_cumprod", (1 / ac).sqrt());
  put("sqrt_recipm1_alphas_cumprod", (1 / ac - 1).sqrt());
  put("posterior_variance", post_var);
  put("posterior_log_variance_clipped", post_var.clamp_min(1e-20).log());
  put("posterior_mean_coef1", betas * ac_prev.sqrt() / (1 - ac));
  put("posterior_mean_coef2", (1 - ac_prev) * (1 - betas).sqrt() / (1 - ac));
  return s;
}

// The generator state after `draws` full-shape randn calls from a fresh seed.
at::Tensor state_after_draws(std::uint64_t seed, int draws, at::IntArrayRef shape) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (int i = 0; i < draws; ++i) at::randn(shape, g);
  return g.get_state();
}

// One network call as the sampler made it.
struct Call {
  at::Tensor x, t;
  std::optional<at::Tensor> self_cond;
  at::Tensor out;
};

// Toy self-conditioned, learned-variance network: [N, 2C, H, W], the first C channels read as
// noise (large enough that x0 gets clamped), the last C as the variance interpolation in [-1, 1].
at::Tensor toy_output(const at::Tensor& x, const at::Tensor& t,
                      const std::optional<at::Tensor>& self_cond) {
  at::Tensor tf = t.to(at::kFloat).view({-1, 1, 1, 1});
  at::Tensor cond = self_cond ? *self_cond : at::zeros_like(x);
  at::Tensor eps = 0.7 * x - 0.8 * cond + 0.01 * tf;
  at::Tensor v = at::tanh(x + 0.3 * cond);
  return at::cat({eps, v}, 1);
}

}  // namespace

// (1) ddim_sample's time pairs as the package computed them.
TEST(DdpmPytorchSamplers, TimePairsMatchPackage) {
  const nlohmann::json cases = read_json(kCase + "cases.json");
  int checked = 0;
  for (const auto& check : cases["checks"]) {
    if (check["kind"] != "schedule") continue;
    const std::int64_t T = check["num_timesteps"];
    for (const auto& [steps_text, pairs] : check["ddim_time_pairs"].items()) {
      const int steps = std::stoi(steps_text);
      const auto computed = ddpm_pytorch_time_pairs(T, steps);
      at::Tensor stored = fixture_tensor(kCase + "schedule.safetensors",
                                         "ddim_time_pairs_" + steps_text);  // [steps, 2] int64
      ASSERT_EQ(computed.size(), pairs.size());
      ASSERT_EQ(stored.size(0), steps);
      for (int i = 0; i < steps; ++i) {
        EXPECT_EQ(computed[i][0], pairs[i][0].get<std::int64_t>()) << i;
        EXPECT_EQ(computed[i][1], pairs[i][1].get<std::int64_t>()) << i;
        EXPECT_EQ(computed[i][0], stored[i][0].item<std::int64_t>()) << i;
        EXPECT_EQ(computed[i][1], stored[i][1].item<std::int64_t>()) << i;
      }
      auto sampler = make_ddpm_pytorch_sampler("ddim", tiny_model().schedule, {});
      sampler->set_timesteps(steps);
      ASSERT_EQ(sampler->timesteps().scalar_type(), at::kLong);
      for (int i = 0; i < steps; ++i) {
        EXPECT_EQ(sampler->timesteps()[i].item<std::int64_t>(), computed[i][0]);
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);

  // steps == T is p_sample_loop's reversed(range(T)); a non-divisor truncates toward zero.
  const auto full = ddpm_pytorch_time_pairs(100, 100);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(full[i][0], 99 - i);
    EXPECT_EQ(full[i][1], 98 - i);
  }
  const auto seven = ddpm_pytorch_time_pairs(100, 7);  // linspace(-1, 99, 8)
  const std::vector<std::int64_t> expected = {99, 84, 70, 56, 41, 27, 13, -1};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(seven[i][0], expected[i]);
    EXPECT_EQ(seven[i][1], expected[i + 1]);
  }
}

// (2) every generate case of cases.json, seed for seed, on the EMA weights of model-1.pt.
TEST(DdpmPytorchSamplers, GenerateMatchesPackage) {
  const gd::models::LoadedModel& model = tiny_model();
  ASSERT_EQ(model.schedule.family, ScheduleConfig::Family::DdpmPytorch);
  const nlohmann::json cases = read_json(kCase + "cases.json");
  int checked = 0;
  for (const auto& check : cases["checks"]) {
    if (check["kind"] != "generate") continue;
    const std::string file = kCase + check["file"].get<std::string>();
    SCOPED_TRACE(file);
    const std::int64_t b = check["batch"], h = check["height"], w = check["width"];
    const std::int64_t c = 3;
    const int steps = check["steps"];
    const std::uint64_t seed = check["seed"];

    SamplerOptions options;
    options.eta = check["eta"];
    auto sampler = make_ddpm_pytorch_sampler(check["sampler"], model.schedule, options);
    sampler->set_timesteps(steps);
    EXPECT_EQ(sampler->init_noise_sigma(), 1.0);

    at::Tensor model_times = fixture_tensor(file, "model_times");
    ASSERT_TRUE(at::equal(sampler->timesteps(), model_times));

    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
    at::Tensor noise = at::randn({b, c, h, w}, generator);
    ASSERT_TRUE(at::equal(noise, fixture_tensor(file, "noise")));

    std::vector<at::Tensor> inputs;  // x fed at each step = trajectory frame k before step k
    gd::core::ModelFn fn = [&](const at::Tensor& x, const at::Tensor& t,
                               const std::optional<at::Tensor>& self_cond) {
      EXPECT_EQ(t.scalar_type(), at::kLong);
      EXPECT_EQ(t[0].item<std::int64_t>(), model_times[inputs.size()].item<std::int64_t>());
      inputs.push_back(x.clone());
      return model.network->forward(x, t, gd::core::Conditioning::self_conditioned(self_cond));
    };
    int reported = 0;
    at::Tensor x = sampler->run(noise * sampler->init_noise_sigma(), 0, fn, generator,
                                [&](int done, int total) {
                                  EXPECT_EQ(done, reported + 1);
                                  EXPECT_EQ(total, steps);
                                  reported = done;
                                  return true;
                                });
    EXPECT_EQ(reported, steps);
    ASSERT_EQ(static_cast<int>(inputs.size()), steps);
    inputs.push_back(x);

    at::Tensor image = (x + 1) * 0.5;
    const double err = max_abs_diff(image, fixture_tensor(file, "image"));
    std::cout << file << ": max |image - package| = " << err << "\n";
    EXPECT_LE(err, 2e-3);

    // Trajectory frames (unnormalized): frame k = x after k steps.
    at::Tensor trajectory = fixture_tensor(file, "trajectory");  // [b, frames, c, h, w]
    at::Tensor index = fixture_tensor(file, "trajectory_index");
    double worst = 0.0;
    for (std::int64_t j = 0; j < index.size(0); ++j) {
      const std::int64_t k = index[j].item<std::int64_t>();
      ASSERT_LE(k, steps);
      worst = std::max(worst, max_abs_diff((inputs[k] + 1) * 0.5, trajectory.select(1, j)));
    }
    EXPECT_LE(worst, 2e-3);

    // Draws: 1 (the initial noise) + one per step with time_next >= 0.
    const int draws = check["rng_draws"];
    EXPECT_EQ(draws, steps);
    EXPECT_TRUE(at::equal(generator.get_state(), state_after_draws(seed, draws, {b, c, h, w})));
    ++checked;
  }
  EXPECT_EQ(checked, 3);
}

// (3) self-conditioning + learned variance on a toy network: call sequence, the p_sample maths
// re-done here from the package's formulas, and the number of draws.
TEST(DdpmPytorchSamplers, SelfConditioningLearnedVarianceAndDraws) {
  const int T = 10;
  // Prediction type V on purpose: learned-variance output is read as noise whatever it says.
  const ScheduleConfig schedule = toy_schedule(T, PredictionType::V);
  const auto& buf = schedule.stored_buffers;
  const std::vector<std::int64_t> shape = {2, 3, 4, 4};

  for (const std::string name : {"ddpm", "ddim"}) {
    for (int steps : {T, 4}) {
      SCOPED_TRACE(name + " steps " + std::to_string(steps));
      SamplerOptions options;
      options.eta = 0.0;
      auto sampler = make_ddpm_pytorch_sampler(name, schedule, options);
      sampler->set_timesteps(steps);
      const auto pairs = ddpm_pytorch_time_pairs(T, steps);

      at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(7);
      at::Tensor x = at::randn(shape, generator) * 2.0;
      std::vector<Call> calls;
      ModelFn fn = [&](const at::Tensor& xi, const at::Tensor& t,
                       const std::optional<at::Tensor>& self_cond) {
        at::Tensor out = toy_output(xi, t, self_cond);
        calls.push_back({xi.clone(), t.clone(),
                         self_cond ? std::optional<at::Tensor>(self_cond->clone()) : std::nullopt,
                         out.clone()});
        return out;
      };
      at::Tensor result = sampler->run(x, 0, fn, generator, {});

      ASSERT_EQ(static_cast<int>(calls.size()), steps);
      EXPECT_FALSE(calls[0].self_cond.has_value());
      bool clamped_somewhere = false;
      for (int i = 0; i < steps; ++i) {
        const std::int64_t time = pairs[i][0];
        ASSERT_EQ(calls[i].t.sizes(), at::IntArrayRef({shape[0]}));
        EXPECT_TRUE((calls[i].t == time).all().item<bool>());
        // The clamped x0 of step i, from the package's formula (predict_start_from_noise).
        at::Tensor eps = calls[i].out.slice(1, 0, 3);
        at::Tensor x0 = (buf.at("sqrt_recip_alphas_cumprod")[time] * calls[i].x -
                         buf.at("sqrt_recipm1_alphas_cumprod")[time] * eps)
                            .clamp(-1, 1);
        clamped_somewhere |= (x0.abs() == 1).any().item<bool>();
        if (i + 1 < steps) {
          ASSERT_TRUE(calls[i + 1].self_cond.has_value());
          EXPECT_LE(max_abs_diff(*calls[i + 1].self_cond, x0), 1e-5);
        } else if (name == "ddim" || steps < T) {
          EXPECT_LE(max_abs_diff(result, x0), 1e-5);  // the last pair returns x0
        }
      }
      EXPECT_TRUE(clamped_somewhere);

      // 1 initial draw + one per step except the last.
      EXPECT_TRUE(at::equal(generator.get_state(), state_after_draws(7, steps, shape)));
    }
  }

  // ddpm with steps == T, re-done here: LearnedGaussianDiffusion.p_mean_variance + p_sample.
  auto sampler = make_ddpm_pytorch_sampler("ddpm", schedule, {});
  sampler->set_timesteps(T);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(11);
  at::Tensor x = at::randn(shape, generator);
  at::Tensor result = sampler->run(x, 0, toy_output, generator, {});

  at::Generator replay = at::make_generator<at::CPUGeneratorImpl>(11);
  at::Tensor img = at::randn(shape, replay);
  std::optional<at::Tensor> x_start;
  const at::Tensor log_betas = buf.at("betas").log();
  for (int t = T - 1; t >= 0; --t) {
    at::Tensor out = toy_output(img, at::full({shape[0]}, t, at::kLong), x_start);
    std::vector<at::Tensor> halves = out.chunk(2, 1);
    at::Tensor frac = (halves[1] + 1) * 0.5;
    at::Tensor log_var =
        frac * log_betas[t] + (1 - frac) * buf.at("posterior_log_variance_clipped")[t];
    at::Tensor x0 = (buf.at("sqrt_recip_alphas_cumprod")[t] * img -
                     buf.at("sqrt_recipm1_alphas_cumprod")[t] * halves[0])
                        .clamp(-1, 1);
    at::Tensor mean =
        buf.at("posterior_mean_coef1")[t] * x0 + buf.at("posterior_mean_coef2")[t] * img;
    img = t > 0 ? mean + (0.5 * log_var).exp() * at::randn(shape, replay) : mean;
    x_start = x0;
  }
  EXPECT_LE(max_abs_diff(result, img), 1e-4);
  EXPECT_TRUE(at::equal(generator.get_state(), replay.get_state()));
}

// "ddpm" with fewer steps than T is ddim_sample with eta = 1, draw for draw.
TEST(DdpmPytorchSamplers, StridedDdpmIsDdimEtaOne) {
  const ScheduleConfig schedule = toy_schedule(20, PredictionType::Epsilon);
  auto net = [](const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>&) {
    return 0.5 * x + 0.001 * t.to(at::kFloat).view({-1, 1, 1, 1});
  };
  SamplerOptions eta1;
  eta1.eta = 1.0;
  auto ddpm = make_ddpm_pytorch_sampler("ddpm", schedule, {});
  auto ddim = make_ddpm_pytorch_sampler("ddim", schedule, eta1);
  ddpm->set_timesteps(6);
  ddim->set_timesteps(6);
  EXPECT_TRUE(at::equal(ddpm->timesteps(), ddim->timesteps()));
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor a = ddpm->run(at::randn({1, 3, 8, 8}, g1), 0, net, g1, {});
  at::Tensor b = ddim->run(at::randn({1, 3, 8, 8}, g2), 0, net, g2, {});
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_TRUE(at::equal(g1.get_state(), g2.get_state()));
}

// add_noise is q_sample at timesteps()[index]; run(first) starts there without self_cond.
TEST(DdpmPytorchSamplers, AddNoiseAndLaterStart) {
  const ScheduleConfig schedule = toy_schedule(10, PredictionType::Sample);
  auto sampler = make_ddpm_pytorch_sampler("ddim", schedule, {});
  sampler->set_timesteps(5);  // times 9, 7, 5, 3, 1
  const std::int64_t t = sampler->timesteps()[2].item<std::int64_t>();
  EXPECT_EQ(t, 5);
  at::Tensor x0 = at::rand({1, 3, 4, 4}) * 2 - 1;
  at::Tensor noise = at::randn({1, 3, 4, 4});
  at::Tensor xt = sampler->add_noise(x0, noise, 2);
  at::Tensor expected = schedule.stored_buffers.at("sqrt_alphas_cumprod")[t] * x0 +
                        schedule.stored_buffers.at("sqrt_one_minus_alphas_cumprod")[t] * noise;
  EXPECT_LE(max_abs_diff(xt, expected), 1e-6);

  std::vector<std::int64_t> times;
  std::vector<bool> had_cond;
  at::Tensor held = at::full({1, 3, 4, 4}, 3.0);  // pred_x0 output beyond [-1, 1]
  ModelFn fn = [&](const at::Tensor&, const at::Tensor& tt, const std::optional<at::Tensor>& c) {
    times.push_back(tt[0].item<std::int64_t>());
    had_cond.push_back(c.has_value());
    return held;
  };
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
  std::vector<std::pair<int, int>> progress;
  at::Tensor out = sampler->run(xt, 2, fn, g, [&](int done, int total) {
    progress.push_back({done, total});
    return true;
  });
  EXPECT_EQ(times, (std::vector<std::int64_t>{5, 3, 1}));
  EXPECT_EQ(had_cond, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(progress, (std::vector<std::pair<int, int>>{{1, 3}, {2, 3}, {3, 3}}));
  EXPECT_TRUE((held == 3.0).all().item<bool>());  // the network's tensor is not clamped in place
  EXPECT_TRUE((out == 1.0).all().item<bool>());   // the final x is the clamped x0
  EXPECT_TRUE(at::equal(g.get_state(), state_after_draws(5, 2, {1, 3, 4, 4})));
  expect_error([&] { sampler->add_noise(x0, noise, 5); }, "index");
}

// (4) on_step returning false stops the run with gd::Cancelled.
TEST(DdpmPytorchSamplers, CancelledThroughOnStep) {
  const ScheduleConfig schedule = toy_schedule(10, PredictionType::Epsilon);
  for (const std::string name : {"ddpm", "ddim"}) {
    auto sampler = make_ddpm_pytorch_sampler(name, schedule, {});
    sampler->set_timesteps(10);
    int calls = 0;
    ModelFn fn = [&](const at::Tensor& x, const at::Tensor&, const std::optional<at::Tensor>&) {
      ++calls;
      return at::zeros_like(x);
    };
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
    EXPECT_THROW(
        sampler->run(at::randn({1, 3, 4, 4}, g), 0, fn, g, [](int done, int) { return done < 2; }),
        gd::Cancelled);
    EXPECT_EQ(calls, 2) << name;
  }
}

// (5) bad input.
TEST(DdpmPytorchSamplers, BadInput) {
  const ScheduleConfig schedule = toy_schedule(10, PredictionType::Epsilon);
  auto sampler = make_ddpm_pytorch_sampler("ddpm", schedule, {});
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(1);
  ModelFn zeros = [](const at::Tensor& x, const at::Tensor&, const std::optional<at::Tensor>&) {
    return at::zeros_like(x);
  };
  expect_error([&] { sampler->run(at::zeros({1, 3, 4, 4}), 0, zeros, g, {}); }, "set_timesteps");
  expect_error([&] { sampler->set_timesteps(0); }, "steps must be between 1 and 10, got 0");
  expect_error([&] { sampler->set_timesteps(11); }, "got 11");
  expect_error([&] { make_ddpm_pytorch_sampler("euler", schedule, {}); },
               "unknown sampler 'euler'");
  SamplerOptions bad_eta;
  bad_eta.eta = -0.5;
  expect_error([&] { make_ddpm_pytorch_sampler("ddim", schedule, bad_eta); }, "eta");

  ScheduleConfig diffusers = schedule;
  diffusers.family = ScheduleConfig::Family::Diffusers;
  expect_error([&] { make_ddpm_pytorch_sampler("ddim", diffusers, {}); }, "denoising-diffusion");
  ScheduleConfig missing = schedule;
  missing.stored_buffers.erase("posterior_mean_coef2");
  expect_error([&] { make_ddpm_pytorch_sampler("ddpm", missing, {}); }, "posterior_mean_coef2");

  sampler->set_timesteps(10);
  expect_error([&] { sampler->run(at::zeros({1, 3, 4, 4}), 10, zeros, g, {}); }, "first step");
  ModelFn wrong = [](const at::Tensor& x, const at::Tensor&, const std::optional<at::Tensor>&) {
    return at::zeros({x.size(0), 5, x.size(2), x.size(3)});
  };
  expect_error([&] { sampler->run(at::zeros({1, 3, 4, 4}), 0, wrong, g, {}); }, "shape");
}
