// The texture model shipped in models/checkpoints/gimp-patterns: it respects the limits
// (a diffusers folder of at most 40 MB with a model card, fully convolutional), the same seed
// always gives the same texture, seamless output tiles, and it denoises textures it never saw.
// The expensive quality figures (SWD, PSNR against GEGL) are measured by tools/quality/ and
// reported in the model card; this file keeps the cheap checks that can run on every build.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/pipeline.h"
#include "image_files/image_io.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"
#include "tests/test_files.h"

namespace fs = std::filesystem;

namespace {

std::string bundled_dir() { return GD_BUNDLED_MODEL_DIR; }

struct Bundled {
  gd::models::LoadedModel loaded;
  gd::core::PipelineModel model;
};

Bundled& bundled() {
  static Bundled* b = [] {
    auto* f = new Bundled;
    f->loaded = gd::models::load_model(bundled_dir(), {});
    f->model = gd::models::pipeline_model(f->loaded, {});
    return f;
  }();
  return *b;
}

at::Tensor generate(std::uint64_t seed, int size, bool seamless = false) {
  gd::core::GenerateOptions options;  // the model's own sampler and step count
  options.seed = seed;
  options.width = options.height = size;
  options.seamless = seamless;
  at::NoGradGuard no_grad;
  return gd::core::generate(bundled().model, options);  // [1, 3, size, size] in [0, 1]
}

double psnr(const at::Tensor& a, const at::Tensor& b) {
  const double mse = (a - b).pow(2).mean().item<double>();
  return 10.0 * std::log10(1.0 / mse);
}

// A held-out texture as [1, 3, size, size] in [0, 1], repeated to fill the size (GIMP's
// patterns tile seamlessly).
at::Tensor heldout_texture(const std::string& name, int size) {
  const gd::image_files::Image image =
      gd::image_files::read_image(gd::test::data_path("heldout-textures/" + name));
  at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kFloat);
  at::Tensor chw = hwc.narrow(2, 0, 3).permute({2, 0, 1});
  chw = chw.repeat({1, size / image.height + 1, size / image.width + 1});
  return chw.narrow(1, 0, size).narrow(2, 0, size).unsqueeze(0).contiguous();
}

}  // namespace

TEST(BundledModel, FitsTheLimits) {
  std::uintmax_t bytes = 0;
  for (const auto& entry : fs::directory_iterator(bundled_dir())) {
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  EXPECT_LE(bytes, 40u * 1000 * 1000) << "the model folder must stay within 40 MB";
  EXPECT_TRUE(fs::is_regular_file(fs::path(bundled_dir()) / "README.md")) << "model card";

  const gd::models::ModelInfo& info = bundled().loaded.info;
  EXPECT_EQ(info.format, gd::models::CheckpointFormat::Diffusers);
  EXPECT_EQ(info.in_channels, 3);
  // Fully convolutional (no attention anywhere): cost linear in the canvas, any size works.
  std::ifstream file(fs::path(bundled_dir()) / "config.json");
  const nlohmann::json config = nlohmann::json::parse(file);
  EXPECT_FALSE(config.value("add_attention", true));
  for (const auto& type : config["down_block_types"]) EXPECT_EQ(type, "DownBlock2D");
  for (const auto& type : config["up_block_types"]) EXPECT_EQ(type, "UpBlock2D");
  // Its own default sampler is the fast one the plug-in dialog should start from.
  EXPECT_EQ(gd::core::default_sampler(bundled().model.schedule), "dpmpp_2m");
  EXPECT_EQ(gd::core::default_steps("dpmpp_2m", bundled().model.schedule), 20);
}

TEST(BundledModel, GeneratesWithItsOwnGuidance) {
  // guidance.json: guidance against the mean class on the low-noise steps, for Generate only
  // (the model card has the measurements behind it).
  const gd::core::Guidance& g = bundled().loaded.info.generate_guidance;
  EXPECT_TRUE(g.active());
  EXPECT_GT(g.scale, 1.0);
  EXPECT_LT(g.below_timestep, bundled().model.schedule.num_train_timesteps);
  // It is there because unguided textures lack contrast: guided ones have more fine detail
  // (mean absolute difference of neighbouring pixels), seed for seed.
  double guided = 0, plain = 0;
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    gd::core::GenerateOptions options;
    options.seed = seed;
    options.width = options.height = 64;
    at::NoGradGuard no_grad;
    const at::Tensor a = gd::core::generate(bundled().model, options);  // [1, 3, 64, 64]
    options.guidance = 1.0;
    const at::Tensor b = gd::core::generate(bundled().model, options);
    guided += (a.narrow(3, 1, 63) - a.narrow(3, 0, 63)).abs().mean().item<double>();
    plain += (b.narrow(3, 1, 63) - b.narrow(3, 0, 63)).abs().mean().item<double>();
  }
  EXPECT_GT(guided, 1.05 * plain) << "guided " << guided / 4 << ", unguided " << plain / 4;
}

