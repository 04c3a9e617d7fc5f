// denoising-diffusion-pytorch: the Trainer checkpoint model-1.pt (read through our torch.save
// reader) against the package's own outputs (tests/data/lucidrains-tiny, see its README), the
// inference of hyper-parameters, bad checkpoints, and configurations built from scratch.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "models/ddpm_pytorch_checkpoint.h"
#include "models/ddpm_pytorch_unet.h"
#include "models/model_loader.h"
#include "models/safetensors_reader.h"
#include "models/tensor_convert.h"
#include "models/torch_zip_reader.h"
#include "tests/conv_routes.h"
#include "tests/test_util.h"

using namespace gd::models;
using gd::Error;
using gd::test::data_path;
using gd::test::expect_error;
using gd::test::fixture_tensor;
using gd::test::max_abs_diff;

namespace {

const std::string kCase = "lucidrains-tiny/";

// model-1.pt unpickled once; its tensors point into the mapping the value keeps alive.
const PickleValue& checkpoint() {
  static const PickleValue ckpt = read_torch_checkpoint(data_path(kCase + "model-1.pt"));
  return ckpt;
}

nlohmann::json read_json(const std::string& relative) {
  std::ifstream in(data_path(relative));
  if (!in) throw std::runtime_error("cannot open " + relative);
  return nlohmann::json::parse(in);
}

// A RawTensor that owns a contiguous float32 copy of `t`.
RawTensor raw_from(const at::Tensor& t) {
  auto keep = std::make_shared<at::Tensor>(t.to(at::kFloat).contiguous());
  RawTensor raw;
  raw.dtype = DType::F32;
  raw.shape = keep->sizes().vec();
  raw.strides = contiguous_strides(raw.shape);
  raw.data = static_cast<const std::uint8_t*>(keep->data_ptr());
  raw.owner = keep;
  return raw;
}

TensorMap state_dict_of(DdpmUnet& net) {
  TensorMap map;
  for (const auto& [name, tensor] : net.params()->all()) map.emplace(name, raw_from(tensor));
  return map;
}

void check_unet_case(DdpmWeights weights, const std::string& file) {
  DdpmLoadOptions options;
  options.weights = weights;
  const DdpmCheckpoint ckpt = load_ddpm_checkpoint_tensors(checkpoint(), options, "model-1.pt");
  auto unet = make_ddpm_unet(ckpt, at::TensorOptions().dtype(at::kFloat), "model-1.pt");
  EXPECT_EQ(unet->params()->count(), 242003);

  const at::Tensor x = fixture_tensor(kCase + file, "x");  // [2, 3, 16, 16]
  const at::Tensor t = fixture_tensor(kCase + file, "t");  // [2] int64
  const at::Tensor expected = fixture_tensor(kCase + file, "out");
  const at::Tensor out = unet->forward(x, t, {});
  ASSERT_EQ(out.sizes(), expected.sizes());
  const double err = max_abs_diff(out, expected);
  EXPECT_LE(err, 1e-4) << ddpm_weights_name(weights) << " weights";
  std::cout << "[          ] " << ddpm_weights_name(weights) << " max |out - package| = " << err
            << "\n";
}

const TensorMap& ema_unet_weights() {
  static const TensorMap weights =
      load_ddpm_checkpoint_tensors(checkpoint(), {}, "model-1.pt").unet_weights;
  return weights;
}

}  // namespace

// ---- the package's checkpoint ---------------------------------------------------------------

TEST(DdpmPytorchUnet, EmaWeightsMatchPackage) {
  check_unet_case(DdpmWeights::Ema, "unet_ema.safetensors");
}

TEST(DdpmPytorchUnet, OnlineWeightsMatchPackage) {
  check_unet_case(DdpmWeights::Model, "unet_model.safetensors");
}

