// Beta schedules and scheduler_config.json parsing: hand-computed values, the diffusers
// fixture's own tables, and every bad configuration.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/schedule.h"
#include "core/scheduler_config.h"
#include "tests/test_util.h"

using gd::core::BetaSchedule;
using gd::core::ScheduleConfig;

namespace {

ScheduleConfig config_with(BetaSchedule schedule, int steps, double start, double end) {
  ScheduleConfig config;
  config.beta_schedule = schedule;
  config.num_train_timesteps = steps;
  config.beta_start = start;
  config.beta_end = end;
  return config;
}

void expect_values(const at::Tensor& actual, const std::vector<double>& expected, double tol) {
  ASSERT_EQ(actual.dtype(), at::kFloat);
  ASSERT_EQ(actual.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i].item<double>(), expected[i], tol) << "index " << i;
  }
}

}  // namespace

// Values below were worked out by hand (Python's math module, double precision) from each
// schedule's definition; float32 storage allows ~1e-7 relative error.
TEST(BetaSchedule, LinearIsEvenlySpaced) {
  expect_values(gd::core::make_betas(config_with(BetaSchedule::Linear, 5, 0.0001, 0.02)),
                {0.0001, 0.005075, 0.01005, 0.015025, 0.02}, 1e-9);
}

TEST(BetaSchedule, ScaledLinearIsSquaredLinspaceOfRoots) {
  expect_values(gd::core::make_betas(config_with(BetaSchedule::ScaledLinear, 4, 0.00085, 0.012)),
                {0.00085, 0.003130552837570784, 0.00684721950423745, 0.012}, 1e-8);
}

TEST(BetaSchedule, SquaredCosineCapsAt0999) {
  // alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi / 2); the last beta hits the 0.999 cap.
  expect_values(gd::core::make_betas(config_with(BetaSchedule::SquaredCosCapV2, 4, 0.0001, 0.02)),
                {0.1529878386730953, 0.41695808751199426, 0.7078587123971634, 0.999}, 1e-7);
}

TEST(BetaSchedule, SigmoidSpansBetaStartToBetaEnd) {
  expect_values(
      gd::core::make_betas(config_with(BetaSchedule::Sigmoid, 4, 0.0001, 0.02)),
      {0.00014920520081703202, 0.002472138148240139, 0.01762786185175986, 0.01995079479918297},
      1e-8);
}

TEST(BetaSchedule, GivenBetasAreUsedAsIs) {
  ScheduleConfig config = config_with(BetaSchedule::Given, 3, 0.0001, 0.02);
  config.given_betas = {0.1, 0.2, 0.3};
  expect_values(gd::core::make_betas(config), {0.1, 0.2, 0.3}, 3e-8);
  config.given_betas = {0.1, 0.2};
  EXPECT_THROW(gd::core::make_betas(config), gd::Error);
}

TEST(BetaSchedule, CumulativeAlphasAreTheProductOfOneMinusBeta) {
  at::Tensor betas = at::tensor({0.1f, 0.2f, 0.5f});
  expect_values(gd::core::cumulative_alphas(betas), {0.9, 0.72, 0.36}, 1e-7);
}

// The fixture's tables come from diffusers' DDPMScheduler itself: they must agree bit for bit,
// because every sampler step multiplies by them.
TEST(BetaSchedule, MatchesDiffusersFixture) {
  const std::string text = gd::test::read_text("diffusers-tiny/model/scheduler_config.json");
  ScheduleConfig config = gd::core::parse_scheduler_config(text, "scheduler_config.json");
  EXPECT_EQ(config.num_train_timesteps, 100);
  EXPECT_EQ(config.beta_schedule, BetaSchedule::Linear);
  EXPECT_EQ(config.prediction_type, gd::core::PredictionType::Epsilon);
  EXPECT_TRUE(config.clip_sample);
  at::Tensor betas = gd::core::make_betas(config);
  at::Tensor expected_betas =
      gd::test::fixture_tensor("diffusers-tiny/schedule.safetensors", "betas");
  at::Tensor expected_ac =
      gd::test::fixture_tensor("diffusers-tiny/schedule.safetensors", "alphas_cumprod");
  EXPECT_TRUE(at::equal(betas, expected_betas)) << gd::test::max_abs_diff(betas, expected_betas);
  at::Tensor ac = gd::core::cumulative_alphas(betas);
  EXPECT_LE(gd::test::max_abs_diff(ac, expected_ac), 1e-7);
}