TEST(BundledModel, SameSeedSameTexture) {
  const at::Tensor a = generate(3, 64);
  const at::Tensor b = generate(3, 64);
  EXPECT_TRUE(at::equal(a, b)) << "the same seed twice in one process";
  const at::Tensor c = generate(4, 64);
  EXPECT_GT((a - c).abs().mean().item<double>(), 0.02) << "another seed, another texture";

  // A second copy of the model, loaded from the files again, gives the very same texture.
  gd::models::LoadedModel again = gd::models::load_model(bundled_dir(), {});
  const gd::core::PipelineModel model = gd::models::pipeline_model(again, {});
  gd::core::GenerateOptions options;
  options.seed = 3;
  options.width = options.height = 64;
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(a, gd::core::generate(model, options)));
}

TEST(BundledModel, SeamlessTextureTiles) {
  // Circular padding: the step from the last column to the first is as smooth as the steps
  // inside the texture. Without it the wrap-around step is a seam.
  const at::Tensor x = generate(5, 64, /*seamless=*/true);  // [1, 3, 64, 64]
  const double inside_x = (x.narrow(3, 1, 63) - x.narrow(3, 0, 63)).abs().mean().item<double>();
  const double wrap_x = (x.narrow(3, 0, 1) - x.narrow(3, 63, 1)).abs().mean().item<double>();
  const double inside_y = (x.narrow(2, 1, 63) - x.narrow(2, 0, 63)).abs().mean().item<double>();
  const double wrap_y = (x.narrow(2, 0, 1) - x.narrow(2, 63, 1)).abs().mean().item<double>();
  EXPECT_LT(wrap_x, 2.0 * inside_x + 0.01);
  EXPECT_LT(wrap_y, 2.0 * inside_y + 0.01);
}

TEST(BundledModel, DenoisesTexturesItNeverSaw) {
  // Gaussian noise of sigma 25/255 on held-out patterns; the model's denoise (sigma given,
  // its default sampler) must clearly raise the PSNR on every one of them.
  constexpr double kMinGainDb =
      5.0;  // measured 6.4 to 11.1 dB; the step-250 snapshot of the run reached 4.8
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2026);
  for (const char* name :
       {"Animal_leather.png", "Wood_parque3.png", "Legacy_pebbles.png", "Stone_marble2.png"}) {
    SCOPED_TRACE(name);
    const at::Tensor clean = heldout_texture(name, 64);
    const double sigma = 25.0 / 255;
    const at::Tensor noisy = clean + sigma * at::randn(clean.sizes(), gen, at::kFloat);
    gd::core::RunOptions options;
    options.seed = 1;
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = gd::core::denoise(bundled().model, noisy, sigma, options).image;
    }
    const double before = psnr(noisy, clean), after = psnr(out, clean);
    EXPECT_GT(after, before + kMinGainDb) << "PSNR " << before << " -> " << after << " dB";
    std::printf("%s: PSNR %.2f -> %.2f dB\n", name, before, after);
  }
}
