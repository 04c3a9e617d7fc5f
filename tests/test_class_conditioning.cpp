// Class-conditional UNet2DModels (diffusers' num_class_embeds): the config, the network's
// embedding table, the pipelines' choice of classes and the class names file.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/class_fit.h"
#include "core/error.h"
#include "core/guidance.h"
#include "core/pipeline.h"
#include "models/class_names.h"
#include "models/diffusers_config.h"
#include "models/diffusers_unet.h"
#include "tests/flat_class_model.h"
#include "tests/test_files.h"

namespace fs = std::filesystem;
using gd::models::DiffusersUNet;
using gd::models::UNet2DConfig;
using gd::test::expect_error;

namespace {

gd::core::Conditioning labels(const at::Tensor& class_labels) {  // a call under these classes
  gd::core::Conditioning c;
  c.class_labels = class_labels;
  return c;
}

UNet2DConfig small_config(std::int64_t classes) {
  UNet2DConfig c;
  c.block_out_channels = {8, 16};
  c.down_blocks = {gd::models::UNet2DBlock::Plain, gd::models::UNet2DBlock::Plain};
  c.up_blocks = {gd::models::UNet2DBlock::Plain, gd::models::UNet2DBlock::Plain};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  c.add_attention = false;
  c.sample_height = c.sample_width = 8;
  c.num_class_embeds = classes;
  c.validate("small");
  return c;
}

// Fills every parameter with seeded random values (the constructor leaves them zero).
void randomise(DiffusersUNet& net, std::uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (const auto& [name, p] : net.params()->all()) p.copy_(at::randn(p.sizes(), gen) * 0.2);
}

// The same weights in an unconditional network.
void copy_shared(DiffusersUNet& from, DiffusersUNet& to) {
  for (const auto& [name, p] : to.params()->all()) {
    for (const auto& [other, q] : from.params()->all()) {
      if (other == name) p.copy_(q);
    }
  }
}

const char* kConfig = R"({"_class_name": "UNet2DModel", "block_out_channels": [8, 16],
  "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
  "layers_per_block": 1, "norm_num_groups": 4, "add_attention": false, "num_class_embeds": 5})";

}  // namespace

TEST(ClassConditioning, ConfigReadsTheClassCount) {
  EXPECT_EQ(gd::models::parse_unet2d_config(kConfig, "c").num_class_embeds, 5);
  std::string none = kConfig;
  none.replace(none.find("5}"), 1, "null");
  EXPECT_EQ(gd::models::parse_unet2d_config(none, "c").num_class_embeds, 0);
  std::string negative = kConfig;
  negative.replace(negative.find("5}"), 1, "-2");
  expect_error([&] { gd::models::parse_unet2d_config(negative, "c"); }, {"num_class_embeds", "-2"});
  std::string timestep = kConfig;
  timestep.replace(timestep.find("\"num_class_embeds\""), 0,
                   "\"class_embed_type\": \"timestep\", ");
  expect_error([&] { gd::models::parse_unet2d_config(timestep, "c"); },
               {"class_embed_type", "timestep"});
}

TEST(ClassConditioning, EmbeddingIsAddedAfterTheTimeMlp) {
  // diffusers: emb = time_embedding(t_emb) + class_embedding(label). So a class-conditional
  // network with label k computes exactly what an unconditional one computes with that row
  // added to the time MLP's last bias.
  DiffusersUNet cond(small_config(3), at::TensorOptions().dtype(at::kFloat));
  randomise(cond, 1);
  DiffusersUNet plain(small_config(0), at::TensorOptions().dtype(at::kFloat));
  copy_shared(cond, plain);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  const at::Tensor x = at::randn({2, 3, 8, 8}, gen);
  const at::Tensor t = at::tensor({10, 700}, at::kLong);
  at::Tensor table;
  at::Tensor bias;
  for (const auto& [name, p] : cond.params()->all()) {
    if (name == "class_embedding.weight") table = p;
  }
  for (const auto& [name, p] : plain.params()->all()) {
    if (name == "time_embedding.linear_2.bias") bias = p;
  }
  ASSERT_TRUE(table.defined() && bias.defined());
  EXPECT_EQ(table.sizes(), (std::vector<std::int64_t>{3, 32}));  // [classes, 4 * 8]
  const at::Tensor original_bias = bias.clone();
  for (std::int64_t k = 0; k < 3; ++k) {
    const at::Tensor got = cond.forward(x, t, labels(at::tensor({k}, at::kLong)));
    bias.copy_(original_bias + table[k]);
    const at::Tensor expected = plain.forward(x, t, {});
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5) << "class " << k;
  }
  // Per-image labels: each image gets its own row.
  const at::Tensor mixed = cond.forward(x, t, labels(at::tensor({2, 0}, at::kLong)));
  const at::Tensor two = cond.forward(x, t, labels(at::tensor({2}, at::kLong)));
  const at::Tensor zero = cond.forward(x, t, labels(at::tensor({0}, at::kLong)));
  EXPECT_TRUE(at::allclose(mixed[0], two[0], 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(mixed[1], zero[1], 1e-6, 1e-6));
  EXPECT_FALSE(at::allclose(two, zero, 1e-3, 1e-3)) << "the class changed nothing";
}

