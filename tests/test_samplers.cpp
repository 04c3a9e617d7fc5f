// diffusers-semantics samplers: timesteps and sigmas against diffusers' own tables, full
// generate and img2img runs of the tiny fixture model against diffusers' outputs seed for seed
// (tests/data/diffusers-tiny, see its README), a dummy-model harness in the style of diffusers'
// scheduler tests (loop bookkeeping, random draws, cancellation), and bad options.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/samplers.h"
#include "core/samplers/ddim_sampler.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/samplers/dpmpp_2m_sampler.h"
#include "core/samplers/euler_sampler.h"
#include "core/scheduler_config.h"
#include "core/timesteps.h"
#include "models/model_loader.h"
#include "models/safetensors_reader.h"
#include "models/tensor_convert.h"
#include "tests/test_util.h"

using gd::core::EulerSampler;
using gd::core::ModelFn;
using gd::core::PredictionType;
using gd::core::Sampler;
using gd::core::SamplerOptions;
using gd::core::ScheduleConfig;
using gd::core::TimestepSpacing;
using gd::test::data_path;
using gd::test::expect_error;
using gd::test::max_abs_diff;
using gd::test::read_text;

namespace {

const std::string kCase = "diffusers-tiny/";

nlohmann::json cases() { return nlohmann::json::parse(read_text(kCase + "cases.json")); }

// The fixture's scheduler_config.json: every sampler inherits it (README "Samplers inherit
// the DDPM config").
ScheduleConfig fixture_schedule() {
  return gd::core::parse_scheduler_config(read_text(kCase + "model/scheduler_config.json"),
                                          "scheduler_config.json");
}

const gd::models::LoadedModel& fixture_model() {
  static const gd::models::LoadedModel model = gd::models::load_model(data_path(kCase + "model"));
  return model;
}

ModelFn network_fn() {
  return [](const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>& c) {
    return fixture_model().network->forward(x, t, gd::core::Conditioning::self_conditioned(c));
  };
}

gd::models::TensorMap fixture_file(const std::string& file) {
  return gd::models::read_safetensors(data_path(kCase + file));
}

at::Tensor get(const gd::models::TensorMap& map, const std::string& name) {
  auto it = map.find(name);
  if (it == map.end()) throw std::runtime_error("fixture has no tensor " + name);
  return gd::models::to_tensor(it->second);
}

bool has(const gd::models::TensorMap& map, const std::string& name) {
  return map.find(name) != map.end();
}

void expect_same_timesteps(const at::Tensor& actual, const at::Tensor& expected,
                           const std::string& what) {
  EXPECT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(at::equal(actual, expected)) << what << ": " << actual << " vs " << expected;
}

// The image and, where stored, the un-clamped final sample against the fixture.
void expect_final(const at::Tensor& x, const gd::models::TensorMap& fx, const std::string& what) {
  at::Tensor image = (x / 2 + 0.5).clamp(0, 1);
  const double image_error = max_abs_diff(image, get(fx, "image"));
  EXPECT_LE(image_error, 2e-3) << what;
  std::printf("  %s: image max abs error %.3g", what.c_str(), image_error);
  if (has(fx, "x_final")) {
    at::Tensor expected = get(fx, "x_final");
    const double scale = expected.abs().max().item<double>();
    const double x_error = max_abs_diff(x, expected);
    EXPECT_LE(x_error, 2e-3 * scale) << what << " x_final";
    std::printf(", x_final %.3g (of max %.3g)", x_error, scale);
  }
  std::printf("\n");
}

// The dummy network of diffusers' scheduler tests: deterministic, depends on x and t.
int g_dummy_calls = 0;
at::Tensor g_dummy_last_t;
at::Tensor dummy_model(const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>&) {
  ++g_dummy_calls;
  g_dummy_last_t = t;
  at::Tensor tf = t.to(at::kFloat).view({-1, 1, 1, 1});  // [N, 1, 1, 1]
  return x * tf / (tf + 1);
}

ScheduleConfig dummy_schedule() {
  ScheduleConfig s;
  s.num_train_timesteps = 1000;
  s.timestep_spacing = TimestepSpacing::Leading;
  return s;
}

at::Tensor dummy_sample(int batch = 2) {
  // A deterministic [N, 3, 8, 8] sample in roughly [-1, 1].
  return at::sin(at::arange(batch * 3 * 8 * 8, at::kFloat) * 0.37).view({batch, 3, 8, 8});
}

}  // namespace

