// The trainer: loss step, EMA, the diffusers folder writer, and the `train` subcommand
// (resume exactness, option validation).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/prediction.h"
#include "core/training.h"
#include "image_files/image_io.h"
#include "models/diffusers_unet.h"
#include "models/diffusers_writer.h"
#include "models/model_loader.h"
#include "tests/test_files.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"

namespace fs = std::filesystem;
using gd::core::PredictionType;

namespace {

gd::models::UNet2DConfig tiny_config() {
  gd::models::UNet2DConfig c;
  c.block_out_channels = {8, 16};
  c.down_blocks = {gd::models::UNet2DBlock::Plain, gd::models::UNet2DBlock::Attention};
  c.up_blocks = {gd::models::UNet2DBlock::Attention, gd::models::UNet2DBlock::Plain};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  c.attention_head_dim = 8;
  c.sample_height = c.sample_width = 16;
  c.validate("tiny");
  return c;
}

gd::core::ScheduleConfig tiny_schedule(PredictionType type = PredictionType::Epsilon) {
  gd::core::ScheduleConfig s;
  s.num_train_timesteps = 100;
  s.prediction_type = type;
  return s;
}

// Textures: diagonal stripes of random phase and colour, [N, 3, 16, 16] in [-1, 1].
at::Tensor stripes(int n, at::Generator& gen) {
  at::Tensor yy = at::arange(16, at::kFloat).view({16, 1});
  at::Tensor xx = at::arange(16, at::kFloat).view({1, 16});
  std::vector<at::Tensor> out;
  for (int i = 0; i < n; ++i) {
    const double phase = at::rand({1}, gen).item<double>() * 6.28;
    at::Tensor base = at::sin((xx + yy) * 0.8 + phase);        // [16, 16]
    at::Tensor colour = at::rand({3, 1, 1}, gen) * 0.5 + 0.5;  // [3, 1, 1]
    out.push_back(base.unsqueeze(0) * colour);
  }
  return at::stack(out);
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("gd_train_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& leaf) const { return (path / leaf).string(); }
};

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Training, TargetsInvertInterpretOutput) {
  at::manual_seed(0);
  const at::Tensor x0 = at::randn({2, 3, 4, 4});
  const at::Tensor noise = at::randn({2, 3, 4, 4});
  const at::Tensor abar = at::tensor({0.9f, 0.2f}).view({-1, 1, 1, 1});
  const at::Tensor alpha = abar.sqrt(), sigma = (1 - abar).sqrt();
  const at::Tensor x_t = alpha * x0 + sigma * noise;
  for (auto type : {PredictionType::Epsilon, PredictionType::Sample, PredictionType::V}) {
    const at::Tensor target = gd::core::training_target(type, x0, noise, alpha, sigma);
    const auto pred = gd::core::interpret_output(type, x_t, target, alpha, sigma);
    EXPECT_TRUE(at::allclose(pred.x0, x0, 1e-4, 1e-5)) << gd::core::prediction_type_name(type);
    EXPECT_TRUE(at::allclose(pred.eps, noise, 1e-4, 1e-5)) << gd::core::prediction_type_name(type);
  }
}

TEST(Training, LossIsExactForAPerfectNetwork) {
  // A "network" that returns the true target gives zero loss; one returning zeros gives the
  // target's mean square (L2) or mean absolute value (L1).
  gd::core::DiffusionLoss l2(tiny_schedule(PredictionType::Sample), gd::core::LossType::L2);
  gd::core::DiffusionLoss l1(tiny_schedule(PredictionType::Sample), gd::core::LossType::L1);
  at::manual_seed(1);
  const at::Tensor x0 = at::rand({2, 3, 4, 4}) * 2 - 1;
  const at::Tensor noise = at::randn({2, 3, 4, 4});
  const at::Tensor t = at::tensor({3, 70}, at::kLong);
  auto perfect = [&](const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&) {
    return x0;
  };
  auto zero = [&](const at::Tensor& x, const at::Tensor&, const std::optional<at::Tensor>&) {
    return at::zeros_like(x);
  };
  EXPECT_EQ(l2.compute_at(perfect, x0, t, noise).item<float>(), 0.0f);
  EXPECT_NEAR(l2.compute_at(zero, x0, t, noise).item<double>(), x0.square().mean().item<double>(),
              1e-6);
  EXPECT_NEAR(l1.compute_at(zero, x0, t, noise).item<double>(), x0.abs().mean().item<double>(),
              1e-6);
}

TEST(Training, EmaOnAKnownSequence) {
  at::Tensor param = at::zeros({1});
  at::Tensor avg = at::zeros({1});
  gd::core::NamedParams params{{"w", param}};
  gd::core::Ema ema({{"w", avg}}, 0.9, 2);
  for (float v : {1.f, 2.f, 3.f, 4.f}) {
    param.fill_(v);
    ema.update(params);
  }
  // call 2: 0.9 * 0 + 0.1 * 2 = 0.2; call 4: 0.9 * 0.2 + 0.1 * 4 = 0.58.
  EXPECT_NEAR(avg.item<float>(), 0.58f, 1e-6);

  at::Tensor avg2 = at::zeros({1});
  gd::core::Ema warm({{"w", avg2}}, 0.9, 2, /*update_after_step=*/2);
  for (float v : {1.f, 2.f, 3.f, 4.f}) {
    param.fill_(v);
    warm.update(params);
  }
  // call 2 copies (2); call 4: 0.9 * 2 + 0.1 * 4 = 2.2.
  EXPECT_NEAR(avg2.item<float>(), 2.2f, 1e-6);
  EXPECT_EQ(warm.calls(), 4);
}

// Offset noise: the noise the network sees carries one extra value per image and channel. With
// x0 = 0, x_t = sigma_t * noise, so the per-image, per-channel mean of x_t / sigma_t is that
// offset plus the mean of 16x16 plain noise (std 1/16).
TEST(Training, OffsetNoiseShiftsWholeChannels) {
  const gd::core::ScheduleConfig schedule = tiny_schedule(PredictionType::Epsilon);
  for (const double offset : {0.0, 0.5}) {
    gd::core::DiffusionLoss loss(schedule, gd::core::LossType::L2, offset);
    at::Tensor means;  // [N, C]
    auto fn = [&](const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>&) {
      const at::Tensor sigma =
          (1 - loss.alphas_cumprod().index_select(0, t)).sqrt().view({-1, 1, 1, 1});
      means = (x / sigma).mean({2, 3});
      return at::zeros_like(x);
    };
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
    loss.compute(fn, at::zeros({256, 3, 16, 16}), gen);
    const double spread = means.std().item<double>();
    const double expected = std::sqrt(offset * offset + 1.0 / 256);
    EXPECT_NEAR(spread, expected, 0.1 * expected) << "offset " << offset;
  }
  EXPECT_THROW(gd::core::DiffusionLoss(schedule, gd::core::LossType::L2, -0.1), gd::Error);
}

TEST(Training, ClipGradNorm) {
  at::Tensor a = at::zeros({2}).requires_grad_(true);
  at::Tensor b = at::zeros({1}).requires_grad_(true);
  ((a * at::tensor({3.f, 0.f})).sum() + (b * 4).sum()).backward();  // grads (3, 0), (4): norm 5
  gd::core::NamedParams params{{"a", a}, {"b", b}};
  EXPECT_NEAR(gd::core::clip_grad_norm(params, 1.0), 5.0, 1e-5);
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<float>(), 0.8f, 1e-5);
  EXPECT_NEAR(gd::core::clip_grad_norm(params, 10.0), 1.0, 1e-5);  // no change when under
  EXPECT_NEAR(a.grad()[0].item<float>(), 0.6f, 1e-5);
}

