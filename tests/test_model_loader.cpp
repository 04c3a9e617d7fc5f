// load_model() end to end: format detection, each format's network against its reference
// outputs, and the neutral description.
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>
#include <torch/csrc/jit/passes/tensorexpr_fuser.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/error.h"
#include "models/model_loader.h"
#include "tests/test_util.h"

using gd::models::CheckpointFormat;
using gd::models::LoadedModel;
using gd::models::LoadOptions;
using gd::test::data_path;
using gd::test::fixture_tensor;
using gd::test::max_abs_diff;

TEST(DetectFormat, RecognisesEachFixture) {
  EXPECT_EQ(gd::models::detect_format(data_path("diffusers-tiny/model")),
            CheckpointFormat::Diffusers);
  EXPECT_EQ(gd::models::detect_format(data_path("lucidrains-tiny/model-1.pt")),
            CheckpointFormat::DdpmPytorch);
  EXPECT_EQ(gd::models::detect_format(data_path("lucidrains-tiny")), CheckpointFormat::DdpmPytorch);
  EXPECT_EQ(gd::models::detect_format(data_path("torchscript-tiny")),
            CheckpointFormat::TorchScript);
}

TEST(DetectFormat, RefusesWhatIsNotAModel) {
  EXPECT_THROW(gd::models::detect_format(data_path("no-such-model")), gd::Error);
  EXPECT_THROW(gd::models::detect_format(data_path("diffusers-tiny/model/config.json")), gd::Error);
  EXPECT_THROW(gd::models::detect_format(data_path("diffusers-tiny/unet.safetensors")), gd::Error);
  EXPECT_THROW(gd::models::detect_format(data_path("torchscript-tiny/model.pt")), gd::Error);
  EXPECT_THROW(gd::models::detect_format(""), gd::Error);
}

TEST(LoadModel, DiffusersMatchesReference) {
  LoadedModel model = gd::models::load_model(data_path("diffusers-tiny/model"));
  EXPECT_EQ(model.info.parameter_count, 177427);
  EXPECT_EQ(model.info.native_width, 16);
  EXPECT_EQ(model.info.downsampling_factor, 2);
  EXPECT_EQ(model.schedule.num_train_timesteps, 100);
  const std::string file = "diffusers-tiny/unet.safetensors";
  at::Tensor x = fixture_tensor(file, "x");
  at::Tensor out = model.network->forward(x, fixture_tensor(file, "t"), {});
  EXPECT_LE(max_abs_diff(out, fixture_tensor(file, "out")), 1e-4);
}

TEST(LoadModel, DdpmTrainerCheckpointMatchesReferenceForBothWeights) {
  for (const char* weights : {"ema", "model"}) {
    LoadOptions options;
    options.weights = weights;
    LoadedModel model = gd::models::load_model(data_path("lucidrains-tiny/model-1.pt"), options);
    EXPECT_EQ(model.info.weights, weights);
    EXPECT_EQ(model.info.parameter_count, 242003);
    EXPECT_EQ(model.info.prediction_type, gd::core::PredictionType::V);
    ASSERT_TRUE(model.ddpm.has_value());
    EXPECT_EQ(model.ddpm->beta_schedule, "sigmoid");
    const std::string file = std::string("lucidrains-tiny/unet_") + weights + ".safetensors";
    at::Tensor out =
        model.network->forward(fixture_tensor(file, "x"), fixture_tensor(file, "t"), {});
    EXPECT_LE(max_abs_diff(out, fixture_tensor(file, "out")), 1e-4) << weights;
  }
}

TEST(LoadModel, TorchScriptMatchesPyTorch) {
  LoadedModel model = gd::models::load_model(data_path("torchscript-tiny"));
  EXPECT_EQ(model.info.format, CheckpointFormat::TorchScript);
  EXPECT_EQ(model.info.downsampling_factor, 2);
  EXPECT_GT(model.info.parameter_count, 0);
  const std::string file = "torchscript-tiny/reference.safetensors";
  at::Tensor out = model.network->forward(fixture_tensor(file, "x"), fixture_tensor(file, "t"), {});
  EXPECT_LE(max_abs_diff(out, fixture_tensor(file, "out")), 1e-5);
}