// The 20/40-channel Unet (tests/data/lucidrains-odd), loaded as the engine loads it, with the
// convolution guard, on every route a convolution can take to oneDNN (tests/conv_routes.h): the
// package's outputs within 1e-4, for both sets of weights. Debian 13's libdnnl 3.7.2 computes
// these widths wrongly; with it, this fails when the guard is off (GD_NO_KERNEL_CHECK=1).
TEST(DdpmPytorchUnet, OddWidthModelMatchesPackageOnEveryRoute) {
  at::NoGradGuard no_grad;
  for (const gd::test::ConvRoute& route : gd::test::conv_routes()) {
    SCOPED_TRACE(route.name);
    gd::test::ThreadCount threads(route.threads);
    for (const char* weights : {"ema", "model"}) {
      const std::string file = std::string("lucidrains-odd/unet_") + weights + ".safetensors";
      LoadOptions options = gd::test::load_options(route);
      options.weights = weights;
      const LoadedModel model = load_model(data_path("lucidrains-odd/model-1.pt"), options);
      EXPECT_EQ(model.network->params()->count(), 303143);  // the README's count
      const at::Tensor x = fixture_tensor(file, "x");       // [2, 3, 16, 16]
      const at::Tensor t = fixture_tensor(file, "t");       // [2] int64
      const at::Tensor expected = fixture_tensor(file, "out");
      const at::Tensor out = model.network->forward(x, t, {});
      ASSERT_EQ(out.sizes(), expected.sizes());
      const double err = max_abs_diff(out, expected);
      EXPECT_LE(err, 1e-4) << weights << " weights";
      std::printf("%s, %s weights: %d of %d layers rerouted, max |out - package| = %.3g\n",
                  route.name, weights, model.kernel_check.rerouted, model.kernel_check.layers, err);
    }
  }
}

TEST(DdpmPytorchCheckpoint, EmaAndOnlineWeightsDiffer) {
  const DdpmCheckpoint ema = load_ddpm_checkpoint_tensors(checkpoint(), {}, "model-1.pt");
  DdpmLoadOptions online_options;
  online_options.weights = DdpmWeights::Model;
  const DdpmCheckpoint online =
      load_ddpm_checkpoint_tensors(checkpoint(), online_options, "model-1.pt");
  EXPECT_EQ(ema.weights, DdpmWeights::Ema);
  EXPECT_EQ(online.weights, DdpmWeights::Model);
  EXPECT_EQ(ema.unet_weights.size(), 141u);
  EXPECT_EQ(online.unet_weights.size(), 141u);
  const double diff = max_abs_diff(to_tensor(ema.unet_weights.at("init_conv.weight")),
                                   to_tensor(online.unet_weights.at("init_conv.weight")));
  EXPECT_GT(diff, 0.0);
  EXPECT_EQ(ema.step, std::optional<std::int64_t>(2));
  EXPECT_EQ(ema.package_version, "2.3.1");
}

TEST(DdpmPytorchCheckpoint, InferredConfigMatchesHparams) {
  const nlohmann::json inferred = read_json(kCase + "hparams.json")["inferred_from_state_dict"];
  DdpmUnetConfig expected;
  expected.dim = inferred["dim"];
  expected.init_dim = inferred["init_dim"];
  expected.channels = inferred["channels"];
  expected.self_condition = inferred["self_condition"];
  expected.learned_variance = inferred["learned_variance"];
  expected.out_dim = expected.channels * (expected.learned_variance ? 2 : 1);
  expected.dim_mults = inferred["dim_mults"].get<std::vector<std::int64_t>>();
  expected.full_attn = inferred["full_attn"].get<std::vector<bool>>();
  expected.attn_heads = inferred["attn_heads"].get<std::vector<std::int64_t>>();
  expected.attn_dim_head = inferred["attn_dim_head"].get<std::vector<std::int64_t>>();
  expected.learned_sinusoidal_cond = inferred["learned_or_random_fourier_time_emb"];

  for (DdpmWeights weights : {DdpmWeights::Ema, DdpmWeights::Model}) {
    DdpmLoadOptions options;
    options.weights = weights;
    const DdpmCheckpoint ckpt = load_ddpm_checkpoint_tensors(checkpoint(), options, "model-1.pt");
    EXPECT_EQ(ckpt.unet, expected)
        << "inferred: " << ckpt.unet.to_string() << "\nexpected: " << expected.to_string();
    EXPECT_EQ(ckpt.unet.num_stages(), inferred["num_stages"].get<std::int64_t>());
    EXPECT_EQ(ckpt.unet.downsample_factor(), inferred["downsample_factor"].get<std::int64_t>());
    EXPECT_EQ(ckpt.diffusion.num_timesteps, inferred["timesteps"].get<std::int64_t>());
    EXPECT_EQ(ckpt.diffusion.beta_schedule, inferred["beta_schedule"].get<std::string>());
    EXPECT_EQ(ckpt.diffusion.objective, inferred["objective"].get<std::string>());
    EXPECT_EQ(ckpt.diffusion.min_snr_loss_weight, inferred["min_snr_loss_weight"].get<bool>());
    EXPECT_FALSE(ckpt.diffusion.min_snr_gamma.has_value());
  }
}