TEST(Training, CooldownFactor) {
  using gd::core::cooldown_factor;
  // No cooldown: always the full rate.
  EXPECT_EQ(cooldown_factor(0, 10, 0), 1.0);
  EXPECT_EQ(cooldown_factor(9, 10, 0), 1.0);
  // 10 steps, the last 4 annealed: steps 1-6 (step = 0..5 taken) at full rate, then 4/4 ... 1/4.
  for (std::int64_t taken = 0; taken <= 5; ++taken)
    EXPECT_EQ(cooldown_factor(taken, 10, 4), 1.0) << taken;
  EXPECT_DOUBLE_EQ(cooldown_factor(6, 10, 4), 1.0);
  EXPECT_DOUBLE_EQ(cooldown_factor(7, 10, 4), 0.75);
  EXPECT_DOUBLE_EQ(cooldown_factor(8, 10, 4), 0.5);
  EXPECT_DOUBLE_EQ(cooldown_factor(9, 10, 4), 0.25);
  EXPECT_EQ(cooldown_factor(10, 10, 4), 0.0);  // past the end: nothing left to take
  // The whole run as cooldown.
  EXPECT_DOUBLE_EQ(cooldown_factor(0, 4, 4), 1.0);
  EXPECT_DOUBLE_EQ(cooldown_factor(3, 4, 4), 0.25);
}

