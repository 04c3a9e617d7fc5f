// diffusers UNet2DModel: the tiny fixture model (tests/data/diffusers-tiny, see its README)
// against diffusers' own outputs, config.json parsing and its errors, loading errors, legacy
// attention key names, and a second architecture built from scratch.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "core/error.h"
#include "models/circular_pad.h"
#include "models/diffusers_config.h"
#include "models/diffusers_unet.h"
#include "models/model_loader.h"
#include "models/safetensors_reader.h"
#include "models/tensor_convert.h"
#include "tests/conv_routes.h"
#include "tests/test_util.h"

using namespace gd::models;
using gd::Error;
using gd::test::data_path;
using gd::test::expect_error;
using gd::test::fixture_tensor;
using gd::test::max_abs_diff;
using gd::test::read_text;

namespace {

const std::string kCase = "diffusers-tiny/";

UNet2DConfig fixture_config() {
  return parse_unet2d_config(read_text(kCase + "model/config.json"), "config.json");
}

const TensorMap& fixture_weights() {
  static const TensorMap weights =
      read_safetensors(data_path(kCase + "model/diffusion_pytorch_model.safetensors"));
  return weights;
}

std::unique_ptr<DiffusersUNet> fixture_unet() {
  auto unet =
      std::make_unique<DiffusersUNet>(fixture_config(), at::TensorOptions().dtype(at::kFloat));
  unet->params()->load(fixture_weights(), "", "diffusion_pytorch_model.safetensors");
  return unet;
}

// The fixture's config.json with the value of one top-level key replaced by `json_value`.
std::string config_with(const std::string& key, const std::string& json_value) {
  std::string text = read_text(kCase + "model/config.json");
  const std::string needle = "\"" + key + "\":";
  const std::size_t at = text.find(needle);
  if (at == std::string::npos) throw std::runtime_error("fixture config has no " + key);
  // The value runs to the next top-level ",\n  \"" or to the closing "\n}".
  std::size_t end = text.find(",\n  \"", at);
  if (end == std::string::npos) end = text.rfind("\n}");
  return text.substr(0, at + needle.size()) + " " + json_value + text.substr(end);
}

void check_fixture_case(const std::string& t_name, const std::string& out_name) {
  const auto unet = fixture_unet();
  const at::Tensor x = fixture_tensor(kCase + "unet.safetensors", "x");     // [2, 3, 16, 16]
  const at::Tensor t = fixture_tensor(kCase + "unet.safetensors", t_name);  // [2]
  const at::Tensor expected = fixture_tensor(kCase + "unet.safetensors", out_name);
  const at::Tensor out = unet->forward(x, t, {});
  ASSERT_EQ(out.sizes(), expected.sizes());
  const double err = max_abs_diff(out, expected);
  EXPECT_LE(err, 1e-4) << t_name;
  std::cout << "[          ] " << t_name << ": max |out - diffusers| = " << err << "\n";
}

// The second architecture: everything the fixture does not exercise. Three stages, two
// resnets per down block, resnet down/upsampling in the attention blocks, scale-shift time
// norm, one attention head per block, no mid attention, zero-padded conv downsampling in the
// plain block, non-default time embedding options, a non-square sample size.
const char* kSecondConfig = R"({
  "_class_name": "UNet2DModel",
  "sample_size": [16, 24],
  "in_channels": 2,
  "out_channels": 4,
  "center_input_sample": true,
  "time_embedding_type": "positional",
  "freq_shift": 1,
  "flip_sin_to_cos": false,
  "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
  "block_out_channels": [8, 16, 24],
  "layers_per_block": 2,
  "mid_block_scale_factor": 1.4142135623730951,
  "downsample_padding": 0,
  "downsample_type": "resnet",
  "upsample_type": "resnet",
  "dropout": 0.1,
  "act_fn": "silu",
  "attention_head_dim": null,
  "norm_num_groups": 4,
  "norm_eps": 1e-6,
  "resnet_time_scale_shift": "scale_shift",
  "add_attention": false,
  "time_embedding_dim": 48
})";

