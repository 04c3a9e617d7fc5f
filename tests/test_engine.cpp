// The public engine API (engine/gimp_diffusion.h): one loaded model shared by threads, guidance
// batched as 2N, every bad request field a one-line RequestError that names it, and the default
// model. Runs on the bundled model at small sizes, where a call takes milliseconds.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "core/pipeline.h"
#include "engine/gimp_diffusion.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"
#include "tests/test_files.h"

namespace {

gd::Request bundled_request() {
  gd::Request r;
  r.model_path = GD_BUNDLED_MODEL_DIR;
  r.device = "cpu";
  r.width = r.height = 32;
  r.steps = 6;
  return r;
}

const gd::Model& bundled() {
  static const gd::Model model = gd::load_model(bundled_request());
  return model;
}

// Expects `request` to fail its check with a RequestError about `field` whose one-line message
// contains `needle`.
void expect_request_error(const gd::Request& request, const std::string& field,
                          const std::string& needle, const gd::ImageShape& image = {}) {
  try {
    gd::check_request(bundled(), request, image);
    ADD_FAILURE() << "no error; expected one about " << field;
  } catch (const gd::RequestError& e) {
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line: " << e.what();
  }
}

}  // namespace

// One loaded model, two threads at once with different seeds, classes, padding and guidance:
// each gets exactly what it gets alone. A model with run state (labels or padding set on the
// network) would mix them up.
TEST(Engine, OneModelServesTwoThreadsAtOnce) {
  at::NoGradGuard no_grad;
  gd::Request a = bundled_request();
  a.seed = 1;
  a.class_name = "3";
  a.seamless = true;
  gd::Request b = bundled_request();
  b.seed = 2;
  b.class_name = "10";
  b.guidance = 3.0;
  const at::Tensor alone_a = gd::run(bundled(), a, at::Tensor()).image;
  const at::Tensor alone_b = gd::run(bundled(), b, at::Tensor()).image;
  ASSERT_FALSE(at::equal(alone_a, alone_b));
  for (int round = 0; round < 3; ++round) {
    at::Tensor together_a, together_b;
    std::thread ta([&] {
      at::NoGradGuard guard;
      together_a = gd::run(bundled(), a, at::Tensor()).image;
    });
    std::thread tb([&] {
      at::NoGradGuard guard;
      together_b = gd::run(bundled(), b, at::Tensor()).image;
    });
    ta.join();
    tb.join();
    EXPECT_TRUE(at::equal(together_a, alone_a)) << "round " << round;
    EXPECT_TRUE(at::equal(together_b, alone_b)) << "round " << round;
  }
}

// A guided step evaluates the class and the mean class in one call of 2N; the result equals
// the two calls of N it replaces, for a batch of images with different classes, seamless too.
TEST(Engine, BatchedGuidanceEqualsTwoCalls) {
  at::NoGradGuard no_grad;
  gd::models::LoadOptions load;
  const gd::models::LoadedModel loaded = gd::models::load_model(GD_BUNDLED_MODEL_DIR, load);
  const gd::core::PipelineModel model = gd::models::pipeline_model(loaded, load);
  gd::core::GenerateOptions options;
  options.width = options.height = 32;
  options.batch = 2;
  options.steps = 8;
  options.seed = 5;
  options.guidance = 2.5;  // every step guided
  for (bool seamless : {false, true}) {
    options.seamless = seamless;
    options.max_batched_guidance_pixels = gd::core::kMaxBatchedGuidancePixels;
    const at::Tensor batched = gd::core::generate(model, options);
    options.max_batched_guidance_pixels = 0;
    const at::Tensor split = gd::core::generate(model, options);
    EXPECT_LE((batched - split).abs().max().item<double>(), 1e-5) << "seamless " << seamless;
    options.guidance = 1.0;
    EXPECT_GT((gd::core::generate(model, options) - split).abs().max().item<double>(), 1e-3)
        << "guidance changed nothing";
    options.guidance = 2.5;
  }
}