// Trains the tiny UNet in memory for 60 steps, then writes its EMA as a diffusers folder and
// reads it back with load_model.
TEST(Training, LossDecreasesAndTheFolderLoadsBack) {
  const auto config = tiny_config();
  const auto schedule = tiny_schedule();
  const auto options = at::TensorOptions().dtype(at::kFloat);
  gd::models::DiffusersUNet net(config, options), ema_net(config, options);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto& params = net.params()->all();
  gd::core::init_parameters(params, gen);
  std::vector<at::Tensor> leaves;
  for (const auto& [name, p] : params) leaves.push_back(p.requires_grad_(true));
  // Plain Adam-style update by hand keeps this test free of torch::optim (the CLI test covers it).
  std::vector<at::Tensor> m, v;
  for (auto& p : leaves) {
    m.push_back(at::zeros_like(p));
    v.push_back(at::zeros_like(p));
  }
  gd::core::Ema ema(ema_net.params()->all(), 0.9, 1);
  ema.copy_from(params);
  gd::core::DiffusionLoss loss(schedule, gd::core::LossType::L2);
  auto fn = [&net](const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>& sc) {
    return net.forward(x, t, gd::core::Conditioning::self_conditioned(sc));
  };
  const at::Tensor data = stripes(32, gen);
  std::vector<double> losses;
  for (int step = 1; step <= 60; ++step) {
    const at::Tensor idx = at::randint(32, {8}, gen, at::kLong);
    at::Tensor value = loss.compute(fn, data.index_select(0, idx), gen);
    value.backward();
    losses.push_back(value.item<double>());
    gd::core::clip_grad_norm(params, 1.0);
    at::NoGradGuard no_grad;
    for (std::size_t i = 0; i < leaves.size(); ++i) {
      at::Tensor g = leaves[i].grad();
      m[i].mul_(0.9).add_(g, 0.1);
      v[i].mul_(0.99).addcmul_(g, g, 0.01);
      const double c1 = 1 - std::pow(0.9, step), c2 = 1 - std::pow(0.99, step);
      leaves[i].sub_(2e-3 * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8));
      leaves[i].mutable_grad().reset();
    }
    ema.update(params);
  }
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += losses[i] / 10;
    last += losses[50 + i] / 10;
  }
  EXPECT_LT(last, 0.7 * first) << "first 10 steps " << first << ", last 10 " << last;

  TempDir dir("folder");
  const std::string folder = dir / "model";
  gd::models::write_diffusers_folder(folder, config, schedule, ema_net.params()->all());
  auto cfg = nlohmann::json::parse(read_bytes(folder + "/config.json"));
  for (const char* key : {"sample_size",
                          "in_channels",
                          "out_channels",
                          "center_input_sample",
                          "time_embedding_type",
                          "freq_shift",
                          "flip_sin_to_cos",
                          "down_block_types",
                          "mid_block_type",
                          "up_block_types",
                          "block_out_channels",
                          "layers_per_block",
                          "mid_block_scale_factor",
                          "downsample_padding",
                          "downsample_type",
                          "upsample_type",
                          "dropout",
                          "act_fn",
                          "attention_head_dim",
                          "norm_num_groups",
                          "attn_norm_num_groups",
                          "norm_eps",
                          "resnet_time_scale_shift",
                          "add_attention",
                          "class_embed_type",
                          "num_class_embeds",
                          "num_train_timesteps",
                          "time_embedding_dim"}) {
    EXPECT_TRUE(cfg.contains(key)) << key;
  }
  const std::string st = read_bytes(folder + "/diffusion_pytorch_model.safetensors");
  std::uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i)
    header_len |= std::uint64_t(static_cast<unsigned char>(st[i])) << (8 * i);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(st.size(), 8 + header_len + 4 * static_cast<std::uint64_t>(ema_net.params()->count()));

  // Same memory layout as the in-memory network, so the comparison can be exact.
  gd::models::LoadOptions contiguous;
  contiguous.channels_last = false;
  gd::models::LoadedModel loaded = gd::models::load_model(folder, contiguous);
  EXPECT_EQ(loaded.schedule.num_train_timesteps, 100);
  EXPECT_EQ(loaded.schedule.prediction_type, PredictionType::Epsilon);
  at::NoGradGuard no_grad;
  const at::Tensor x = at::randn({2, 3, 16, 16}, gen);
  const at::Tensor t = at::tensor({5, 80}, at::kLong);
  const at::Tensor expected = ema_net.forward(x, t, {});
  const at::Tensor got = loaded.network->forward(x, t, {});
  EXPECT_TRUE(at::equal(got, expected)) << (got - expected).abs().max().item<float>();
}

