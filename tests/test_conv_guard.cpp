// The convolution guard (models/conv_guard.h): the comparison it decides by, one check per
// configuration per process, and rerouted layers computing what the default kernels compute
// where those are right. Whether this machine's kernels are right is the sweep's business
// (tests/conv_sweep.cpp); in our CI (GD_CONV_SWEEP_STRICT) nothing may be rerouted.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/conv_guard.h"
#include "models/diffusers_config.h"
#include "models/diffusers_unet.h"
#include "models/model_loader.h"
#include "tests/test_util.h"

using gd::models::LoadedModel;
using gd::models::LoadOptions;
using gd::test::data_path;
using gd::test::max_abs_diff;

namespace {

bool strict() {
  const char* s = std::getenv("GD_CONV_SWEEP_STRICT");
  return s && std::string(s) == "1";
}

int conv_weights(const LoadedModel& model) {
  int n = 0;
  for (const auto& [name, w] : model.network->params()->all()) n += w.dim() == 4 ? 1 : 0;
  return n;
}

// Every convolution weight rerouted to LibTorch's own kernel.
gd::models::ConvRoutes all_rerouted(const LoadedModel& model) {
  gd::models::ConvRoutes routes;
  for (const auto& [name, w] : model.network->params()->all()) {
    if (w.dim() == 4) routes.add(w);
  }
  return routes;
}

}  // namespace

TEST(ConvGuard, OutputsAgreeOnlyWithinTheDtypesPrecision) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const at::Tensor want = at::randn({2, 8, 5, 5}, gen);  // [N, C, H, W]
  const double scale = want.abs().max().item<double>();
  EXPECT_TRUE(gd::models::outputs_agree(want + 1e-4 * scale, want, at::kFloat));
  EXPECT_FALSE(gd::models::outputs_agree(want + 3e-3 * scale, want, at::kFloat));
  EXPECT_TRUE(gd::models::outputs_agree(want + 3e-3 * scale, want, at::kBFloat16));
  EXPECT_FALSE(gd::models::outputs_agree(want * 1.3, want, at::kBFloat16));
  at::Tensor nan = want.clone();
  nan[1][3][2][2] = std::nan("");
  EXPECT_FALSE(gd::models::outputs_agree(nan, want, at::kFloat));
  EXPECT_FALSE(gd::models::outputs_agree(want.narrow(1, 0, 4), want, at::kFloat)) << "shapes";
}

TEST(ConvGuard, EachConfigurationIsCheckedOnceAProcess) {
  const LoadedModel first = gd::models::load_model(data_path("diffusers-tiny/model"));
  const gd::models::ConvCheckReport& r = first.kernel_check;
  ASSERT_TRUE(r.ran);
  EXPECT_EQ(r.layers, conv_weights(first));
  EXPECT_GT(r.configurations, 0);
  EXPECT_EQ(r.checked + r.from_disk, r.configurations)
      << "nothing was known in this process before the first load (the disk cache may know)";
  const LoadedModel again = gd::models::load_model(data_path("diffusers-tiny/model"));
  EXPECT_EQ(again.kernel_check.configurations, r.configurations);
  EXPECT_EQ(again.kernel_check.checked, 0) << "the second load must use what the first learned";
  EXPECT_EQ(again.kernel_check.from_disk, 0) << "known in this process: no disk read";
  std::printf("diffusers-tiny: %d configurations, %d of %d layers rerouted, %.3f s\n",
              r.configurations, r.rerouted, r.layers, r.seconds);
  if (strict()) EXPECT_EQ(r.rerouted, 0) << "our root's oneDNN must pass the check";
  ::setenv("GD_NO_KERNEL_CHECK", "1", 1);
  EXPECT_FALSE(gd::models::load_model(data_path("diffusers-tiny/model")).kernel_check.ran);
  ::unsetenv("GD_NO_KERNEL_CHECK");
  LoadOptions off;
  off.kernel_check = false;
  EXPECT_FALSE(gd::models::load_model(data_path("diffusers-tiny/model"), off).kernel_check.ran);
}

// Rerouting is only safe if LibTorch's own kernel computes the same convolution: on a stack
// whose default kernels are right, every layer rerouted gives the same outputs, for both
// network families, with zero and circular padding, in float32 and bfloat16.
TEST(ConvGuard, ReroutedLayersComputeTheSame) {
  at::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  for (const char* path : {"diffusers-tiny/model", "lucidrains-tiny/model-1.pt"}) {
    for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(std::string(path) + (dtype == at::kFloat ? " fp32" : " bf16"));
      LoadOptions options;
      options.kernel_check = false;
      options.dtype = dtype;
      LoadedModel model = gd::models::load_model(data_path(path), options);
      const at::Tensor x = at::randn({2, 3, 16, 16}, gen).to(dtype);  // [N, C, H, W]
      const at::Tensor t = at::tensor({10, 60}, at::kLong);
      for (const gd::core::Padding padding :
           {gd::core::Padding::Zeros, gd::core::Padding::Circular}) {
        gd::core::Conditioning cond;
        cond.padding = padding;
        model.network->set_conv_routes({});
        const at::Tensor fast = model.network->forward(x, t, cond).to(at::kFloat);
        model.network->set_conv_routes(all_rerouted(model));
        const at::Tensor own = model.network->forward(x, t, cond).to(at::kFloat);
        const double tolerance =
            dtype == at::kFloat ? 1e-4 : 5e-2 * fast.abs().max().item<double>();
        EXPECT_LE(max_abs_diff(own, fast), tolerance);
      }
    }
  }
}

