// Guidance against the mean class (core/guidance.h): the combination, where it applies, its
// defaults per action, its checks, and the model folder's guidance.json.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/guidance.h"
#include "core/pipeline.h"
#include "models/guidance_file.h"
#include "tests/flat_class_model.h"
#include "tests/test_files.h"

namespace fs = std::filesystem;
using gd::core::Guidance;
using gd::test::expect_error;
using gd::test::FlatClassModel;

TEST(Guidance, CombinesTheClassAndTheMeanClass) {
  const at::Tensor labels = at::tensor({2, 4}, at::kLong);
  std::vector<at::Tensor> seen;  // the labels of each call
  // Output: the label itself, 10 for the mean class; 2 channels for 1 input channel, as with
  // learned variance, where the second channel is 100 + label.
  gd::core::NetworkFn network = [&](const at::Tensor& x, const at::Tensor&,
                                    const gd::core::Conditioning& c) {
    const at::Tensor l = c.class_labels;
    seen.push_back(l.clone());
    const at::Tensor v = at::where(l < 0, at::full_like(l, 10), l)
                             .to(at::kFloat)
                             .view({-1, 1, 1, 1});  // [N, 1, 1, 1]
    const at::Tensor out = v.expand({x.size(0), 1, x.size(2), x.size(3)});
    return at::cat({out, out + 100}, 1);  // [N, 2, H, W]
  };
  gd::core::Conditioning cond;
  cond.class_labels = labels;
  Guidance g;
  g.scale = 3.0;
  g.below_timestep = 500;
  const at::Tensor x = at::zeros({2, 1, 4, 4});
  for (const std::int64_t max_pixels :
       {std::int64_t{0}, std::int64_t{1} << 20}) {  // two calls of N, one of 2N
    SCOPED_TRACE(max_pixels);
    seen.clear();
    const gd::core::ModelFn guided = gd::core::conditioned_network(network, cond, g, 1, max_pixels);
    at::Tensor out = guided(x, at::tensor({499, 499}, at::kLong), std::nullopt);
    if (max_pixels == 0) {
      ASSERT_EQ(seen.size(), 2u);
      EXPECT_TRUE(at::equal(seen[0], labels));
      EXPECT_TRUE(at::equal(seen[1], at::full({2}, gd::core::kMeanClassLabel, at::kLong)));
    } else {
      ASSERT_EQ(seen.size(), 1u);  // [2N]: the classes, then the mean class
      EXPECT_TRUE(at::equal(seen[0], at::tensor({2, 4, -1, -1}, at::kLong)));
    }
    // u + 3 (c - u): 10 + 3 (2 - 10) = -14 and 10 + 3 (4 - 10) = -8; the variance is the class's.
    ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 2, 4, 4}));
    EXPECT_DOUBLE_EQ(out[0][0][0][0].item<double>(), -14.0);
    EXPECT_DOUBLE_EQ(out[1][0][3][3].item<double>(), -8.0);
    EXPECT_DOUBLE_EQ(out[0][1][0][0].item<double>(), 102.0);
    EXPECT_DOUBLE_EQ(out[1][1][0][0].item<double>(), 104.0);
    // At and above the limit: one call, the class's output as it is.
    seen.clear();
    out = guided(x, at::tensor(500, at::kLong), std::nullopt);
    EXPECT_EQ(seen.size(), 1u);
    EXPECT_DOUBLE_EQ(out[1][0][0][0].item<double>(), 4.0);
  }
  // Scale 1 is off: the network itself, untouched.
  seen.clear();
  Guidance off;
  gd::core::conditioned_network(network, cond, off, 1, 1 << 20)(x, at::tensor(0, at::kLong),
                                                                std::nullopt);
  EXPECT_EQ(seen.size(), 1u);
}