// ---- the train subcommand -------------------------------------------------------------------

namespace {

void write_textures(const std::string& dir, int count, int side) {
  fs::create_directories(dir);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (int i = 0; i < count; ++i) {
    gd::image_files::Image image;
    image.width = image.height = side;
    image.channels = 3;
    at::Tensor px = (at::rand({side, side, 3}, gen) * 0.3 + 0.35).contiguous();
    image.pixels.assign(px.data_ptr<float>(), px.data_ptr<float>() + px.numel());
    gd::image_files::write_png(dir + "/tex" + std::to_string(i) + ".png", image, 8);
  }
}

std::vector<std::string> train_args(const std::string& data, const std::string& out, int steps) {
  return {"--data",
          data,
          "--out",
          out,
          "--size",
          "16",
          "--batch",
          "2",
          "--steps",
          std::to_string(steps),
          "--timesteps",
          "50",
          "--block-channels",
          "8,16",
          "--layers-per-block",
          "1",
          "--norm-groups",
          "4",
          "--attention-stages",
          "1",
          "--ema-decay",
          "0.8",
          "--ema-every",
          "1",
          "--ema-after",
          "0",
          "--accumulate",
          "2",
          "--objective",
          "v",
          "--schedule",
          "squaredcos_cap_v2",
          "--lr",
          "1e-3",
          "--seed",
          "5",
          "--log-every",
          "2",
          "--save-every",
          "3",
          "--sample-every",
          "0"};
}

// `args` with the options in `more` replacing the same options there (the parser refuses an
// option given twice); flags (no value after them) are appended.
std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  for (std::size_t i = 0; i < more.size(); ++i) {
    const bool has_value = i + 1 < more.size() && more[i + 1].rfind("--", 0) != 0;
    auto it = std::find(args.begin(), args.end(), more[i]);
    if (has_value && it != args.end()) {
      *(it + 1) = more[++i];
    } else {
      args.push_back(more[i]);
      if (has_value) args.push_back(more[++i]);
    }
  }
  return args;
}

}  // namespace