// Parameter count of a ResnetBlock2D in -> out with time width T, scale-shift (2 out) or not.
std::int64_t resnet_params(std::int64_t in, std::int64_t out, std::int64_t temb, bool scale_shift) {
  const std::int64_t proj = scale_shift ? 2 * out : out;
  return 2 * in                               // norm1
         + 9 * in * out + out                 // conv1
         + temb * proj + proj                 // time_emb_proj
         + 2 * out                            // norm2
         + 9 * out * out + out                // conv2
         + (in != out ? in * out + out : 0);  // conv_shortcut
}
// Attention over C channels with one head as wide as C, with group_norm.
std::int64_t attention_params(std::int64_t c) { return 2 * c + 4 * (c * c + c); }

}  // namespace

// ---- the fixture model against diffusers ------------------------------------------------------

TEST(DiffusersUNet, IntegerTimestepsMatchDiffusers) { check_fixture_case("t", "out"); }

TEST(DiffusersUNet, FractionalTimestepsMatchDiffusers) {
  check_fixture_case("t_float", "out_float");
}

TEST(DiffusersUNet, FixtureParametersMatchCheckpoint) {
  const auto unet = fixture_unet();
  // README: 177,427 parameters in 144 tensors, all of which load (no unexpected key).
  EXPECT_EQ(unet->params()->count(), 177427);
  EXPECT_EQ(unet->params()->all().size(), 144u);
  EXPECT_EQ(fixture_weights().size(), 144u);
}

TEST(DiffusersUNet, ScalarTimestepIsBroadcastToBatch) {
  const auto unet = fixture_unet();
  const at::Tensor x = fixture_tensor(kCase + "unet.safetensors", "x");
  const at::Tensor expected = fixture_tensor(kCase + "unet.safetensors", "out");
  // Sample 1 was run at t = 99: a scalar 99 broadcast over a batch of one gives the same.
  const at::Tensor out = unet->forward(x.slice(0, 1, 2), at::scalar_tensor(99, at::kLong), {});
  EXPECT_LE(max_abs_diff(out, expected.slice(0, 1, 2)), 1e-4);
}

// The 20/40-channel model (tests/data/diffusers-odd), loaded as the engine loads it, with the
// convolution guard, on every route a convolution can take to oneDNN (tests/conv_routes.h):
// diffusers' outputs within 1e-4. Debian 13's libdnnl 3.7.2 computes these widths wrongly; with
// it, this fails when the guard is off (GD_NO_KERNEL_CHECK=1; docs/numerics.md).
TEST(DiffusersUNet, OddWidthModelMatchesDiffusersOnEveryRoute) {
  at::NoGradGuard no_grad;
  const std::string file = "diffusers-odd/unet.safetensors";
  const char* const checks[][3] = {
      {"x", "t", "out"}, {"x", "t_float", "out_float"}, {"x_large", "t_large", "out_large"}};
  for (const gd::test::ConvRoute& route : gd::test::conv_routes()) {
    SCOPED_TRACE(route.name);
    gd::test::ThreadCount threads(route.threads);
    const LoadedModel model =
        load_model(data_path("diffusers-odd/model"), gd::test::load_options(route));
    EXPECT_EQ(model.network->params()->count(), 276103);  // the README's count
    std::printf("%s: kernel check rerouted %d of %d layers\n", route.name,
                model.kernel_check.rerouted, model.kernel_check.layers);
    for (const auto& check : checks) {
      const at::Tensor x = fixture_tensor(file, check[0]);  // [N, 3, H, W]
      const at::Tensor t = fixture_tensor(file, check[1]);  // [N]
      const at::Tensor expected = fixture_tensor(file, check[2]);
      const at::Tensor out = model.network->forward(x, t, {});
      ASSERT_EQ(out.sizes(), expected.sizes());
      const double err = max_abs_diff(out, expected);
      EXPECT_LE(err, 1e-4) << check[2];
      std::printf("  %s: max |out - diffusers| = %.3g\n", check[2], err);
    }
  }
}