TEST(ClassConditioning, MeanClassLabelUsesTheMeanEmbedding) {
  // Label -1 (kMeanClassLabel) adds the mean of the table's rows: the same output as a class
  // whose row is that mean.
  DiffusersUNet cond(small_config(3), at::TensorOptions().dtype(at::kFloat));
  randomise(cond, 4);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(6);
  const at::Tensor x = at::randn({2, 3, 8, 8}, gen);
  const at::Tensor t = at::tensor({30, 600}, at::kLong);
  const at::Tensor mean_out =
      cond.forward(x, t, labels(at::tensor({gd::core::kMeanClassLabel}, at::kLong)));
  const at::Tensor mixed = cond.forward(
      x, t, labels(at::tensor(std::vector<std::int64_t>{gd::core::kMeanClassLabel, 1}, at::kLong)));
  const at::Tensor one = cond.forward(x, t, labels(at::tensor({1}, at::kLong)));
  EXPECT_TRUE(at::allclose(mixed[0], mean_out[0], 1e-6, 1e-6));
  EXPECT_TRUE(at::allclose(mixed[1], one[1], 1e-6, 1e-6));
  EXPECT_FALSE(at::allclose(mean_out, one, 1e-3, 1e-3)) << "the mean class is a class of its own";
  for (const auto& [name, p] : cond.params()->all()) {
    if (name == "class_embedding.weight")
      p.copy_(p.mean(0, true).expand(p.sizes()));  // every row the mean
  }
  EXPECT_TRUE(
      at::allclose(cond.forward(x, t, labels(at::tensor({2}, at::kLong))), mean_out, 1e-5, 1e-5));
}

TEST(ClassConditioning, LabelsAreChecked) {
  DiffusersUNet cond(small_config(3), at::TensorOptions().dtype(at::kFloat));
  const at::Tensor x = at::zeros({2, 3, 8, 8});
  const at::Tensor t = at::tensor({1, 2}, at::kLong);
  expect_error([&] { cond.forward(x, t, {}); }, {"class-conditional", "3 classes", "no class"});
  expect_error([&] { cond.forward(x, t, labels(at::tensor({3}, at::kLong))); },
               {"class 3", "out of range", "0 to 2"});
  expect_error([&] { cond.forward(x, t, labels(at::tensor({-2}, at::kLong))); },
               {"class -2", "out of range"});
  cond.forward(x, t, labels(at::tensor({-1}, at::kLong)));  // kMeanClassLabel: the mean embedding
  expect_error(
      [&] {
        cond.forward(x, t, labels(at::tensor({0, 1, 2}, at::kLong)));
      },
      {"3 class labels", "batch of 2"});
  DiffusersUNet plain(small_config(0), at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { plain.forward(x, t, labels(at::tensor({0}, at::kLong))); },
               "not class-conditional");
  plain.forward(x, t, {});  // no classes is always fine for an unconditional network
}

TEST(ClassConditioning, RunClassesComeFromTheSeed) {
  gd::core::RunOptions options;
  options.seed = 7;
  const auto a = gd::core::run_classes(10, options, 64);
  const auto b = gd::core::run_classes(10, options, 64);
  ASSERT_EQ(a.size(), 64u);
  EXPECT_EQ(a, b);
  std::set<std::int64_t> seen(a.begin(), a.end());
  EXPECT_GT(seen.size(), 5u) << "64 draws from 10 classes should cover most of them";
  for (auto k : a) EXPECT_TRUE(k >= 0 && k < 10);
  options.seed = 8;
  EXPECT_NE(gd::core::run_classes(10, options, 64), a);
  options.class_label = 4;
  EXPECT_EQ(gd::core::run_classes(10, options, 3), (std::vector<std::int64_t>{4, 4, 4}));
  options.class_label = 10;
  expect_error([&] { gd::core::run_classes(10, options, 1); }, {"class 10", "out of range"});
  options.class_label = 0;
  expect_error([&] { gd::core::run_classes(0, options, 1); }, "not class-conditional");
  options.class_label = -1;
  EXPECT_TRUE(gd::core::run_classes(0, options, 4).empty());
}