TEST(TrainCommand, ResumeIsExact) {
  TempDir dir("resume");
  write_textures(dir / "data", 3, 20);
  // Straight: 8 steps. Interrupted: 4 steps (checkpoint at 3 and 4), then resumed to 8.
  ASSERT_EQ(gd::cli::run_train(with(train_args(dir / "data", dir / "a", 8),
                                    {"--sample-every", "8", "--sample-steps", "3"})),
            0);
  ASSERT_EQ(gd::cli::run_train(train_args(dir / "data", dir / "b", 4)), 0);
  // Resuming needs only the new --steps: the rest comes from the checkpoint.
  ASSERT_EQ(gd::cli::run_train({"--data", dir / "data", "--out", dir / "b", "--steps", "8",
                                "--sample-every", "0", "--resume"}),
            0);
  const std::string a = read_bytes(dir / "a/diffusion_pytorch_model.safetensors");
  const std::string b = read_bytes(dir / "b/diffusion_pytorch_model.safetensors");
  ASSERT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == b) << "EMA weights differ after resume";
  EXPECT_TRUE(fs::exists(dir / "a/training/samples/sample-0000008.png"));
  EXPECT_TRUE(fs::exists(dir / "a/training/checkpoint.pt"));
  // The folder is a model: it loads, and it is a v-prediction cosine model.
  auto loaded = gd::models::load_model(dir / "a");
  EXPECT_EQ(loaded.schedule.prediction_type, PredictionType::V);
  EXPECT_EQ(loaded.schedule.beta_schedule, gd::core::BetaSchedule::SquaredCosCapV2);
  // A fixed option cannot change on resume; the run is not restarted over an existing one.
  EXPECT_THROW(gd::cli::run_train(
                   with(train_args(dir / "data", dir / "b", 10), {"--resume", "--batch", "3"})),
               gd::cli::UsageError);
  EXPECT_THROW(gd::cli::run_train(train_args(dir / "data", dir / "b", 10)), gd::Error);
  // --size and --offset-noise may change on resume (a fine-tuning phase); they are then stored.
  ASSERT_EQ(gd::cli::run_train({"--data", dir / "data", "--out", dir / "b", "--steps", "9",
                                "--sample-every", "0", "--resume", "--size", "20", "--offset-noise",
                                "0.1"}),
            0);
  EXPECT_THROW(gd::cli::run_train(with(train_args(dir / "data", dir / "b", 10),
                                       {"--resume", "--offset-noise", "2"})),
               gd::cli::UsageError);
  const std::string b9 = read_bytes(dir / "b/diffusion_pytorch_model.safetensors");
  EXPECT_FALSE(b9 == b) << "the resumed steps did not change the EMA weights";
  const nlohmann::json config9 = nlohmann::json::parse(read_bytes(dir / "b/config.json"));
  EXPECT_EQ(config9["sample_size"], 20);
  // --bf16 does not define the run (weights, optimizer and EMA stay float32): a run may move to
  // it on resume, and it trains on.
  ASSERT_EQ(gd::cli::run_train({"--data", dir / "data", "--out", dir / "b", "--steps", "10",
                                "--sample-every", "0", "--resume", "--bf16"}),
            0);
  const std::string c = read_bytes(dir / "b/diffusion_pytorch_model.safetensors");
  EXPECT_EQ(c.size(), b.size());
  EXPECT_FALSE(c == b9) << "the bf16 steps did not change the EMA weights";
}

// --cooldown anneals the learning rate over the last steps: it changes the result, and since the
// rate depends on the step alone, a run interrupted before the cooldown and resumed with it ends
// exactly where an unbroken one does.
TEST(TrainCommand, CooldownResumesExactly) {
  TempDir dir("cooldown");
  write_textures(dir / "data", 3, 20);
  ASSERT_EQ(gd::cli::run_train(with(train_args(dir / "data", dir / "a", 8), {"--cooldown", "4"})),
            0);
  ASSERT_EQ(gd::cli::run_train(train_args(dir / "data", dir / "b", 4)), 0);
  ASSERT_EQ(gd::cli::run_train({"--data", dir / "data", "--out", dir / "b", "--steps", "8",
                                "--cooldown", "4", "--sample-every", "0", "--resume"}),
            0);
  ASSERT_EQ(gd::cli::run_train(train_args(dir / "data", dir / "c", 8)), 0);
  const std::string a = read_bytes(dir / "a/diffusion_pytorch_model.safetensors");
  const std::string b = read_bytes(dir / "b/diffusion_pytorch_model.safetensors");
  const std::string c = read_bytes(dir / "c/diffusion_pytorch_model.safetensors");
  ASSERT_GT(a.size(), 1000u);
  EXPECT_TRUE(a == b) << "a run resumed into its cooldown differs from an unbroken one";
  EXPECT_FALSE(a == c) << "--cooldown did not change the training";
}