TEST(DiffusersUNet, LegacyAttentionKeysAreRenamed) {
  // An old-style file: to_q/to_k/to_v/to_out.0 spelled query/key/value/proj_attn.
  TensorMap legacy;
  for (const auto& [key, raw] : fixture_weights()) {
    std::string old_key = key;
    for (const auto& [now, before] :
         std::vector<std::pair<std::string, std::string>>{{".to_q.", ".query."},
                                                          {".to_k.", ".key."},
                                                          {".to_v.", ".value."},
                                                          {".to_out.0.", ".proj_attn."}}) {
      const std::size_t at = old_key.find(now);
      if (at != std::string::npos) old_key.replace(at, now.size(), before);
    }
    legacy.emplace(old_key, raw);
  }
  ASSERT_TRUE(legacy.count("mid_block.attentions.0.proj_attn.weight"));
  ASSERT_TRUE(legacy.count("down_blocks.1.attentions.0.query.bias"));
  rename_legacy_attention_keys(legacy);
  std::set<std::string> renamed, original;
  for (const auto& [key, raw] : legacy) renamed.insert(key);
  for (const auto& [key, raw] : fixture_weights()) original.insert(key);
  EXPECT_EQ(renamed, original);

  // A second pass changes nothing, and the renamed map loads.
  rename_legacy_attention_keys(legacy);
  EXPECT_EQ(legacy.size(), original.size());
  DiffusersUNet unet(fixture_config(), at::TensorOptions().dtype(at::kFloat));
  unet.params()->load(legacy, "", "legacy.bin");
}

TEST(DiffusersUNet, LegacyRenameLeavesOtherKeysAlone) {
  TensorMap map;
  RawTensor raw;
  raw.shape = {1};
  raw.strides = {1};
  for (const char* key : {"time_embedding.key.weight", "down_blocks.0.resnets.0.query.weight",
                          "up_blocks.1.attentions.2.group_norm.weight", "conv_in.value"}) {
    map.emplace(key, raw);
  }
  const TensorMap before = map;
  rename_legacy_attention_keys(map);
  ASSERT_EQ(map.size(), before.size());
  for (const auto& [key, value] : before) EXPECT_TRUE(map.count(key)) << key;
}

// ---- loading errors ---------------------------------------------------------------------------

TEST(DiffusersUNet, MissingTensorIsNamed) {
  TensorMap weights = fixture_weights();
  weights.erase("up_blocks.0.attentions.1.to_v.bias");
  DiffusersUNet unet(fixture_config(), at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { unet.params()->load(weights, "", "model.safetensors"); },
               {"model.safetensors", "missing tensor", "up_blocks.0.attentions.1.to_v.bias"});
}

TEST(DiffusersUNet, WrongShapeIsNamed) {
  TensorMap weights = fixture_weights();
  RawTensor& raw = weights.at("conv_in.weight");  // [16, 3, 3, 3]
  raw.shape = {16, 4, 3, 3};                      // as if the config said in_channels 3 wrongly
  raw.strides = contiguous_strides(raw.shape);
  DiffusersUNet unet(fixture_config(), at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { unet.params()->load(weights, "", "model.safetensors"); },
               {"conv_in.weight", "[16, 4, 3, 3]", "[16, 3, 3, 3]"});
}

TEST(DiffusersUNet, ConfigThatDisagreesWithWeightsIsNamed) {
  // Without attention in the mid block the checkpoint's mid attention is unexpected.
  const UNet2DConfig config = parse_unet2d_config(config_with("add_attention", "false"), "c");
  DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));
  expect_error([&] { unet.params()->load(fixture_weights(), "", "model.safetensors"); },
               {"unexpected tensor", "mid_block.attentions.0."});
}

TEST(DiffusersUNet, BadInputsAreRefused) {
  const auto unet = fixture_unet();
  expect_error(
      [&] {
        unet->forward(at::zeros({1, 4, 16, 16}), at::zeros({1}, at::kLong), {});
      },
      {"[1, 4, 16, 16]", "[N, 3, H, W]"});
  expect_error(
      [&] {
        unet->forward(at::zeros({1, 3, 15, 16}), at::zeros({1}, at::kLong), {});
      },
      {"multiple of 2"});
  expect_error(
      [&] {
        unet->forward(at::zeros({2, 3, 16, 16}), at::zeros({3}, at::kLong), {});
      },
      {"timesteps", "[3]"});
  expect_error(
      [&] {
        unet->forward(at::zeros({1, 3, 16, 16}), at::zeros({1}, at::kLong),
                      gd::core::Conditioning::self_conditioned(at::zeros({1, 3, 16, 16})));
      },
      {"self-conditioning"});
}

// ---- config.json --------------------------------------------------------------------------------