// (1) Timesteps, sigmas and init_noise_sigma of every sampler against schedule.safetensors.
TEST(SamplerSchedule, MatchesDiffusersTables) {
  const ScheduleConfig config = fixture_schedule();
  gd::models::TensorMap fx = fixture_file("schedule.safetensors");
  const std::vector<std::string> names = {"ddpm", "ddim", "dpmpp_2m", "euler", "euler_a"};
  int checked = 0;
  for (const std::string& name : names) {
    for (int n : {10, 20}) {
      const std::string key = name + "/" + std::to_string(n);
      auto sampler = gd::core::make_sampler(name, config, {});
      sampler->set_timesteps(n);
      expect_same_timesteps(sampler->timesteps(), get(fx, "timesteps/" + key), key);
      EXPECT_NEAR(sampler->init_noise_sigma(), get(fx, "init_noise_sigma/" + key).item<double>(),
                  1e-6)
          << key;
      at::Tensor sigmas;
      if (auto* dpm = dynamic_cast<gd::core::DpmSolverPP2MSampler*>(sampler.get())) {
        sigmas = dpm->sigmas();
      } else if (auto* euler = dynamic_cast<EulerSampler*>(sampler.get())) {
        sigmas = euler->sigmas();
      }
      if (has(fx, "sigmas/" + key)) {
        ASSERT_TRUE(sigmas.defined()) << key;
        at::Tensor expected = get(fx, "sigmas/" + key);
        EXPECT_EQ(sigmas.scalar_type(), at::kFloat) << key;
        ASSERT_EQ(sigmas.sizes(), expected.sizes()) << key;
        EXPECT_LE(max_abs_diff(sigmas, expected), 1e-6) << key;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 10);
}

// Spacings the fixture does not cover, worked out by hand from numpy's definitions.
TEST(SamplerSchedule, SpacingsByHand) {
  ScheduleConfig s;
  s.num_train_timesteps = 1000;
  s.timestep_spacing = TimestepSpacing::Linspace;
  at::Tensor t = gd::core::ddpm_timesteps(s, 10);  // round(linspace(0, 999, 10)), reversed
  EXPECT_TRUE(at::equal(
      t, at::tensor(std::vector<int64_t>{999, 888, 777, 666, 555, 444, 333, 222, 111, 0})));
  s.timestep_spacing = TimestepSpacing::Trailing;
  t = gd::core::ddpm_timesteps(s, 10);  // round(arange(1000, 0, -100)) - 1
  EXPECT_TRUE(at::equal(
      t, at::tensor(std::vector<int64_t>{999, 899, 799, 699, 599, 499, 399, 299, 199, 99})));
  s.num_train_timesteps = 100;
  t = gd::core::ddpm_timesteps(s, 3);  // arange(100, 0, -33.33) = 100, 66.67, 33.33
  EXPECT_TRUE(at::equal(t, at::tensor(std::vector<int64_t>{99, 66, 32})));
  t = gd::core::dpm_solver_timesteps(s, 3);
  EXPECT_TRUE(at::equal(t, at::tensor(std::vector<int64_t>{99, 66, 32})));

  s.timestep_spacing = TimestepSpacing::Leading;
  s.steps_offset = 1;
  t = gd::core::ddpm_timesteps(s, 4);  // arange(4) * 25 reversed + 1
  EXPECT_TRUE(at::equal(t, at::tensor(std::vector<int64_t>{76, 51, 26, 1})));
  t = gd::core::dpm_solver_timesteps(s, 4);  // (arange(5) * 20)[::-1][:-1] + 1
  EXPECT_TRUE(at::equal(t, at::tensor(std::vector<int64_t>{81, 61, 41, 21})));

  // Euler's linspace timesteps are float32 and fractional when (T - 1) / (n - 1) is not whole.
  s.timestep_spacing = TimestepSpacing::Linspace;
  s.steps_offset = 0;
  t = gd::core::euler_timesteps(s, 20);
  ASSERT_EQ(t.scalar_type(), at::kFloat);
  EXPECT_EQ(t[0].item<float>(), 99.0f);
  EXPECT_EQ(t[19].item<float>(), 0.0f);
  EXPECT_EQ(t[1].item<float>(), static_cast<float>(18 * (99.0 / 19)));
  // init_noise_sigma is max(sigmas) (not sqrt(max^2 + 1)) outside leading spacing.
  EulerSampler euler(s, EulerSampler::Variant::Euler);
  euler.set_timesteps(20);
  EXPECT_EQ(euler.init_noise_sigma(), euler.sigmas().max().item<double>());
  // Interpolation between table entries: sigma(t) = sigma_j + (t - j) (sigma_{j+1} - sigma_j).
  at::Tensor table = gd::core::sigma_table(gd::core::cumulative_alphas(gd::core::make_betas(s)));
  const double t1 = 18 * (99.0 / 19);
  const int j = static_cast<int>(std::floor(t1));
  const double s_j = table[j].item<double>(), s_j1 = table[j + 1].item<double>();
  EXPECT_NEAR(euler.sigmas()[1].item<double>(), s_j + (static_cast<float>(t1) - j) * (s_j1 - s_j),
              1e-6);
}

// (2) Every generate case: same noise, same timesteps, same image as diffusers.
TEST(SamplerFixture, GenerateCases) {
  int ran = 0;
  for (const auto& c : cases()) {
    if (c["kind"] != "generate") continue;
    const std::string file = c["file"];
    SCOPED_TRACE(file);
    gd::models::TensorMap fx = fixture_file(file);
    SamplerOptions options;
    options.eta = c["eta"];
    auto sampler = gd::core::make_sampler(c["sampler"], fixture_model().schedule, options);
    sampler->set_timesteps(c["steps"]);
    expect_same_timesteps(sampler->timesteps(), get(fx, "timesteps"), file);

    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(c["seed"].get<uint64_t>());
    at::Tensor noise = at::randn(
        {c["batch"].get<int64_t>(), 3, c["height"].get<int64_t>(), c["width"].get<int64_t>()},
        generator);
    ASSERT_TRUE(at::equal(noise, get(fx, "noise"))) << "the generator's first randn differs";
    at::Tensor x = noise * sampler->init_noise_sigma();
    int calls = 0;
    x = sampler->run(x, 0, network_fn(), generator, [&](int done, int total) {
      ++calls;
      EXPECT_EQ(total, c["steps"].get<int>());
      EXPECT_EQ(done, calls);
      return true;
    });
    EXPECT_EQ(calls, c["steps"].get<int>());
    expect_final(x, fx, file);
    ++ran;
  }
  EXPECT_EQ(ran, 7);
}

// (3) Every img2img case: strength trims the schedule, the add_noise noise is the first draw,
// the run starts at the first kept timestep.
TEST(SamplerFixture, Img2ImgCases) {
  int ran = 0;
  for (const auto& c : cases()) {
    if (c["kind"] != "img2img") continue;
    const std::string file = c["file"];
    SCOPED_TRACE(file);
    gd::models::TensorMap fx = fixture_file(file);
    SamplerOptions options;
    options.eta = c["eta"];
    auto sampler = gd::core::make_sampler(c["sampler"], fixture_model().schedule, options);
    const int steps = c["steps"];
    sampler->set_timesteps(steps);
    const double strength = c["strength"];
    const int init_timestep = std::min(static_cast<int>(steps * strength), steps);
    const int first = steps - init_timestep;
    expect_same_timesteps(sampler->timesteps().narrow(0, first, steps - first),
                          get(fx, "timesteps"), file);

    at::Tensor init = get(fx, "input") * 2 - 1;  // [1, 3, 16, 16] in [-1, 1]
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(c["seed"].get<uint64_t>());
    at::Tensor noise = at::randn(init.sizes(), generator);
    ASSERT_TRUE(at::equal(noise, get(fx, "noise"))) << "the generator's first randn differs";
    at::Tensor x = sampler->add_noise(init, noise, first);
    EXPECT_LE(max_abs_diff(x, get(fx, "noised")), 1e-6);
    x = sampler->run(x, first, network_fn(), generator, nullptr);
    expect_final(x, fx, file);
    ++ran;
  }
  EXPECT_EQ(ran, 3);
}

// (4) Dummy-model harness: every sampler runs, honours `first`, reports each step, passes the
// timesteps in the reference dtype, and stops with gd::Cancelled.
TEST(SamplerHarness, LoopBookkeeping) {
  for (const std::string& name : gd::core::sampler_names()) {
    SCOPED_TRACE(name);
    auto sampler = gd::core::make_sampler(name, dummy_schedule(), {});
    sampler->set_timesteps(10);
    ASSERT_EQ(sampler->timesteps().size(0), 10);
    const bool float_times = name == "euler" || name == "euler_a";
    EXPECT_EQ(sampler->timesteps().scalar_type(), float_times ? at::kFloat : at::kLong);

    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(0);
    std::vector<std::pair<int, int>> reports;
    g_dummy_calls = 0;
    at::Tensor x = sampler->run(dummy_sample() * sampler->init_noise_sigma(), 0, dummy_model,
                                generator, [&](int done, int total) {
                                  reports.emplace_back(done, total);
                                  return true;
                                });
    EXPECT_EQ(g_dummy_calls, 10);
    ASSERT_EQ(reports.size(), 10u);
    EXPECT_EQ(reports.front(), std::make_pair(1, 10));
    EXPECT_EQ(reports.back(), std::make_pair(10, 10));
    EXPECT_EQ(x.sizes(), dummy_sample().sizes());
    EXPECT_TRUE(at::isfinite(x).all().item<bool>());
    // The model saw [N] timesteps, the last one of the schedule.
    EXPECT_EQ(g_dummy_last_t.sizes(), at::IntArrayRef({2}));
    EXPECT_EQ(g_dummy_last_t.scalar_type(), sampler->timesteps().scalar_type());
    EXPECT_EQ(g_dummy_last_t[1].item<double>(), sampler->timesteps()[9].item<double>());

    // Starting later: 10 - 4 steps, first model call at timesteps()[4].
    g_dummy_calls = 0;
    std::vector<double> seen;
    ModelFn recording = [&](const at::Tensor& xx, const at::Tensor& t,
                            const std::optional<at::Tensor>& c) {
      seen.push_back(t[0].item<double>());
      return dummy_model(xx, t, c);
    };
    reports.clear();
    at::Tensor noised = sampler->add_noise(dummy_sample(), dummy_sample().flip(3), 4);
    sampler->run(noised, 4, recording, generator, [&](int done, int total) {
      reports.emplace_back(done, total);
      return true;
    });
    ASSERT_EQ(seen.size(), 6u);
    EXPECT_EQ(seen.front(), sampler->timesteps()[4].item<double>());
    EXPECT_EQ(reports.back(), std::make_pair(6, 6));

    // Cancelling after the second step.
    g_dummy_calls = 0;
    EXPECT_THROW(sampler->run(dummy_sample(), 0, dummy_model, generator,
                              [](int done, int) { return done < 2; }),
                 gd::Cancelled);
    EXPECT_EQ(g_dummy_calls, 2);

    // `first` out of range.
    expect_error([&] { sampler->run(dummy_sample(), 10, dummy_model, generator, nullptr); },
                 "first step");
  }
}

// The random draws each sampler makes, counted by replaying them on a second generator:
// DDPM only for t > 0, DDIM at every step iff eta > 0, Euler ancestral at every step, Euler
// and DPM-Solver++ never.
TEST(SamplerHarness, RandomDraws) {
  struct Case {
    std::string name;
    double eta;
    TimestepSpacing spacing;
    int draws;
  };
  const std::vector<Case> cases_ = {
      {"ddpm", 0.0, TimestepSpacing::Leading, 9},    // last t = 0: no draw
      {"ddpm", 0.0, TimestepSpacing::Trailing, 10},  // last t = 99 > 0: draws too
      {"ddim", 0.0, TimestepSpacing::Leading, 0},     {"ddim", 1.0, TimestepSpacing::Leading, 10},
      {"dpmpp_2m", 0.0, TimestepSpacing::Leading, 0}, {"euler", 0.0, TimestepSpacing::Leading, 0},
      {"euler_a", 0.0, TimestepSpacing::Leading, 10},
  };
  for (const Case& c : cases_) {
    SCOPED_TRACE(c.name + " eta " + std::to_string(c.eta));
    ScheduleConfig s = dummy_schedule();
    s.timestep_spacing = c.spacing;
    SamplerOptions options;
    options.eta = c.eta;
    auto sampler = gd::core::make_sampler(c.name, s, options);
    sampler->set_timesteps(10);
    at::Generator used = at::make_generator<at::CPUGeneratorImpl>(7);
    sampler->run(dummy_sample(), 0, dummy_model, used, nullptr);
    at::Generator replay = at::make_generator<at::CPUGeneratorImpl>(7);
    for (int i = 0; i < c.draws; ++i) at::randn({2, 3, 8, 8}, replay);
    EXPECT_TRUE(at::equal(at::randn({4}, used), at::randn({4}, replay)));
  }
}

// Prediction types, clipping, thresholding and variance types all run and stay finite; the
// same seed gives the same result.
TEST(SamplerHarness, ConfigurationsRun) {
  for (const std::string& name : gd::core::sampler_names()) {
    for (PredictionType type :
         {PredictionType::Epsilon, PredictionType::Sample, PredictionType::V}) {
      for (int variant = 0; variant < 3; ++variant) {
        ScheduleConfig s = dummy_schedule();
        s.prediction_type = type;
        s.clip_sample = variant != 1;
        s.thresholding = variant == 2;
        s.sample_max_value = 2.0;
        SCOPED_TRACE(name + " " + gd::core::prediction_type_name(type) + " variant " +
                     std::to_string(variant));
        auto sampler = gd::core::make_sampler(name, s, {0.5});
        sampler->set_timesteps(8);
        at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(3);
        at::Generator g2 = at::make_generator<at::CPUGeneratorImpl>(3);
        at::Tensor a = sampler->run(dummy_sample(), 0, dummy_model, g1, nullptr);
        at::Tensor b = sampler->run(dummy_sample(), 0, dummy_model, g2, nullptr);
        EXPECT_TRUE(at::isfinite(a).all().item<bool>());
        EXPECT_TRUE(at::equal(a, b));
      }
    }
  }
  // DDPM variance types, learned ones with a 2*C-channel network output.
  for (const char* variance :
       {"fixed_small", "fixed_small_log", "fixed_large", "learned", "learned_range"}) {
    SCOPED_TRACE(variance);
    ScheduleConfig s = dummy_schedule();
    s.variance_type = variance;
    gd::core::DdpmSampler sampler(s);
    sampler.set_timesteps(10);
    ModelFn two_c = [](const at::Tensor& x, const at::Tensor& t,
                       const std::optional<at::Tensor>& c) {
      at::Tensor eps = dummy_model(x, t, c);
      // Variance channels in [-1, 1] (learned_range) / positive (learned).
      return at::cat({eps, at::sigmoid(x) * 0.01}, 1);
    };
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(5);
    at::Tensor x = sampler.run(dummy_sample(), 0, two_c, g, nullptr);
    EXPECT_EQ(x.size(1), 3);
    EXPECT_TRUE(at::isfinite(x).all().item<bool>());
  }
  ScheduleConfig bad = dummy_schedule();
  bad.variance_type = "fixed_large_log";
  expect_error([&] { gd::core::DdpmSampler sampler(bad); }, "variance_type");
}

// add_noise as each diffusers scheduler does it.
TEST(SamplerHarness, AddNoise) {
  const ScheduleConfig s = dummy_schedule();
  at::Tensor ac = gd::core::cumulative_alphas(gd::core::make_betas(s));
  at::Tensor x0 = dummy_sample(1), noise = dummy_sample(1).flip(2);
  for (const char* name : {"ddpm", "ddim"}) {
    auto sampler = gd::core::make_sampler(name, s, {});
    sampler->set_timesteps(10);
    const int64_t t = sampler->timesteps()[3].item<int64_t>();
    at::Tensor expected = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * noise;
    EXPECT_LE(max_abs_diff(sampler->add_noise(x0, noise, 3), expected), 1e-6) << name;
  }
  EulerSampler euler(s, EulerSampler::Variant::Euler);
  euler.set_timesteps(10);
  EXPECT_TRUE(at::equal(euler.add_noise(x0, noise, 3), x0 + noise * euler.sigmas()[3]));
  gd::core::DpmSolverPP2MSampler dpm(s);
  dpm.set_timesteps(10);
  const double sigma = dpm.sigmas()[3].item<double>();
  const double alpha = 1 / std::sqrt(sigma * sigma + 1);
  EXPECT_LE(max_abs_diff(dpm.add_noise(x0, noise, 3), alpha * x0 + sigma * alpha * noise), 1e-6);
}

// denoising-diffusion-pytorch schedules under the diffusers-style solvers: their betas, with
// trailing spacing (the first step at T - 1).
TEST(SamplerFactory, DdpmPytorchFamilyUsesTrailingSpacing) {
  ScheduleConfig s;
  s.family = ScheduleConfig::Family::DdpmPytorch;
  s.num_train_timesteps = 100;
  s.beta_schedule = gd::core::BetaSchedule::Given;
  at::Tensor betas = at::linspace(1e-4, 0.02, 100, at::kDouble);
  s.given_betas.assign(betas.data_ptr<double>(), betas.data_ptr<double>() + 100);
  for (const char* name : {"dpmpp_2m", "euler", "euler_a"}) {
    auto sampler = gd::core::make_sampler(name, s, {});
    sampler->set_timesteps(10);
    EXPECT_EQ(sampler->timesteps()[0].item<double>(), 99.0) << name;
    EXPECT_EQ(sampler->timesteps()[9].item<double>(), 9.0) << name;
  }
}

// (5) Bad options: one-line gd::Error messages.
TEST(SamplerFactory, BadOptions) {
  const ScheduleConfig s = fixture_schedule();  // T = 100
  for (const std::string& name : gd::core::sampler_names()) {
    auto sampler = gd::core::make_sampler(name, s, {});
    expect_error([&] { sampler->set_timesteps(0); }, "steps must be between 1 and 100");
    expect_error([&] { sampler->set_timesteps(101); }, "steps must be between 1 and 100");
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(0);
    expect_error([&] { sampler->run(dummy_sample(), 0, dummy_model, generator, nullptr); },
                 "set_timesteps");
  }
  expect_error([&] { gd::core::make_sampler("heun", s, {}); },
               "unknown sampler 'heun' (valid: ddpm, ddim, dpmpp_2m, euler, euler_a)");
  expect_error([&] { gd::core::make_sampler("ddim", s, {-0.1}); }, "eta must be between 0 and 1");
  expect_error([&] { gd::core::make_sampler("ddim", s, {1.5}); }, "eta must be between 0 and 1");
  expect_error([&] { gd::core::make_sampler("ddim", s, {std::nan("")}); }, "eta");
}
