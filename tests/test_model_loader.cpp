// load_model() end to end: format detection, each format's network against its reference
// outputs, and the neutral description.
#include <gtest/gtest.h>

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