namespace {

// A UNet2DModel with 20- and 40-channel convolutions, contiguous: the widths whose oneDNN
// kernels Debian 13's libdnnl 3.7.2 gets wrong (docs/numerics.md).
gd::models::UNet2DConfig odd_width_config() {
  gd::models::UNet2DConfig c;
  c.block_out_channels = {20, 40};
  c.down_blocks = {gd::models::UNet2DBlock::Plain, gd::models::UNet2DBlock::Plain};
  c.up_blocks = {gd::models::UNet2DBlock::Plain, gd::models::UNet2DBlock::Plain};
  c.layers_per_block = 1;
  c.norm_num_groups = 4;
  c.add_attention = false;
  c.sample_height = c.sample_width = 16;
  c.validate("odd widths");
  return c;
}

}  // namespace

// The network in float32 with the guard's routes against the same network in float64, where
// every convolution takes LibTorch's own kernel: equal to float32 precision. Without the guard
// this fails on a stack with wrong kernels for these widths (measured with libdnnl 3.7.2:
// docs/numerics.md).
TEST(ConvGuard, OddWidthNetworkMatchesFloat64) {
  at::NoGradGuard no_grad;
  const gd::models::UNet2DConfig config = odd_width_config();
  gd::models::DiffusersUNet net(config, at::TensorOptions().dtype(at::kFloat));
  gd::models::DiffusersUNet exact(config, at::TensorOptions().dtype(at::kDouble));
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto& params = net.params()->all();
  const auto& exact_params = exact.params()->all();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i].second;
    const double fan_in = p.dim() > 1 ? static_cast<double>(p.numel() / p.size(0)) : 1.0;
    p.copy_(at::randn(p.sizes(), gen) / std::sqrt(fan_in));
    exact_params[i].second.copy_(p);
  }
  gd::models::ConvCheckReport report;
  net.set_conv_routes(
      gd::models::check_convolutions(*net.params(), /*channels_last=*/false, &report));
  std::printf("odd widths: %d configurations, %d of %d layers rerouted\n", report.configurations,
              report.rerouted, report.layers);
  for (const std::int64_t batch : {1, 2}) {
    const at::Tensor x = at::randn({batch, 3, 16, 16}, gen);  // [N, C, H, W]
    const at::Tensor t = at::full({batch}, 30, at::kLong);
    const at::Tensor want = exact.forward(x.to(at::kDouble), t, {});
    const at::Tensor got = net.forward(x, t, {});
    EXPECT_LE(max_abs_diff(got, want), 1e-4 * (want.abs().max().item<double>() + 1))
        << "batch " << batch;
  }
}

// A TorchScript module with 20-channel convolutions (tools/make_torchscript_fixture.py --width
// 20), at batch 2 and 48x48, which LibTorch sends to oneDNN, matches PyTorch's output computed
// on its own kernels. Its layers cannot be rerouted one by one: on a oneDNN that computes them
// wrongly (trixie's 3.7.2) the check turns oneDNN off for the process, and says so.
TEST(ConvGuard, TorchScriptModuleWithOddWidthsMatchesPyTorch) {
  if (!gd::models::kernel_check_wanted()) GTEST_SKIP() << "GD_NO_KERNEL_CHECK is set";
  at::NoGradGuard no_grad;
  const LoadedModel model = gd::models::load_model(data_path("torchscript-odd"));
  const gd::models::ConvCheckReport& r = model.kernel_check;
  EXPECT_TRUE(r.ran) << "TorchScript modules are checked too";
  EXPECT_EQ(r.layers, 4) << "conv_in, down, up (transposed, checked as a convolution), conv_out";
  EXPECT_EQ(r.onednn_disabled, r.rerouted > 0);
  std::printf("torchscript-odd: %d of %d layers disagree%s\n", r.rerouted, r.layers,
              r.onednn_disabled ? ": oneDNN turned off" : "");
  const std::string file = "torchscript-odd/reference.safetensors";
  const at::Tensor x = gd::test::fixture_tensor(file, "x");  // [2, 3, 48, 48]
  const at::Tensor out = model.network->forward(x, gd::test::fixture_tensor(file, "t"), {});
  EXPECT_LE(max_abs_diff(out, gd::test::fixture_tensor(file, "out")), 1e-4);
}