TEST(CircularPad, EqualsTorchsCircularPadAndKeepsTheLayout) {
  const at::Tensor x = at::arange(2 * 3 * 5 * 7, at::kFloat).reshape({2, 3, 5, 7});  // [N, C, H, W]
  const std::vector<std::vector<std::int64_t>> pads = {
      {1, 1, 1, 1}, {0, 1, 0, 1}, {2, 0, 3, 1}, {7, 7, 5, 5}};
  for (const auto& p : pads) {
    const at::Tensor expected = at::pad(x, {p[0], p[1], p[2], p[3]}, "circular");
    for (const bool channels_last : {false, true}) {
      const at::Tensor in = channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
      const at::Tensor got = gd::models::circular_pad(in, p[0], p[1], p[2], p[3]);
      EXPECT_TRUE(at::equal(got, expected))
          << p[0] << p[1] << p[2] << p[3] << " channels-last " << channels_last;
      EXPECT_EQ(got.is_contiguous(at::MemoryFormat::ChannelsLast), channels_last);
    }
  }
  // Shapes where the layout is ambiguous (one image, one channel, 1x1) and a strided view.
  for (const at::Tensor& odd :
       {at::arange(1 * 3 * 4 * 6, at::kFloat).reshape({1, 3, 4, 6}),
        at::arange(2 * 1 * 4 * 6, at::kFloat).reshape({2, 1, 4, 6}),
        at::arange(3, at::kFloat).reshape({1, 3, 1, 1}), x.narrow(3, 1, 5).narrow(1, 1, 2)}) {
    for (const bool channels_last : {false, true}) {
      const at::Tensor in = channels_last ? odd.contiguous(at::MemoryFormat::ChannelsLast) : odd;
      EXPECT_TRUE(at::equal(gd::models::circular_pad(in, 1, 1, 1, 1),
                            at::pad(odd, {1, 1, 1, 1}, "circular")))
          << odd.sizes() << " channels-last " << channels_last;
    }
  }
  EXPECT_THROW(gd::models::circular_pad(x, 8, 0, 0, 0), gd::Error);
  EXPECT_THROW(gd::models::circular_pad(x, 0, 0, 6, 0), gd::Error);
}

TEST(UNet2DConfig, ParsesFixture) {
  const UNet2DConfig c = fixture_config();
  EXPECT_EQ(c.sample_height, 16);
  EXPECT_EQ(c.sample_width, 16);
  EXPECT_EQ(c.block_out_channels, (std::vector<std::int64_t>{16, 32}));
  EXPECT_EQ(c.down_blocks, (std::vector<UNet2DBlock>{UNet2DBlock::Plain, UNet2DBlock::Attention}));
  EXPECT_EQ(c.up_blocks, (std::vector<UNet2DBlock>{UNet2DBlock::Attention, UNet2DBlock::Plain}));
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.norm_num_groups, 8);
  EXPECT_EQ(c.attention_head_dim, std::optional<std::int64_t>(8));
  EXPECT_EQ(c.attention_heads(32), 4);
  EXPECT_EQ(c.time_embed_dim(), 64);
  EXPECT_EQ(c.downsampling_factor(), 2);
  EXPECT_EQ(c.mid_attention_groups(), std::optional<std::int64_t>(8));
  EXPECT_TRUE(c.flip_sin_to_cos);
  EXPECT_FALSE(describe_unet2d(c).empty());
}

TEST(UNet2DConfig, AbsentKeysTakeDiffusersDefaults) {
  const UNet2DConfig c = parse_unet2d_config("{}", "config.json");
  EXPECT_EQ(c.sample_height, 0);
  EXPECT_EQ(c.in_channels, 3);
  EXPECT_EQ(c.out_channels, 3);
  EXPECT_EQ(c.block_out_channels, (std::vector<std::int64_t>{224, 448, 672, 896}));
  EXPECT_EQ(c.down_blocks.size(), 4u);
  EXPECT_EQ(c.down_blocks[0], UNet2DBlock::Plain);
  EXPECT_EQ(c.up_blocks[3], UNet2DBlock::Plain);
  EXPECT_EQ(c.layers_per_block, 2);
  EXPECT_EQ(c.norm_num_groups, 32);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-5);
  EXPECT_EQ(c.attention_head_dim, std::optional<std::int64_t>(8));
  EXPECT_TRUE(c.flip_sin_to_cos);
  EXPECT_DOUBLE_EQ(c.freq_shift, 0.0);
  EXPECT_EQ(c.downsample_padding, 1);
  EXPECT_TRUE(c.mid_block);
  EXPECT_TRUE(c.add_attention);
  EXPECT_EQ(c.time_embed_dim(), 896);
}