TEST(Engine, EveryBadFieldIsNamed) {
  gd::Request r = bundled_request();
  gd::Request bad = r;
  bad.sampler = "heun";
  expect_request_error(bad, "sampler", "must be one of");
  bad = r;
  bad.steps = 5000;
  expect_request_error(bad, "steps", "exceeds the model's 1000");
  bad = r;
  bad.eta = 2;
  expect_request_error(bad, "eta", "between 0 and 1");
  bad = r;
  bad.width = bad.height = 60000;
  expect_request_error(bad, "width", "too large");
  bad = r;
  bad.batch = 0;
  expect_request_error(bad, "batch", "at least 1");
  bad = r;
  bad.class_name = "200";
  expect_request_error(bad, "class_name", "out of range");
  bad = r;
  bad.guidance = 0.5;
  expect_request_error(bad, "guidance", "guidance must be from 1");
  bad = r;
  bad.guidance_below = 5000;
  expect_request_error(bad, "guidance_below", "limit 5000");
  bad = r;
  bad.guidance = 1.0;
  bad.guidance_below = 100;
  expect_request_error(bad, "guidance_below", "limit needs guidance");
  bad = r;
  bad.width = 33;
  bad.seamless = true;
  expect_request_error(bad, "seamless", "multiples of");
  bad = r;
  bad.action = gd::Action::Img2img;
  bad.strength = 0;
  expect_request_error(bad, "strength", "(0, 1]", {1, 3, 32, 32});
  bad.strength = 0.5;
  expect_request_error(bad, "image", "input image", {});
  expect_request_error(bad, "image", "5 colour channels", {1, 5, 32, 32});
  expect_request_error(bad, "image", "too large", {1, 3, 5000, 5000});
  bad = r;
  bad.action = gd::Action::Denoise;
  bad.sigma = 2.0;
  expect_request_error(bad, "sigma", "[0, 1]", {1, 3, 32, 32});
  // The loading fields fail before any file is read.
  for (const auto& [field, value] : std::vector<std::pair<std::string, std::string>>{
           {"device", "tpu"}, {"precision", "fp8"}, {"weights", "best"}, {"objective", "pred_y"}}) {
    gd::Request load = r;
    if (field == "device") load.device = value;
    if (field == "precision") load.precision = value;
    if (field == "weights") load.weights = value;
    if (field == "objective") load.objective = value;
    try {
      gd::load_model(load);
      ADD_FAILURE() << field;
    } catch (const gd::RequestError& e) {
      EXPECT_EQ(e.field(), field);
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos) << e.what();
    }
  }
}

TEST(Engine, PlanSaysWhatTheRunWillDo) {
  gd::Request r = bundled_request();
  r.seed = 4;
  r.class_name = "Fabric_burlap";  // by name: class 1 of the bundled model
  gd::Plan plan = gd::check_request(bundled(), r);
  EXPECT_EQ(plan.sampler, bundled().default_sampler());
  EXPECT_EQ(plan.steps, 6);
  ASSERT_EQ(plan.classes, std::vector<std::int64_t>{1});
  EXPECT_FALSE(plan.best_fit);
  EXPECT_EQ(plan.guidance, "guidance 2.5 below timestep 300")
      << "the model's own default for generate";
  const std::string text = plan.describe(bundled(), r.seed);
  EXPECT_NE(text.find("seed 4"), std::string::npos) << text;
  EXPECT_NE(text.find("class 1 (Fabric_burlap)"), std::string::npos) << text;
  r.action = gd::Action::Img2img;
  r.class_name.clear();
  plan = gd::check_request(bundled(), r, {1, 3, 32, 32});
  EXPECT_TRUE(plan.best_fit);
  EXPECT_TRUE(plan.guidance.empty()) << "img2img is unguided by default";
}

TEST(Engine, DefaultModelIsTheEnvironmentsOrTheBundledOne) {
  ::setenv("GIMP_DIFFUSION_MODEL", "/some/where", 1);
  EXPECT_EQ(gd::default_model_path(), "/some/where");
  ::unsetenv("GIMP_DIFFUSION_MODEL");
  // The test binary sits in the build tree below the source root, where the bundled model is.
  const std::string found = gd::default_model_path();
  EXPECT_NE(found.find("gimp-patterns"), std::string::npos) << found;
}
