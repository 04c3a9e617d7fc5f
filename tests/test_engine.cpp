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
  expect_request_error(bad, "image", "too large", {1, 3, 20000, 20000});
  bad = r;
  bad.action = gd::Action::Denoise;
  bad.sigma = 2.0;
  expect_request_error(bad, "sigma", "[0, 1]", {1, 3, 32, 32});
  bad = r;
  bad.tile_size = -2;
  expect_request_error(bad, "tile_size", "window side");
  bad = r;
  bad.tile_overlap = 5000;
  expect_request_error(bad, "tile_overlap", "0 to 4096");
  bad.tile_size = 64;
  bad.tile_overlap = 40;
  expect_request_error(bad, "tile_overlap", "more than half the window");
  bad = r;
  bad.max_memory = "lots";
  expect_request_error(bad, "max_memory", "not a memory size");
  // Too large for the budget even with the smallest windows: the size and the budget named.
  bad = r;
  bad.width = bad.height = 2048;
  bad.max_memory = "20M";
  expect_request_error(bad, "max_memory", "2048x2048");
  expect_request_error(bad, "max_memory", "20 MiB budget");
  bad.tile_size = -1;  // never tile
  expect_request_error(bad, "max_memory", "in one pass");
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

// The plan says how the canvas goes through the network: the whole canvas when it fits the
// budget, windows when it does not, the largest that fit; the budget is named.
TEST(Engine, PlanChoosesWindowsThatFitTheBudget) {
  gd::Request r = bundled_request();
  r.width = r.height = 512;
  r.max_memory = "8G";
  gd::Plan plan = gd::check_request(bundled(), r);
  EXPECT_EQ(plan.windows, 1);
  EXPECT_NE(plan.memory.find("whole canvas"), std::string::npos) << plan.memory;
  EXPECT_NE(plan.memory.find("8.0 GiB budget (given)"), std::string::npos) << plan.memory;
  EXPECT_LE(plan.estimated_bytes, plan.budget_bytes);
  const std::int64_t whole = plan.estimated_bytes;
  r.max_memory = std::to_string(whole / 2);  // bytes
  plan = gd::check_request(bundled(), r);
  EXPECT_GT(plan.windows, 1) << plan.memory;
  EXPECT_LE(plan.estimated_bytes, plan.budget_bytes);
  EXPECT_LT(plan.tile_height, 512);
  r.tile_size = 128;
  plan = gd::check_request(bundled(), r);
  EXPECT_LE(plan.tile_height, 128);
  EXPECT_NE(plan.memory.find("windows of"), std::string::npos) << plan.memory;
  r.max_memory.clear();  // the machine's: a share of what is available
  plan = gd::check_request(bundled(), r);
  EXPECT_NE(plan.memory.find("% of the"), std::string::npos) << plan.memory;
  EXPECT_EQ(gd::parse_memory_size("1.5G"), 3LL << 29);
  EXPECT_EQ(gd::parse_memory_size("512M"), 512LL << 20);
  EXPECT_EQ(gd::parse_memory_size("4096"), 4096);
}

// Through the engine, one window covering the canvas is the untiled run, bit for bit, for each
// action; smaller windows change it.
TEST(Engine, OneWindowIsTheUntiledRun) {
  gd::Request r = bundled_request();
  r.width = r.height = 64;
  r.steps = 3;
  r.seed = 9;
  const at::Tensor image = at::rand({1, 3, 64, 64});
  for (gd::Action action : {gd::Action::Generate, gd::Action::Img2img, gd::Action::Denoise}) {
    SCOPED_TRACE(gd::action_name(action));
    r.action = action;
    r.class_name = "3";
    const at::Tensor input = action == gd::Action::Generate ? at::Tensor() : image;
    r.tile_size = -1;
    const at::Tensor untiled = gd::run(bundled(), r, input).image;
    r.tile_size = 64;
    EXPECT_TRUE(at::equal(gd::run(bundled(), r, input).image, untiled));
    r.tile_size = 32;
    r.tile_overlap = 8;
    EXPECT_GT((gd::run(bundled(), r, input).image - untiled).abs().max().item<double>(), 1e-4);
    r.tile_overlap.reset();
  }
}

namespace {

// Mean |difference| between neighbouring rows (dim 2) or columns (dim 3) of [N, C, H, W]: per
// boundary position, [H - 1] or [W - 1].
at::Tensor boundary_gradients(const at::Tensor& x, std::int64_t dim) {
  const std::int64_t n = x.size(dim);
  const at::Tensor d = (x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)).abs();
  return dim == 2 ? d.mean({0, 1, 3}) : d.mean({0, 1, 2});
}

// The gradient across the canvas's own border, brought to the middle by a circular shift of
// half a window, over the mean gradient between all other neighbouring rows and columns.
double border_ratio(const at::Tensor& image, std::int64_t shift) {
  const at::Tensor shifted = at::roll(image, {shift, shift}, {2, 3});
  double ratio = 0.0;
  for (std::int64_t dim : {2, 3}) {
    const at::Tensor g = boundary_gradients(shifted, dim);  // boundary k: between k and k + 1
    const double border = g[shift - 1].item<double>();
    const double interior = (g.sum().item<double>() - border) / static_cast<double>(g.size(0) - 1);
    ratio = std::max(ratio, border / interior);
  }
  return ratio;
}

}  // namespace

// A seamless texture made in windows that wrap around the canvas tiles: across its own border
// it changes no more than anywhere inside (at most 1.1x the interior's mean gradient). The
// same run without seamless shows the border, which shows the measure can fail.
TEST(Engine, TiledSeamlessTextureTiles) {
  gd::Request r = bundled_request();
  r.width = r.height = 128;
  r.steps = 12;
  r.seed = 21;
  r.class_name = "Legacy_bluegrid";
  r.tile_size = 64;
  r.seamless = true;
  const gd::Plan plan = gd::check_request(bundled(), r);
  ASSERT_GT(plan.windows, 1) << plan.memory;
  const at::Tensor seamless = gd::run(bundled(), r, at::Tensor()).image;
  const double ratio = border_ratio(seamless, plan.tile_height / 2);
  EXPECT_LE(ratio, 1.1);
  r.seamless = false;
  const at::Tensor plain = gd::run(bundled(), r, at::Tensor()).image;
  EXPECT_GT(border_ratio(plain, plan.tile_height / 2), 1.1);
  std::printf("border / interior gradient: seamless %.3f, plain %.3f\n", ratio,
              border_ratio(plain, plan.tile_height / 2));
}