TEST(ClassConditioning, GenerateSetsAndClearsTheClasses) {
  DiffusersUNet cond(small_config(4), at::TensorOptions().dtype(at::kFloat));
  randomise(cond, 3);
  DiffusersUNet* net = &cond;
  gd::core::PipelineModel model;
  model.network = [net](const at::Tensor& x, const at::Tensor& t, const gd::core::Conditioning& c) {
    return net->forward(x, t, c);
  };
  model.schedule.num_train_timesteps = 100;
  model.downsampling_factor = 2;
  model.native_width = model.native_height = 8;
  model.num_classes = 4;
  gd::core::GenerateOptions options;
  options.sampler = "ddim";
  options.steps = 4;
  options.seed = 11;
  options.batch = 2;
  const at::Tensor drawn = gd::core::generate(model, options);
  EXPECT_TRUE(at::equal(drawn, gd::core::generate(model, options))) << "same seed, other texture";
  // The drawn classes are what run_classes says: giving them explicitly gives the same images.
  const auto classes = gd::core::run_classes(4, options, 2);
  for (int i = 0; i < 2; ++i) {
    gd::core::GenerateOptions one = options;
    one.batch = 1;
    one.class_label = classes[i];
    const at::Tensor image = gd::core::generate(model, one);
    // Only the first image shares its noise with a batch-of-1 run (the noise is [N, C, H, W]).
    if (i == 0) {
      EXPECT_TRUE(at::allclose(image[0], drawn[0], 1e-5, 1e-5));
    }
  }
  gd::core::GenerateOptions other = options;
  other.class_label = (classes[0] + 1) % 4;
  other.batch = 1;
  EXPECT_FALSE(at::allclose(gd::core::generate(model, other)[0], drawn[0], 1e-3, 1e-3));
  // Nothing of the run stays on the network: a call without classes still fails.
  expect_error(
      [&] {
        net->forward(at::zeros({1, 3, 8, 8}), at::tensor({1}, at::kLong), {});
      },
      "no class");
  other.class_label = 9;
  expect_error([&] { gd::core::generate(model, other); }, {"class 9", "out of range"});
}

using gd::test::FlatClassModel;

TEST(ClassConditioning, BestFitPicksTheClassThatExplainsTheImage) {
  // More classes than one network call takes at the crop size (256K pixels per call).
  const std::int64_t classes = 300;
  const std::int64_t per_call = (1 << 18) / (gd::core::kClassFitCrop * gd::core::kClassFitCrop);
  ASSERT_LT(per_call, classes);
  FlatClassModel fake{classes, {}, {}};
  const gd::core::PipelineModel model = fake.model();
  // Two 80x80 images (model space): flat at class 280's level and at class 7's, plus some noise.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const double top = static_cast<double>(classes - 1);
  at::Tensor x = at::cat(
      {at::full({1, 3, 80, 80}, 280 / top * 2 - 1), at::full({1, 3, 80, 80}, 7 / top * 2 - 1)});
  x = x + 0.02 * at::randn(x.sizes(), gen);
  const auto chosen = gd::core::best_fitting_classes(model, x, 0);
  EXPECT_EQ(chosen, (std::vector<std::int64_t>{280, 7}));
  // Every class is tried on every timestep of every image, in calls of at most per_call.
  const std::int64_t calls_per_timestep = (classes + per_call - 1) / per_call;
  EXPECT_EQ(fake.batches.size(),
            static_cast<std::size_t>(2 * gd::core::kClassFitTimesteps * calls_per_timestep));
  EXPECT_EQ(fake.batches.front(), per_call);
  // Progress: once per network call, counting up to the number of calls made.
  std::vector<std::pair<int, int>> ticks;
  fake.batches.clear();
  gd::core::best_fitting_classes(model, x, 0, [&ticks](int done, int total) {
    ticks.emplace_back(done, total);
    return true;
  });
  ASSERT_EQ(ticks.size(), fake.batches.size());
  for (std::size_t i = 0; i < ticks.size(); ++i) {
    EXPECT_EQ(ticks[i],
              std::make_pair(static_cast<int>(i + 1), static_cast<int>(fake.batches.size())));
  }
  // Cancelling from the progress callback stops the fit after that call.
  fake.batches.clear();
  EXPECT_THROW(gd::core::best_fitting_classes(model, x, 0, [](int done, int) { return done < 2; }),
               gd::Cancelled);
  EXPECT_EQ(fake.batches.size(), 2u);
  // The noise is fixed: the same image gives the same class every time.
  EXPECT_EQ(gd::core::best_fitting_classes(model, x, 50),
            gd::core::best_fitting_classes(model, x, 50));
  gd::core::PipelineModel plain;
  expect_error([&] { gd::core::best_fitting_classes(plain, x, 0); }, "not class-conditional");
}