TEST(DdpmPytorchCheckpoint, ScheduleBuffersMatchFixture) {
  const DdpmCheckpoint ckpt = load_ddpm_checkpoint(data_path(kCase + "model-1.pt"));
  const DdpmDiffusionSettings& s = ckpt.diffusion;
  EXPECT_EQ(s.num_timesteps, 100);
  EXPECT_EQ(s.beta_schedule, "sigmoid");
  EXPECT_EQ(s.objective, "pred_v");
  EXPECT_TRUE(s.objective_inferred);
  EXPECT_FALSE(s.min_snr_loss_weight);

  const nlohmann::json cases = read_json(kCase + "cases.json");
  const TensorMap fixture = read_safetensors(data_path(kCase + "schedule.safetensors"));
  int checked = 0;
  for (const auto& check : cases["checks"]) {
    if (check["kind"] != "schedule") continue;
    EXPECT_EQ(check["num_timesteps"].get<std::int64_t>(), s.num_timesteps);
    for (const auto& name_json : check["buffers"]) {
      const std::string name = name_json;
      const at::Tensor expected = to_tensor(fixture.at(name)).to(at::kDouble);
      const at::Tensor actual = s.buffer(name);
      EXPECT_EQ(actual.scalar_type(), at::kFloat) << name;  // stored float32, kept as is
      ASSERT_EQ(actual.sizes(), expected.sizes()) << name;
      const double rel =
          ((actual.to(at::kDouble) - expected).abs() / expected.abs().clamp_min(1e-30))
              .max()
              .item<double>();
      EXPECT_LE(rel, 1e-6) << name;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 13);
  const at::Tensor betas = to_tensor(fixture.at("betas")).to(at::kDouble);
  ASSERT_EQ(s.betas.size(), 100u);
  for (std::size_t i = 0; i < s.betas.size(); ++i) {
    EXPECT_EQ(s.betas[i], betas[static_cast<std::int64_t>(i)].item<double>()) << i;
  }
}

// ---- schedule and objective inference on synthetic buffers ----------------------------------

namespace {

// A GaussianDiffusion-like state: the given betas (float64, stored float32), every schedule
// buffer derived from them, and loss_weight = weight_fn(snr, alphas_cumprod).
TensorMap synthetic_state(
    const at::Tensor& betas64,
    const std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>& weight_fn) {
  const at::Tensor ac = at::cumprod(1 - betas64, 0);
  const at::Tensor snr = ac / (1 - ac);
  TensorMap state;
  for (const char* name :
       {"alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"}) {
    state[name] = raw_from(ac);  // values irrelevant here, only presence and shape
  }
  state["betas"] = raw_from(betas64);
  state["loss_weight"] = raw_from(weight_fn(snr, ac));
  state["model.init_conv.weight"] = raw_from(at::zeros({4, 3, 7, 7}));  // skipped
  return state;
}

}  // namespace

TEST(DdpmPytorchCheckpoint, InfersLinearScheduleAndPredNoise) {
  // linear_beta_schedule(100): scale = 1000 / 100 = 10, linspace(0.001, 0.2, 100)
  const TensorMap state =
      synthetic_state(at::linspace(10 * 0.0001, 10 * 0.02, 100, at::kDouble),
                      [](const at::Tensor& snr, const at::Tensor&) { return at::ones_like(snr); });
  const DdpmDiffusionSettings s = infer_ddpm_diffusion_settings(state, std::nullopt, "synthetic");
  EXPECT_EQ(s.beta_schedule, "linear");
  EXPECT_EQ(s.objective, "pred_noise");
  EXPECT_FALSE(s.min_snr_loss_weight);
  EXPECT_EQ(s.buffers.count("model.init_conv.weight"), 0u);
}

TEST(DdpmPytorchCheckpoint, InfersPredX0AndCustomSchedule) {
  const TensorMap state =
      synthetic_state(at::full({50}, 0.02, at::kDouble),
                      [](const at::Tensor& snr, const at::Tensor&) { return snr; });
  const DdpmDiffusionSettings s = infer_ddpm_diffusion_settings(state, std::nullopt, "synthetic");
  EXPECT_EQ(s.beta_schedule, "custom");
  EXPECT_EQ(s.objective, "pred_x0");
  EXPECT_EQ(s.num_timesteps, 50);
}

TEST(DdpmPytorchCheckpoint, InfersMinSnrGammaForPredV) {
  const TensorMap state = synthetic_state(
      at::linspace(10 * 0.0001, 10 * 0.02, 100, at::kDouble),
      [](const at::Tensor& snr, const at::Tensor&) { return snr.clamp_max(5) / (snr + 1); });
  const DdpmDiffusionSettings s = infer_ddpm_diffusion_settings(state, std::nullopt, "synthetic");
  EXPECT_EQ(s.objective, "pred_v");
  EXPECT_TRUE(s.min_snr_loss_weight);
  ASSERT_TRUE(s.min_snr_gamma.has_value());
  EXPECT_NEAR(*s.min_snr_gamma, 5.0, 1e-4);
}

TEST(DdpmPytorchCheckpoint, UninferableObjectiveNeedsOverride) {
  const TensorMap state = synthetic_state(
      at::linspace(10 * 0.0001, 10 * 0.02, 100, at::kDouble),
      [](const at::Tensor& snr, const at::Tensor&) { return at::full_like(snr, 0.5); });
  expect_error([&] { infer_ddpm_diffusion_settings(state, std::nullopt, "synthetic"); },
               {"synthetic", "loss_weight", "objective", "pred_noise"});
  const DdpmDiffusionSettings s =
      infer_ddpm_diffusion_settings(state, std::string("pred_x0"), "synthetic");
  EXPECT_EQ(s.objective, "pred_x0");
  EXPECT_FALSE(s.objective_inferred);
  expect_error([&] { infer_ddpm_diffusion_settings(state, std::string("eps"), "synthetic"); },
               {"unknown objective 'eps'"});

  TensorMap no_weight = state;
  no_weight.erase("loss_weight");
  expect_error([&] { infer_ddpm_diffusion_settings(no_weight, std::nullopt, "synthetic"); },
               {"no 'loss_weight' buffer", "objective"});
  TensorMap no_buffer = state;
  no_buffer.erase("posterior_mean_coef2");
  expect_error(
      [&] { infer_ddpm_diffusion_settings(no_buffer, std::string("pred_v"), "synthetic"); },
      {"posterior_mean_coef2", "missing"});
}

// ---- bad checkpoints --------------------------------------------------------------------------

TEST(DdpmPytorchCheckpoint, MissingWeightIsNamed) {
  TensorMap weights = ema_unet_weights();
  const DdpmUnetConfig config = infer_ddpm_unet_config(weights, "");
  weights.erase("ups.1.0.block2.norm.g");
  DdpmUnet unet(config, at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { unet.params()->load(weights, "", "model-1.pt"); },
               {"model-1.pt", "missing tensor 'ups.1.0.block2.norm.g'"});
}

TEST(DdpmPytorchCheckpoint, ChangedShapeIsNamed) {
  TensorMap weights = ema_unet_weights();
  const DdpmUnetConfig config = infer_ddpm_unet_config(weights, "");
  RawTensor& w = weights.at("mid_block1.mlp.1.weight");
  w.shape[0] -= 1;  // fewer rows: still inside the same bytes
  DdpmUnet unet(config, at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { unet.params()->load(weights, "", "model-1.pt"); },
               {"'mid_block1.mlp.1.weight'", "has shape"});
}

TEST(DdpmPytorchCheckpoint, MissingStructuralKeyIsNamed) {
  TensorMap weights = ema_unet_weights();
  weights.erase("time_mlp.1.weight");
  expect_error([&] { infer_ddpm_unet_config(weights, "pre."); }, {"'pre.init_conv.weight'"});
  expect_error([&] { infer_ddpm_unet_config(weights, ""); },
               {"missing tensor 'time_mlp.1.weight'"});
}

TEST(DdpmPytorchCheckpoint, GroupNormLayoutBefore2IsRefused) {
  TensorMap weights;
  for (const auto& [key, raw] : ema_unet_weights()) {
    const std::string suffix = "norm.g";
    const bool block_norm = key.find(".block") != std::string::npos &&
                            key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (!block_norm) {
      weights[key] = raw;
      continue;
    }
    // nn.GroupNorm(8, C): weight and bias of shape [C]
    const std::string base = key.substr(0, key.size() - 1);
    weights[base + "weight"] = raw_from(at::ones({raw.shape[1]}));
    weights[base + "bias"] = raw_from(at::zeros({raw.shape[1]}));
  }
  expect_error([&] { infer_ddpm_unet_config(weights, ""); }, {"GroupNorm", "2.0.0", "norm.weight"});
}

TEST(DdpmPytorchCheckpoint, PreNormWrappersBefore18AreRefused) {
  TensorMap weights;
  for (const auto& [key, raw] : ema_unet_weights()) {
    const std::string attn = "downs.0.2.";
    if (key.compare(0, attn.size(), attn) == 0) {
      weights[attn + "fn.fn." + key.substr(attn.size())] = raw;
    } else {
      weights[key] = raw;
    }
  }
  expect_error([&] { infer_ddpm_unet_config(weights, ""); }, {"1.8.0", "downs.0.2.fn.fn."});
}

TEST(DdpmPytorchCheckpoint, NoMemoryKeyValuesBefore19AreRefused) {
  TensorMap weights;
  for (const auto& [key, raw] : ema_unet_weights()) {
    if (key.find("mem_kv") == std::string::npos) weights[key] = raw;
  }
  expect_error([&] { infer_ddpm_unet_config(weights, ""); }, {"1.9.0", "mem_kv"});
}

TEST(DdpmPytorchCheckpoint, NotATrainerCheckpoint) {
  PickleValue list;
  list.kind = PickleValue::Kind::List;
  expect_error([&] { load_ddpm_checkpoint_tensors(list, {}, "x.pt"); },
               {"x.pt", "not a denoising-diffusion-pytorch Trainer checkpoint"});

  // The GaussianDiffusion state dict on its own, without the Trainer wrapper.
  const PickleValue* model = dict_lookup(checkpoint(), "model");
  ASSERT_NE(model, nullptr);
  expect_error([&] { load_ddpm_checkpoint_tensors(*model, {}, "x.pt"); },
               {"Trainer checkpoint", "bare state dict"});
  EXPECT_TRUE(is_ddpm_trainer_checkpoint(checkpoint()));
  EXPECT_FALSE(is_ddpm_trainer_checkpoint(*model));
}

TEST(DdpmPytorchCheckpoint, MissingEmaIsExplained) {
  PickleValue without_ema = checkpoint();
  without_ema.entries.clear();
  for (const auto& entry : checkpoint().entries) {
    if (entry.first->kind == PickleValue::Kind::String && entry.first->text == "ema") continue;
    without_ema.entries.push_back(entry);
  }
  expect_error([&] { load_ddpm_checkpoint_tensors(without_ema, {}, "x.pt"); },
               {"x.pt", "no EMA weights", "weights = model"});
  DdpmLoadOptions online;
  online.weights = DdpmWeights::Model;
  EXPECT_EQ(load_ddpm_checkpoint_tensors(without_ema, online, "x.pt").unet.dim, 16);
}

// ---- configurations built from scratch ----------------------------------------------------------

namespace {

void randomize(DdpmUnet& net) {
  for (const auto& [name, tensor] : net.params()->all()) {
    tensor.copy_(at::randn(tensor.sizes()) * 0.2);
  }
}

void check_round_trip(const DdpmUnetConfig& config, bool pass_self_cond) {
  at::manual_seed(7);
  DdpmUnet net(config, at::TensorOptions().dtype(at::kFloat));
  randomize(net);

  const at::Tensor x = at::randn({2, config.channels, 16, 16});  // [N, C, H, W]
  const at::Tensor t = at::tensor(std::vector<std::int64_t>{3, 97});
  std::optional<at::Tensor> cond;
  if (pass_self_cond) cond = at::randn({2, config.channels, 16, 16});
  const at::Tensor out = net.forward(x, t, gd::core::Conditioning::self_conditioned(cond));
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, config.out_dim, 16, 16}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_GT(out.abs().max().item<double>(), 0.0);

  // The network's own names and shapes give back its configuration...
  const TensorMap weights = state_dict_of(net);
  const DdpmUnetConfig inferred = infer_ddpm_unet_config(weights, "");
  EXPECT_EQ(inferred, config) << "inferred: " << inferred.to_string()
                              << "\nbuilt:    " << config.to_string();

  // ...and loading them into a fresh network reproduces the output exactly.
  DdpmUnet copy(inferred, at::TensorOptions().dtype(at::kFloat));
  copy.params()->load(weights, "", "round trip");
  EXPECT_EQ(max_abs_diff(copy.forward(x, t, gd::core::Conditioning::self_conditioned(cond)), out),
            0.0);
}

}  // namespace