TEST(TrainCommand, BadOptionsAndData) {
  TempDir dir("bad");
  write_textures(dir / "data", 1, 20);
  const std::string data = dir / "data", out = dir / "out";
  const std::vector<std::vector<std::string>> usage_errors = {
      {"--batch", "0"},
      {"--objective", "noise"},
      {"--schedule", "cosine2"},
      {"--loss", "l3"},
      {"--size", "15"},
      {"--block-channels", "8,x"},
      {"--attention-stages", "2"},
      {"--lr", "0"},
      {"--lr", "abc"},
      {"--clip", "-1"},
      {"--ema-decay", "1.5"},
      {"--accumulate", "0"},
      {"--norm-groups", "3"},
      {"--sample-steps", "51"},
      {"--steps", "0"},
      {"--bogus", "1"},
      {"--threads", "-2"},
      {"--seed", "-1"},
      {"--device", "gpu"},
      {"--offset-noise", "-0.1"},
      {"--cooldown", "-1"},
      {"--cooldown", "3"}};  // 3: longer than the run's 2 steps
  for (const auto& bad : usage_errors) {
    try {
      gd::cli::run_train(with(train_args(data, out, 2), bad));
      ADD_FAILURE() << bad[0] << " " << bad[1] << " was accepted";
    } catch (const gd::cli::UsageError& e) {
      const std::string message = e.what();
      // One line that names the option (for --norm-groups: the channels it does not divide).
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      EXPECT_TRUE(message.find(bad[0]) != std::string::npos ||
                  message.find(bad[0].substr(2)) != std::string::npos)
          << message;
      std::printf("  %s %s -> %s\n", bad[0].c_str(), bad[1].c_str(), message.c_str());
    }
  }
  EXPECT_THROW(gd::cli::run_train({"--out", out}), gd::cli::UsageError);
  EXPECT_THROW(gd::cli::run_train({"--data", data}), gd::cli::UsageError);
  if (!at::hasCUDA()) {
    // A missing GPU is an error that says so, before anything is written.
    try {
      gd::cli::run_train(with(train_args(data, out, 2), {"--device", "cuda"}));
      ADD_FAILURE() << "--device cuda was accepted without a GPU";
    } catch (const gd::Error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(out)) << "bad options must not create anything";
  fs::create_directories(dir / "empty");
  EXPECT_THROW(gd::cli::run_train(train_args(dir / "empty", out, 2)), gd::Error);
  EXPECT_THROW(gd::cli::run_train(train_args(dir / "missing", out, 2)), gd::Error);
  EXPECT_THROW(gd::cli::run_train(with(train_args(data, out, 2), {"--size", "32"})), gd::Error);
  EXPECT_THROW(gd::cli::run_train(with(train_args(data, out, 2), {"--resume"})), gd::Error);
  // --tile repeats seamless textures that are smaller than the crop instead of refusing them.
  EXPECT_EQ(gd::cli::run_train(with(train_args(data, out, 2), {"--size", "32", "--tile"})), 0);
  EXPECT_TRUE(fs::exists(out + "/diffusion_pytorch_model.safetensors"));
  // --attention-stages none: no attention anywhere, the middle block included.
  const std::string conv_only = dir / "conv-only";
  ASSERT_EQ(
      gd::cli::run_train(with(train_args(data, conv_only, 1), {"--attention-stages", "none"})), 0);
  const nlohmann::json config = nlohmann::json::parse(read_bytes(conv_only + "/config.json"));
  EXPECT_FALSE(config["add_attention"].get<bool>());
  EXPECT_EQ(config["down_block_types"][0], "DownBlock2D");
}

namespace {

// Every parameter of the diffusers folder, by name (float32 on the CPU).
std::map<std::string, at::Tensor> folder_params(const std::string& dir) {
  auto loaded = gd::models::load_model(dir);
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, p] : loaded.network->params()->all()) out[name] = p.contiguous().clone();
  return out;
}

}  // namespace