TEST(Guidance, DescriptionAndChecks) {
  Guidance g;
  EXPECT_EQ(gd::core::describe_guidance(g), "");
  g.scale = 2.5;
  EXPECT_EQ(gd::core::describe_guidance(g), "guidance 2.5");
  g.below_timestep = 500;
  EXPECT_EQ(gd::core::describe_guidance(g), "guidance 2.5 below timestep 500");
  gd::core::check_guidance(g, 3, 1000);
  g.scale = 0.5;
  expect_error([&] { gd::core::check_guidance(g, 3, 1000); },
               {"guidance 0.5", "out of range", "from 1 (off) to 20"});
  g.scale = 20.5;
  expect_error([&] { gd::core::check_guidance(g, 3, 1000); }, {"guidance 20.5", "out of range"});
  g.scale = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { gd::core::check_guidance(g, 3, 1000); }, "out of range");
  g.scale = 2.0;
  g.below_timestep = 1001;
  expect_error([&] { gd::core::check_guidance(g, 3, 1000); }, {"limit 1001", "from 1 to 1000"});
  g.below_timestep = 0;
  expect_error([&] { gd::core::check_guidance(g, 3, 1000); }, "limit 0");
  g.below_timestep = 1000;
  expect_error([&] { gd::core::check_guidance(g, 0, 1000); }, "needs a class-conditional model");
  g.scale = 1.0;
  gd::core::check_guidance(g, 0, 1000);  // off: fine for any model
}

TEST(Guidance, GenerateUsesTheModelsDefaultAndTheOthersNone) {
  FlatClassModel fake;
  gd::core::PipelineModel model = fake.model();
  gd::core::GenerateOptions options;
  options.sampler = "ddim";
  options.steps = 4;  // timesteps 75, 50, 25, 0
  options.seed = 1;
  options.class_label = 3;  // level 0.2 in model space: 0.6 in [0, 1]
  const at::Tensor plain = gd::core::generate(model, options);
  EXPECT_EQ(fake.evaluations(), 4);
  EXPECT_NEAR(plain.mean().item<double>(), 0.6, 1e-4);

  // Guided every step: x0 = 0 + 2 (0.2 - 0) = 0.4 in model space, 0.7 in [0, 1].
  fake.reset();
  options.guidance = 2.0;
  const at::Tensor guided = gd::core::generate(model, options);
  EXPECT_EQ(fake.evaluations(), 8);
  EXPECT_NEAR(guided.mean().item<double>(), 0.7, 1e-4);

  // Limited to timesteps below 50: two guided steps of four.
  fake.reset();
  options.guidance_below = 50;
  EXPECT_TRUE(at::allclose(gd::core::generate(model, options), guided, 1e-5, 1e-5));
  EXPECT_EQ(fake.evaluations(), 6);

  // The model's default applies to generate when the options leave it unset...
  model.generate_guidance.scale = 2.0;
  model.generate_guidance.below_timestep = 50;
  options.guidance = 0.0;
  options.guidance_below = 0;
  fake.reset();
  EXPECT_TRUE(at::equal(gd::core::generate(model, options), guided));
  EXPECT_EQ(fake.evaluations(), 6);
  EXPECT_EQ(gd::core::describe_guidance(gd::core::run_guidance(model, options, true)),
            "guidance 2 below timestep 50");
  // ...and 1 turns it off: exactly the unguided result.
  options.guidance = 1.0;
  EXPECT_TRUE(at::equal(gd::core::generate(model, options), plain));

  // img2img and denoise ignore the model's default; an explicit scale guides them.
  const at::Tensor image = at::full({1, 3, 8, 8}, 0.6);
  gd::core::RunOptions run;
  run.sampler = "ddim";
  run.steps = 4;
  run.class_label = 3;
  fake.reset();
  EXPECT_NEAR(gd::core::img2img(model, image, 1.0, run).mean().item<double>(), 0.6, 1e-4);
  EXPECT_EQ(fake.evaluations(), 4);
  EXPECT_TRUE(gd::core::describe_guidance(gd::core::run_guidance(model, run, false)).empty());
  run.guidance = 2.0;
  EXPECT_NEAR(gd::core::img2img(model, image, 1.0, run).mean().item<double>(), 0.7, 1e-4);
  fake.reset();
  gd::core::DenoiseResult d = gd::core::denoise(model, image, 0.2, run);
  EXPECT_GT(d.steps_run, 0);
  EXPECT_EQ(fake.evaluations(), 2 * d.steps_run);
  EXPECT_NEAR(d.image.mean().item<double>(), 0.7, 1e-4);

  // A limit without guidance would do nothing: it is refused, not ignored.
  gd::core::RunOptions unguided = run;
  unguided.guidance = 0.0;
  unguided.guidance_below = 40;
  expect_error([&] { gd::core::img2img(model, image, 0.5, unguided); },
               {"limit needs guidance", "unguided"});
  unguided.guidance = 1.0;
  expect_error([&] { gd::core::denoise(model, image, 0.2, unguided); }, "limit needs guidance");

  // Bad values fail before any network call.
  fake.reset();
  options.guidance = 0.5;
  expect_error([&] { gd::core::generate(model, options); }, {"guidance 0.5", "out of range"});
  options.guidance = 2.0;
  options.guidance_below = 101;
  expect_error([&] { gd::core::generate(model, options); }, {"limit 101", "from 1 to 100"});
  run.guidance_below = -3;
  expect_error([&] { gd::core::img2img(model, image, 0.5, run); }, "limit -3");
  expect_error([&] { gd::core::denoise(model, image, 0.2, run); }, "limit -3");
  EXPECT_TRUE(fake.calls.empty());
  gd::core::PipelineModel plain_model = model;
  plain_model.num_classes = 0;
  plain_model.generate_guidance = Guidance{};
  options.guidance_below = 0;
  options.class_label = -1;
  expect_error([&] { gd::core::generate(plain_model, options); },
               "needs a class-conditional model");
}