TEST(UNet2DConfig, ParsesSecondConfig) {
  const UNet2DConfig c = parse_unet2d_config(kSecondConfig, "second.json");
  EXPECT_EQ(c.sample_height, 16);
  EXPECT_EQ(c.sample_width, 24);
  EXPECT_TRUE(c.center_input_sample);
  EXPECT_DOUBLE_EQ(c.freq_shift, 1.0);
  EXPECT_FALSE(c.flip_sin_to_cos);
  EXPECT_EQ(c.downsample_type, UNet2DResample::Resnet);
  EXPECT_EQ(c.upsample_type, UNet2DResample::Resnet);
  EXPECT_EQ(c.resnet_time_scale_shift, UNet2DTimeNorm::ScaleShift);
  EXPECT_FALSE(c.attention_head_dim.has_value());
  EXPECT_EQ(c.attention_heads(24), 1);
  EXPECT_EQ(c.attention_dim_head(24), 24);
  EXPECT_FALSE(c.add_attention);
  EXPECT_EQ(c.time_embed_dim(), 48);
  EXPECT_EQ(c.downsampling_factor(), 4);
  EXPECT_FALSE(c.mid_attention_groups().has_value());  // scale_shift: no GroupNorm
}

TEST(UNet2DConfig, AcceptsAliasesAndNulls) {
  // "UNetRes" prefixes are stripped by diffusers; null resample types mean "conv"; "swish"
  // is SiLU; null mid_block_type removes the mid block.
  const UNet2DConfig c = parse_unet2d_config(R"({
    "block_out_channels": [32, 64], "norm_num_groups": 32,
    "down_block_types": ["UNetResDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UNetResUpBlock2D"],
    "downsample_type": null, "upsample_type": null, "act_fn": "swish",
    "mid_block_type": null, "time_embedding_dim": null, "attn_norm_num_groups": 16
  })",
                                             "c");
  EXPECT_EQ(c.down_blocks[0], UNet2DBlock::Plain);
  EXPECT_EQ(c.up_blocks[1], UNet2DBlock::Plain);
  EXPECT_EQ(c.downsample_type, UNet2DResample::Conv);
  EXPECT_EQ(c.act_fn, UNet2DActivation::SiLU);
  EXPECT_FALSE(c.mid_block);
  EXPECT_EQ(c.time_embed_dim(), 128);
  EXPECT_EQ(c.mid_attention_groups(), std::optional<std::int64_t>(16));
}

TEST(UNet2DConfig, InvalidJsonIsRefused) {
  expect_error([] { parse_unet2d_config("{\"in_channels\": 3,", "model/config.json"); },
               {"model/config.json", "invalid JSON"});
  expect_error([] { parse_unet2d_config("[1, 2]", "config.json"); }, {"JSON object"});
}

TEST(UNet2DConfig, UnknownBlockTypeIsNamed) {
  expect_error(
      [] {
        parse_unet2d_config(
            config_with("down_block_types", "[\"DownBlock2D\", \"CrossAttnDownBlock2D\"]"),
            "config.json");
      },
      {"config.json", "down_block_types[1]", "CrossAttnDownBlock2D", "not supported"});
  expect_error(
      [] {
        parse_unet2d_config(config_with("up_block_types", "[\"AttnUpBlock2D\", \"SkipUpBlock2D\"]"),
                            "c");
      },
      {"up_block_types[1]", "SkipUpBlock2D"});
  expect_error(
      [] {
        parse_unet2d_config(config_with("mid_block_type", "\"UNetMidBlock2DCrossAttn\""), "c");
      },
      {"mid_block_type"});
}

TEST(UNet2DConfig, MismatchedLengthsAreNamed) {
  expect_error([] { parse_unet2d_config(config_with("block_out_channels", "[16, 32, 32]"), "c"); },
               {"down_block_types", "3"});
  expect_error([] { parse_unet2d_config(config_with("up_block_types", "[\"UpBlock2D\"]"), "c"); },
               {"up_block_types", "1 entries"});
  expect_error([] { parse_unet2d_config(config_with("block_out_channels", "[]"), "c"); },
               {"block_out_channels"});
}