TEST(SchedulerConfig, DefaultsAreDiffusersDdpmDefaults) {
  ScheduleConfig config = gd::core::parse_scheduler_config("{}", "s.json");
  EXPECT_EQ(config.num_train_timesteps, 1000);
  EXPECT_EQ(config.beta_schedule, BetaSchedule::Linear);
  EXPECT_DOUBLE_EQ(config.beta_start, 0.0001);
  EXPECT_DOUBLE_EQ(config.beta_end, 0.02);
  EXPECT_EQ(config.timestep_spacing, gd::core::TimestepSpacing::Leading);
  EXPECT_EQ(config.steps_offset, 0);
  EXPECT_EQ(config.variance_type, "fixed_small");
}

TEST(SchedulerConfig, ReadsEveryField) {
  ScheduleConfig config = gd::core::parse_scheduler_config(
      R"({"_class_name": "DDIMScheduler", "num_train_timesteps": 50, "beta_schedule": "scaled_linear",
          "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "v_prediction",
          "clip_sample": false, "timestep_spacing": "trailing", "steps_offset": 1,
          "variance_type": "fixed_large"})",
      "s.json");
  EXPECT_EQ(config.scheduler_class, "DDIMScheduler");
  EXPECT_EQ(config.num_train_timesteps, 50);
  EXPECT_EQ(config.beta_schedule, BetaSchedule::ScaledLinear);
  EXPECT_EQ(config.prediction_type, gd::core::PredictionType::V);
  EXPECT_FALSE(config.clip_sample);
  EXPECT_EQ(config.timestep_spacing, gd::core::TimestepSpacing::Trailing);
  EXPECT_EQ(config.steps_offset, 1);
  EXPECT_EQ(config.variance_type, "fixed_large");
}

TEST(SchedulerConfig, TrainedBetasOverrideTheSchedule) {
  ScheduleConfig config = gd::core::parse_scheduler_config(
      R"({"num_train_timesteps": 2, "trained_betas": [0.1, 0.2]})", "s.json");
  EXPECT_EQ(config.beta_schedule, BetaSchedule::Given);
  EXPECT_EQ(config.given_betas.size(), 2u);
}

// Each bad configuration fails with a message that names the offending key.
TEST(SchedulerConfig, BadInputsNameTheProblem) {
  struct Case {
    const char* json;
    const char* needle;
  };
  const Case cases[] = {
      {"{not json", "not valid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"beta_schedule": "exotic"})", "'beta_schedule' is 'exotic'"},
      {R"({"prediction_type": "mu"})", "'prediction_type' is 'mu'"},
      {R"({"num_train_timesteps": 0})", "'num_train_timesteps'"},
      {R"({"num_train_timesteps": "100"})", "'num_train_timesteps' must be an integer"},
      {R"({"beta_start": -1})", "'beta_start'"},
      {R"({"clip_sample": 1})", "'clip_sample' must be true or false"},
      {R"({"timestep_spacing": "random"})", "'timestep_spacing' is 'random'"},
      {R"({"num_train_timesteps": 3, "trained_betas": [0.1]})", "'trained_betas' has 1 values"},
      {R"({"variance_type": "weird"})", "'variance_type' is 'weird'"},
      {R"({"steps_offset": -2})", "'steps_offset'"},
  };
  for (const Case& c : cases) {
    try {
      gd::core::parse_scheduler_config(c.json, "s.json");
      ADD_FAILURE() << "no error for " << c.json;
    } catch (const gd::Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(c.needle), std::string::npos) << message;
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      EXPECT_EQ(message.rfind("s.json:", 0), 0u) << message;
    }
  }
}