// A scripted module called again and again, under no-grad, with changing batch sizes: the
// calls where LibTorch's profiling executor specialises and fuses the graph (the second and
// later) must return, with the same numbers as the first. The fuser that hung on our CPUs is off.
TEST(LoadModel, TorchScriptRepeatedCallsFinish) {
  LoadedModel model = gd::models::load_model(data_path("torchscript-tiny"));
  EXPECT_FALSE(torch::jit::tensorExprFuserEnabled());
  const std::string file = "torchscript-tiny/reference.safetensors";
  const at::Tensor x = fixture_tensor(file, "x"), t = fixture_tensor(file, "t");
  const at::Tensor expected = fixture_tensor(file, "out");
  std::atomic<bool> done{false};
  std::thread watchdog([&done] {
    for (int i = 0; i < 1200 && !done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!done) {
      std::fprintf(stderr, "TorchScript calls still running after 120 s: hung\n");
      std::_Exit(1);
    }
  });
  at::NoGradGuard no_grad;
  for (int round = 0; round < 4; ++round) {
    for (std::int64_t batch : {1, 2, 3, 1, 4}) {
      const at::Tensor xb = x.narrow(0, 0, 1).expand({batch, -1, -1, -1}).contiguous();
      const at::Tensor tb = t.narrow(0, 0, 1).expand({batch}).contiguous();
      const at::Tensor out = model.network->forward(xb, tb, {});
      EXPECT_LE(max_abs_diff(out, expected.narrow(0, 0, 1).expand_as(out)), 1e-5)
          << "batch " << batch;
    }
  }
  done = true;
  watchdog.join();
}

TEST(LoadModel, TorchScriptForwardErrorsAreOneLine) {
  LoadedModel model = gd::models::load_model(data_path("torchscript-tiny"));
  try {
    model.network->forward(at::zeros({1, 5, 8, 8}), at::zeros({1}, at::kLong), {});
    FAIL() << "a 5-channel input must be refused";
  } catch (const gd::Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

TEST(LoadModel, WeightsOptionIsValidated) {
  LoadOptions options;
  options.weights = "best";
  EXPECT_THROW(gd::models::load_model(data_path("lucidrains-tiny/model-1.pt"), options), gd::Error);
  options.weights = "ema";
  EXPECT_THROW(gd::models::load_model(data_path("diffusers-tiny/model"), options), gd::Error);
}

TEST(ModelInfo, DescribesInTextAndJson) {
  LoadedModel model = gd::models::load_model(data_path("diffusers-tiny/model"));
  const std::string text = gd::models::describe_text(model.info);
  EXPECT_NE(text.find("177,427"), std::string::npos) << text;
  EXPECT_NE(text.find("epsilon"), std::string::npos) << text;
  const std::string json = gd::models::describe_json(model.info);
  EXPECT_NE(json.find("\"parameter_count\": 177427"), std::string::npos) << json;
}

// Channels-last parameters are made in that layout and filled once (models/param_store.h): the
// same values as the contiguous load, every 4-D weight channels-last, for both network families.
TEST(LoadModel, ChannelsLastParametersHoldTheSameWeights) {
  for (const char* path : {"diffusers-tiny/model", "lucidrains-tiny/model-1.pt"}) {
    SCOPED_TRACE(path);
    gd::models::LoadOptions contiguous;
    contiguous.channels_last = false;
    contiguous.kernel_check = false;
    gd::models::LoadOptions last = contiguous;
    last.channels_last = true;
    const auto a = gd::models::load_model(data_path(path), contiguous);
    const auto b = gd::models::load_model(data_path(path), last);
    const auto& pa = a.network->params()->all();
    const auto& pb = b.network->params()->all();
    ASSERT_EQ(pa.size(), pb.size());
    int four_d = 0;
    for (std::size_t i = 0; i < pa.size(); ++i) {
      EXPECT_EQ(pa[i].first, pb[i].first);
      EXPECT_TRUE(at::equal(pa[i].second, pb[i].second)) << pa[i].first;
      EXPECT_TRUE(pa[i].second.is_contiguous()) << pa[i].first;
      if (pb[i].second.dim() == 4) {
        ++four_d;
        EXPECT_TRUE(pb[i].second.is_contiguous(at::MemoryFormat::ChannelsLast)) << pb[i].first;
      }
    }
    EXPECT_GT(four_d, 0);
  }
}