TEST(UNet2DConfig, BadTypesAndValuesAreNamed) {
  expect_error([] { parse_unet2d_config(config_with("layers_per_block", "\"2\""), "c"); },
               {"layers_per_block", "integer"});
  expect_error([] { parse_unet2d_config(config_with("layers_per_block", "1.5"), "c"); },
               {"layers_per_block", "integer"});
  expect_error([] { parse_unet2d_config(config_with("flip_sin_to_cos", "1"), "c"); },
               {"flip_sin_to_cos", "true or false"});
  expect_error([] { parse_unet2d_config(config_with("block_out_channels", "[16, \"32\"]"), "c"); },
               {"block_out_channels[1]"});
  expect_error([] { parse_unet2d_config(config_with("block_out_channels", "[16, -32]"), "c"); },
               {"block_out_channels[1]", "-32"});
  expect_error([] { parse_unet2d_config(config_with("sample_size", "[16]"), "c"); },
               {"sample_size"});
  expect_error([] { parse_unet2d_config(config_with("downsample_type", "\"fir\""), "c"); },
               {"downsample_type", "fir"});
  expect_error(
      [] { parse_unet2d_config(config_with("resnet_time_scale_shift", "\"spatial\""), "c"); },
      {"resnet_time_scale_shift", "spatial"});
  expect_error([] { parse_unet2d_config(config_with("act_fn", "\"tanh\""), "c"); },
               {"act_fn", "tanh"});
  expect_error([] { parse_unet2d_config(config_with("in_channels", "0"), "c"); },
               {"in_channels", "0"});
  expect_error(
      [] { parse_unet2d_config(config_with("_class_name", "\"UNet2DConditionModel\""), "c"); },
      {"_class_name", "UNet2DConditionModel"});
}

TEST(UNet2DConfig, UnsupportedFeaturesAreNamed) {
  expect_error([] { parse_unet2d_config(config_with("time_embedding_type", "\"fourier\""), "c"); },
               {"time_embedding_type", "fourier", "not supported"});
  expect_error([] { parse_unet2d_config(config_with("class_embed_type", "\"timestep\""), "c"); },
               {"class_embed_type", "timestep", "only class_embed_type null"});
}

TEST(UNet2DConfig, GroupAndHeadDivisibilityIsChecked) {
  expect_error([] { parse_unet2d_config(config_with("norm_num_groups", "12"), "c"); },
               {"block_out_channels[0]", "16", "norm_num_groups = 12"});
  expect_error([] { parse_unet2d_config(config_with("attention_head_dim", "64"), "c"); },
               {"attention_head_dim", "64", "32 channels"});
  expect_error([] { parse_unet2d_config(config_with("attn_norm_num_groups", "5"), "c"); },
               {"attn_norm_num_groups", "5"});
}

// ---- a second architecture
// ------------------------------------------------------------------------