TEST(DdpmPytorchUnet, SelfConditionedFullAttentionRoundTrip) {
  DdpmUnetConfig c = make_ddpm_unet_config(8, {1, 2, 4}, 3, /*self_condition=*/true);
  c.init_dim = 12;
  c.full_attn = {true, true, true};
  c.attn_heads = {2, 2, 1};
  c.attn_dim_head = {8, 16, 8};
  c.learned_sinusoidal_cond = true;
  c.learned_sinusoidal_dim = 8;
  check_round_trip(c, /*pass_self_cond=*/true);

  // Without a self-conditioning input the network sees zeros, as in the package.
  at::manual_seed(3);
  DdpmUnet net(c, at::TensorOptions().dtype(at::kFloat));
  randomize(net);
  const at::Tensor x = at::randn({1, 3, 8, 8});
  const at::Tensor t = at::tensor(std::vector<std::int64_t>{10});
  EXPECT_EQ(
      max_abs_diff(net.forward(x, t, {}),
                   net.forward(x, t, gd::core::Conditioning::self_conditioned(at::zeros_like(x)))),
      0.0);
}

TEST(DdpmPytorchUnet, LearnedVarianceLinearAttentionRoundTrip) {
  DdpmUnetConfig c = make_ddpm_unet_config(8, {1, 2, 4}, 1, false, /*learned_variance=*/true);
  c.num_mem_kv = 2;
  EXPECT_EQ(c.out_dim, 2);
  EXPECT_EQ(c.full_attn, (std::vector<bool>{false, false, true}));
  check_round_trip(c, /*pass_self_cond=*/false);
}

TEST(DdpmPytorchUnet, RejectsBadInputShapes) {
  DdpmUnet net(make_ddpm_unet_config(8, {1, 2, 4}), at::TensorOptions().dtype(at::kFloat));
  const at::Tensor t = at::tensor(std::vector<std::int64_t>{1});
  expect_error([&] { net.forward(at::zeros({1, 3, 12, 18}), t, {}); }, {"not a multiple of 4"});
  expect_error([&] { net.forward(at::zeros({1, 4, 16, 16}), t, {}); }, {"expected [N, 3, H, W]"});
  expect_error([&] { net.forward(at::zeros({2, 3, 16, 16}), t, {}); }, {"timesteps"});
}