TEST(Guidance, ModelFolderFile) {
  const fs::path dir = fs::temp_directory_path() / ("gd-guidance-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / gd::models::kGuidanceFile).string();
  EXPECT_FALSE(gd::models::read_generate_guidance(path, 3, 1000).active()) << "no file: off";
  std::ofstream(path) << R"({"generate": {"scale": 2.0, "below_timestep": 500}})";
  Guidance g = gd::models::read_generate_guidance(path, 3, 1000);
  EXPECT_DOUBLE_EQ(g.scale, 2.0);
  EXPECT_EQ(g.below_timestep, 500);
  std::ofstream(path) << R"({"generate": {"scale": 1.5}})";
  g = gd::models::read_generate_guidance(path, 3, 1000);
  EXPECT_DOUBLE_EQ(g.scale, 1.5);
  EXPECT_EQ(g.below_timestep, std::numeric_limits<int>::max()) << "no limit: every step";
  // Every problem names the file.
  expect_error([&] { gd::models::read_generate_guidance(path, 0, 1000); },
               {path, "needs a class-conditional model"});
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json", "not a guidance file"},
      {R"({"scale": 2})", "not a guidance file"},
      {R"({"generate": {"scale": "2"}})", "\"scale\" must be a number"},
      {R"({"generate": {"below_timestep": 500}})", "\"scale\" must be a number"},
      {R"({"generate": {"scale": 2, "below_timestep": 12.5}})", "whole number"},
      {R"({"generate": {"scale": 2, "below_timestep": 99999999999}})", "limit 99999999999"},
      {R"({"generate": {"scale": 2, "below_timestep": 18446744073709551615}})",
       "limit 18446744073709551615"},
      {R"({"generate": {"scale": 2, "below_timestep": -5}})", "limit -5"},
      {R"({"generate": {"scale": 2}, "img2img": {"scale": 2}})", "unknown action 'img2img'"},
      {R"({"generate": {"scale": 2, "below_timestep": 0}})", "limit 0"},
      {R"({"generate": {"scale": 40}})", "guidance 40"},
      {R"({"generate": {"scale": 2, "guidance_rescale": 0.7}})",
       "unknown setting 'guidance_rescale'"},
  };
  for (const auto& [text, words] : bad) {
    std::ofstream(path) << text;
    expect_error([&] { gd::models::read_generate_guidance(path, 3, 1000); }, {path, words});
  }
  fs::remove_all(dir);
}