TEST(ClassConditioning, Img2imgAndDenoiseUseTheBestFitUnlessGivenAClass) {
  FlatClassModel fake{6, {}, {}};
  const gd::core::PipelineModel model = fake.model();
  const at::Tensor image = at::full({1, 3, 16, 16}, 0.8);  // model space 0.6: class 4 of 0..5
  std::vector<std::int64_t> reported;
  gd::core::RunOptions options;
  options.sampler = "ddim";
  options.steps = 5;
  options.seed = 3;
  options.on_classes = [&reported](const std::vector<std::int64_t>& k) { reported = k; };
  at::Tensor out = gd::core::img2img(model, image, 0.8, options);
  EXPECT_EQ(reported, (std::vector<std::int64_t>{4}));
  EXPECT_NEAR(out.mean().item<double>(), 0.8, 1e-4) << "the run must use the class it reported";
  // The fit's progress reaches the run's callback.
  int fit_calls = 0;
  options.on_class_fit = [&fit_calls](int done, int total) {
    fit_calls = done;
    return done <= total;
  };
  gd::core::img2img(model, image, 0.8, options);
  EXPECT_EQ(fit_calls, gd::core::kClassFitTimesteps);  // 6 classes: one call per timestep
  options.on_class_fit = nullptr;
  reported.clear();
  gd::core::DenoiseResult d = gd::core::denoise(model, image, 0.1, options);
  EXPECT_EQ(reported, (std::vector<std::int64_t>{4}));
  EXPECT_NEAR(d.image.mean().item<double>(), 0.8, 1e-4);
  // A given class is used as it is, with no fit (a single network call per step, batch 1).
  options.class_label = 1;
  fake.batches.clear();
  out = gd::core::img2img(model, image, 0.8, options);
  EXPECT_EQ(reported, (std::vector<std::int64_t>{1}));
  EXPECT_NEAR(out.mean().item<double>(), 0.5 * (1.0 / 5 * 2 - 1) + 0.5, 1e-4);
  for (std::int64_t b : fake.batches) EXPECT_EQ(b, 1);
}

TEST(ClassConditioning, ClassNamesFile) {
  const fs::path dir = fs::temp_directory_path() / ("gd-class-names-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / gd::models::kClassNamesFile).string();
  EXPECT_TRUE(gd::models::read_class_names(path, 3).empty()) << "no file: numbered classes";
  gd::models::write_class_names(path, {"bricks", "leaves", "wood/oak"});
  const auto names = gd::models::read_class_names(path, 3);
  EXPECT_EQ(names, (std::vector<std::string>{"bricks", "leaves", "wood/oak"}));
  expect_error([&] { gd::models::read_class_names(path, 4); }, {"3 classes", "has 4"});
  EXPECT_EQ(gd::models::find_class("leaves", names, 3), 1);
  EXPECT_EQ(gd::models::find_class("2", names, 3), 2);
  expect_error([&] { gd::models::find_class("3", names, 3); }, {"class 3", "out of range"});
  expect_error([&] { gd::models::find_class("stone", names, 3); }, "no class called 'stone'");
  expect_error([&] { gd::models::find_class("0", {}, 0); }, "not class-conditional");
  std::ofstream(path) << "{\"classes\": [1, 2, 3]}";
  expect_error([&] { gd::models::read_class_names(path, 3); }, "non-empty string");
  std::ofstream(path) << "not json";
  expect_error([&] { gd::models::read_class_names(path, 3); }, "not a class list");
  fs::remove_all(dir);
}