TEST(DiffusersUNet, SecondConfigHasDiffusersParameters) {
  const UNet2DConfig config = parse_unet2d_config(kSecondConfig, "second.json");
  DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));

  // Widths 8, 16, 24; T = 48 (time_embedding_dim); scale_shift doubles time_emb_proj.
  const std::int64_t T = 48;
  auto res = [&](std::int64_t in, std::int64_t out) { return resnet_params(in, out, T, true); };
  const std::int64_t expected =
      (9 * 2 * 8 + 8)  // conv_in
      + (8 * T + T) +
      (T * T + T)  // time_embedding.linear_1, linear_2
      // down 0: DownBlock2D 8 -> 8, 2 resnets, conv downsample
      + res(8, 8) + res(8, 8) +
      (9 * 8 * 8 + 8)
      // down 1: AttnDownBlock2D 8 -> 16, 2 resnets + 2 attentions, resnet downsample
      + res(8, 16) + res(16, 16) + 2 * attention_params(16) +
      res(16, 16)
      // down 2: AttnDownBlock2D 16 -> 24, no downsample (last stage)
      + res(16, 24) + res(24, 24) +
      2 * attention_params(24)
      // mid: two resnets, no attention (add_attention false)
      + 2 * res(24, 24)
      // up 0: AttnUpBlock2D 24, prev 24, skips 24, 24, 16; 3 attentions; resnet upsample
      + res(24 + 24, 24) + res(24 + 24, 24) + res(24 + 16, 24) + 3 * attention_params(24) +
      res(24, 24)
      // up 1: AttnUpBlock2D 16, prev 24, skips 16, 16, 8; resnet upsample
      + res(24 + 16, 16) + res(16 + 16, 16) + res(16 + 8, 16) + 3 * attention_params(16) +
      res(16, 16)
      // up 2: UpBlock2D 8, prev 16, skips 8, 8, 8; no upsample (last stage)
      + res(16 + 8, 8) + res(8 + 8, 8) + res(8 + 8, 8) + 2 * 8 +
      (9 * 8 * 4 + 4);  // conv_norm_out, conv_out
  EXPECT_EQ(unet.params()->count(), expected);
  // diffusers' UNet2DModel(**kSecondConfig) has 204,764 parameters in 334 tensors (counted
  // with diffusers 58eb52c0 while writing this test; its forward matched ours bitwise).
  EXPECT_EQ(unet.params()->count(), 204764);

  // Tensors: conv_in 2, time 4, resnets 10 each (12 with conv_shortcut), attentions 10 each,
  // conv downsample 2, conv_norm_out 2, conv_out 2. Resnets: 2+3+2 down (the resnet
  // downsampler included), 2 mid, 4+4+3 up = 20. Those whose width changes have a shortcut:
  // 8->16, 16->24 down; 48->24 twice, 40->24, 40->16, 32->16, 24->16, 24->8, 16->8 twice up = 11.
  // Attentions: 2+2 down, 3+3 up = 10.
  std::set<std::string> names;
  std::int64_t shortcuts = 0;
  for (const auto& [name, tensor] : unet.params()->all()) {
    names.insert(name);
    if (name.find("conv_shortcut.weight") != std::string::npos) ++shortcuts;
  }
  EXPECT_EQ(shortcuts, 11);
  EXPECT_EQ(unet.params()->all().size(), 2u + 4 + 20 * 10 + 2 * shortcuts + 10 * 10 + 2 + 4);

  // Names as diffusers' state dict has them.
  for (const char* name : {
           "down_blocks.0.downsamplers.0.conv.weight",
           "down_blocks.1.downsamplers.0.conv1.weight",
           "down_blocks.1.downsamplers.0.time_emb_proj.weight",
           "down_blocks.1.attentions.1.group_norm.weight",
           "down_blocks.2.attentions.0.to_out.0.bias",
           "mid_block.resnets.1.norm2.bias",
           "up_blocks.0.upsamplers.0.conv2.weight",
           "up_blocks.1.resnets.2.conv_shortcut.bias",
           "up_blocks.1.attentions.2.to_k.weight",
           "up_blocks.2.resnets.2.conv1.weight",
       }) {
    EXPECT_TRUE(names.count(name)) << name;
  }
  for (const char* name :
       {"mid_block.attentions.0.to_q.weight", "down_blocks.2.downsamplers.0.conv.weight",
        "up_blocks.2.upsamplers.0.conv.weight", "down_blocks.1.downsamplers.0.conv.weight"}) {
    EXPECT_FALSE(names.count(name)) << name;
  }
  // scale_shift: time_emb_proj is twice the block width.
  for (const auto& [name, tensor] : unet.params()->all()) {
    if (name == "up_blocks.1.resnets.0.time_emb_proj.weight") {
      EXPECT_EQ(tensor.sizes().vec(), (std::vector<std::int64_t>{32, T}));
    }
    if (name == "down_blocks.2.attentions.0.to_q.weight") {  // one head of 24
      EXPECT_EQ(tensor.sizes().vec(), (std::vector<std::int64_t>{24, 24}));
    }
  }
}