TEST(TrainCommand, ClassesAndInit) {
  TempDir dir("classes");
  write_textures(dir / "data", 3, 20);
  const std::string data = dir / "data";
  // --classes: one class per image, named after its file.
  ASSERT_EQ(gd::cli::run_train(with(train_args(data, dir / "a", 3), {"--classes"})), 0);
  const nlohmann::json config = nlohmann::json::parse(read_bytes(dir / "a/config.json"));
  EXPECT_EQ(config["num_class_embeds"], 3);
  EXPECT_TRUE(config["class_embed_type"].is_null());
  auto a = gd::models::load_model(dir / "a");
  EXPECT_EQ(a.info.num_classes, 3);
  EXPECT_EQ(a.info.class_names, (std::vector<std::string>{"tex0", "tex1", "tex2"}));
  const auto a_params = folder_params(dir / "a");
  ASSERT_TRUE(a_params.count("class_embedding.weight"));
  EXPECT_GT(a_params.at("class_embedding.weight").abs().max().item<double>(), 0.0)
      << "the class embedding did not train";

  // --init without --classes: the shared weights start from the model's (a learning rate of
  // 1e-9 moves them by about that much), and the classes are dropped.
  ASSERT_EQ(gd::cli::run_train(
                with(train_args(data, dir / "b", 1), {"--init", dir / "a", "--lr", "1e-9"})),
            0);
  const auto b_params = folder_params(dir / "b");
  EXPECT_FALSE(b_params.count("class_embedding.weight"));
  EXPECT_FALSE(fs::exists(dir / "b/classes.json"));
  for (const auto& [name, p] : b_params) {
    EXPECT_LT((p - a_params.at(name)).abs().max().item<double>(), 1e-6) << name;
  }
  // --init from an unconditional model with --classes: the class embedding starts at zero, so
  // the run starts as exactly that model.
  ASSERT_EQ(gd::cli::run_train(with(train_args(data, dir / "c", 1),
                                    {"--init", dir / "b", "--classes", "--lr", "1e-9"})),
            0);
  const auto c_params = folder_params(dir / "c");
  EXPECT_LT(c_params.at("class_embedding.weight").abs().max().item<double>(), 1e-6);
  EXPECT_LT(
      (c_params.at("conv_in.weight") - b_params.at("conv_in.weight")).abs().max().item<double>(),
      1e-6);

  // An --init model of another architecture is named, and nothing is written.
  gd::test::expect_error(
      [&] {
        gd::cli::run_train(
            with(train_args(data, dir / "d", 1), {"--init", dir / "a", "--block-channels", "8,8"}));
      },
      {"--init model has", "of shape", "--block-channels"});
  EXPECT_FALSE(fs::exists(dir / "d/training/checkpoint.pt"));
  gd::test::expect_error(
      [&] {
        gd::cli::run_train(with(train_args(data, dir / "d", 1), {"--init", dir / "missing"}));
      },
      "missing");
  EXPECT_THROW(
      gd::cli::run_train(with(train_args(data, dir / "a", 4), {"--init", dir / "b", "--resume"})),
      gd::cli::UsageError);
  // A --classes run cannot resume on a folder with another number of images.
  write_textures(dir / "data4", 4, 20);
  gd::test::expect_error(
      [&] {
        gd::cli::run_train(
            {"--data", dir / "data4", "--out", dir / "a", "--steps", "4", "--resume"});
      },
      {"class_embedding", "--classes", "number of images"});
}