TEST(DiffusersUNet, SecondConfigRuns) {
  const UNet2DConfig config = parse_unet2d_config(kSecondConfig, "second.json");
  DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));
  // Small random weights; GroupNorm weights near 1 so activations stay in range.
  at::manual_seed(7);
  for (const auto& [name, tensor] : unet.params()->all()) {
    at::Tensor p = tensor;
    p.copy_(at::randn(p.sizes()) * 0.05);
    if (name.find("norm") != std::string::npos && name.find(".weight") != std::string::npos)
      p.add_(1.0);
  }
  const at::Tensor x = at::randn({2, 2, 16, 24});
  const at::Tensor out = unet.forward(x, at::tensor({3.0, 250.5}), {});
  EXPECT_EQ(out.sizes().vec(), (std::vector<std::int64_t>{2, 4, 16, 24}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  // Batch elements are independent: running one alone gives the same answer.
  const at::Tensor one = unet.forward(x.slice(0, 1, 2), at::tensor({250.5}), {});
  EXPECT_LE(max_abs_diff(one, out.slice(0, 1, 2)), 1e-5);
  // Other sizes work as long as they are multiples of 4.
  EXPECT_EQ(unet.forward(at::randn({1, 2, 8, 12}), at::tensor({10}), {}).sizes().vec(),
            (std::vector<std::int64_t>{1, 4, 8, 12}));
}

TEST(DiffusersUNet, MidAttentionGroupNormFollowsDiffusersRule) {
  // With scale_shift and no attn_norm_num_groups the mid attention has no GroupNorm;
  // attn_norm_num_groups adds one; the down/up attentions always have one.
  auto has = [](const UNet2DConfig& c, const std::string& key) {
    DiffusersUNet unet(c, at::TensorOptions().dtype(at::kFloat));
    for (const auto& [name, tensor] : unet.params()->all()) {
      if (name == key) return true;
    }
    return false;
  };
  UNet2DConfig c =
      parse_unet2d_config(config_with("resnet_time_scale_shift", "\"scale_shift\""), "c");
  EXPECT_FALSE(has(c, "mid_block.attentions.0.group_norm.weight"));
  EXPECT_TRUE(has(c, "down_blocks.1.attentions.0.group_norm.weight"));
  EXPECT_TRUE(has(c, "mid_block.attentions.0.to_q.weight"));
  c.attn_norm_num_groups = 4;
  EXPECT_TRUE(has(c, "mid_block.attentions.0.group_norm.weight"));
}

TEST(DiffusersUNet, HeadDimThatDoesNotDivideChannels) {
  // diffusers uses heads = channels // attention_head_dim: 30 channels with head dim 16 give one
  // head, and q/k/v project 30 -> 16. This configuration (GELU, odd group counts, a mid
  // attention GroupNorm of its own) has 149,265 parameters in 144 tensors in diffusers.
  const UNet2DConfig config = parse_unet2d_config(R"({
    "sample_size": 16, "block_out_channels": [15, 30], "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "norm_num_groups": 5, "attention_head_dim": 16, "attn_norm_num_groups": 3,
    "act_fn": "gelu", "mid_block_scale_factor": 2.0, "freq_shift": 0.5
  })",
                                                  "third.json");
  DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));
  EXPECT_EQ(unet.params()->count(), 149265);
  EXPECT_EQ(unet.params()->all().size(), 144u);
  for (const auto& [name, tensor] : unet.params()->all()) {
    if (name == "mid_block.attentions.0.to_q.weight" ||
        name == "up_blocks.0.attentions.1.to_v.weight") {
      EXPECT_EQ(tensor.sizes().vec(), (std::vector<std::int64_t>{16, 30})) << name;
    }
    if (name == "mid_block.attentions.0.to_out.0.weight") {
      EXPECT_EQ(tensor.sizes().vec(), (std::vector<std::int64_t>{30, 16})) << name;
    }
    if (name == "mid_block.attentions.0.group_norm.weight") {
      EXPECT_EQ(tensor.size(0), 30);
    }
  }
  // The time embedding of an odd width gets a zero column at the end; 15 channels here.
  const at::Tensor emb = unet.timestep_embedding(at::tensor({0.0f, 500.0f}));
  ASSERT_EQ(emb.sizes().vec(), (std::vector<std::int64_t>{2, 15}));
  EXPECT_EQ(emb.select(1, 14).abs().max().item<float>(), 0.0f);
  // flip_sin_to_cos: cos first, so t = 0 starts with seven ones then seven zeros.
  EXPECT_EQ(emb[0].slice(0, 0, 7).min().item<float>(), 1.0f);
  EXPECT_EQ(emb[0].slice(0, 7, 14).abs().max().item<float>(), 0.0f);
  const at::Tensor out = unet.forward(at::zeros({1, 3, 16, 16}), at::tensor({5}), {});
  EXPECT_EQ(out.sizes().vec(), (std::vector<std::int64_t>{1, 3, 16, 16}));
}
