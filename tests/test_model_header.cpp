// read_model_info(): the description load_model gives, without reading the weights.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/model_header.h"
#include "models/model_loader.h"
#include "tests/test_files.h"

namespace fs = std::filesystem;

using gd::models::CheckpointFormat;
using gd::models::LoadOptions;
using gd::models::ModelInfo;
using gd::models::read_model_info;
using gd::test::data_path;
using gd::test::expect_error;

namespace {

// Every field but parameter_count and notes, which TorchScript folders cannot match.
void expect_same_description(const ModelInfo& header, const ModelInfo& loaded) {
  EXPECT_EQ(header.path, loaded.path);
  EXPECT_EQ(header.format, loaded.format);
  EXPECT_EQ(header.format_detail, loaded.format_detail);
  EXPECT_EQ(header.architecture, loaded.architecture);
  EXPECT_EQ(header.structure, loaded.structure);
  EXPECT_EQ(header.weights, loaded.weights);
  EXPECT_EQ(header.in_channels, loaded.in_channels);
  EXPECT_EQ(header.out_channels, loaded.out_channels);
  EXPECT_EQ(header.native_height, loaded.native_height);
  EXPECT_EQ(header.native_width, loaded.native_width);
  EXPECT_EQ(header.downsampling_factor, loaded.downsampling_factor);
  EXPECT_EQ(header.self_condition, loaded.self_condition);
  EXPECT_EQ(header.learned_variance, loaded.learned_variance);
  EXPECT_EQ(header.prediction_type, loaded.prediction_type);
  EXPECT_EQ(header.beta_schedule, loaded.beta_schedule);
  EXPECT_EQ(header.num_train_timesteps, loaded.num_train_timesteps);
  EXPECT_EQ(header.default_spacing, loaded.default_spacing);
  EXPECT_EQ(header.num_classes, loaded.num_classes);
  EXPECT_EQ(header.class_names, loaded.class_names);
  EXPECT_EQ(header.generate_guidance.scale, loaded.generate_guidance.scale);
  EXPECT_EQ(header.generate_guidance.below_timestep, loaded.generate_guidance.below_timestep);
}

void expect_same_info(const ModelInfo& header, const ModelInfo& loaded) {
  expect_same_description(header, loaded);
  EXPECT_EQ(header.parameter_count, loaded.parameter_count);
  EXPECT_EQ(header.notes, loaded.notes);
  // And so every printed form.
  EXPECT_EQ(gd::models::describe_text(header), gd::models::describe_text(loaded));
  EXPECT_EQ(gd::models::describe_json(header), gd::models::describe_json(loaded));
}

void expect_matches_load_model(const std::string& path, const LoadOptions& options = {}) {
  SCOPED_TRACE(path + (options.weights.empty() ? "" : " weights=" + options.weights));
  const ModelInfo header = read_model_info(path, options);
  const ModelInfo loaded = gd::models::load_model(path, options).info;
  expect_same_info(header, loaded);
}

// A temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "gd-model-header-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A copy of tests/data/<relative> (a folder) under `dir`.
fs::path copy_fixture(const std::string& relative, const fs::path& dir) {
  const fs::path to = dir / fs::path(relative).filename();
  fs::copy(data_path(relative), to, fs::copy_options::recursive);
  return to;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

// The first 8 + header-length bytes of a safetensors file.
std::uintmax_t safetensors_header_end(const fs::path& file) {
  const std::vector<std::uint8_t> bytes = gd::test::read_all(file.string());
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes.at(i);
  return 8 + n;
}

}  // namespace

// ---- the same description as load_model -------------------------------------------------------

TEST(ReadModelInfo, DiffusersFolderMatchesLoadModel) {
  expect_matches_load_model(data_path("diffusers-tiny/model"));
  EXPECT_EQ(read_model_info(data_path("diffusers-tiny/model")).parameter_count, 177427);
}

TEST(ReadModelInfo, DiffusersPipelineFolderMatchesLoadModel) {
  // model_index.json, unet/ (config + weights) and scheduler/ (scheduler_config.json).
  TempDir tmp;
  const fs::path pipeline = tmp.path() / "pipeline";
  fs::create_directories(pipeline / "scheduler");
  const fs::path unet = copy_fixture("diffusers-tiny/model", pipeline);
  fs::rename(unet, pipeline / "unet");
  fs::rename(pipeline / "unet" / "scheduler_config.json",
             pipeline / "scheduler" / "scheduler_config.json");
  write_file(pipeline / "model_index.json", "{\"_class_name\": \"DDPMPipeline\"}");
  expect_matches_load_model(pipeline.string());
  EXPECT_EQ(read_model_info(pipeline.string()).format_detail,
            "pipeline folder, safetensors weights");
  expect_matches_load_model((pipeline / "unet").string());  // its scheduler in ../scheduler/
}

TEST(ReadModelInfo, TrainerCheckpointMatchesLoadModelForBothWeights) {
  for (const char* weights : {"", "ema", "model"}) {
    LoadOptions options;
    options.weights = weights;
    expect_matches_load_model(data_path("lucidrains-tiny/model-1.pt"), options);
  }
  const ModelInfo info = read_model_info(data_path("lucidrains-tiny/model-1.pt"));
  EXPECT_EQ(info.parameter_count, 242003);
  EXPECT_EQ(info.weights, "ema");
  EXPECT_EQ(info.beta_schedule, "sigmoid");
  EXPECT_EQ(info.prediction_type, gd::core::PredictionType::V);
}

TEST(ReadModelInfo, TrainerResultsFolderMatchesLoadModel) {
  expect_matches_load_model(data_path("lucidrains-tiny"));
  EXPECT_EQ(read_model_info(data_path("lucidrains-tiny")).path,
            data_path("lucidrains-tiny/model-1.pt"));
}

TEST(ReadModelInfo, TrainerObjectiveOverrideMatchesLoadModel) {
  LoadOptions options;
  options.objective = "pred_x0";
  expect_matches_load_model(data_path("lucidrains-tiny/model-1.pt"), options);
  EXPECT_EQ(read_model_info(data_path("lucidrains-tiny/model-1.pt"), options).prediction_type,
            gd::core::PredictionType::Sample);
}

TEST(ReadModelInfo, BundledModelMatchesLoadModel) {
  expect_matches_load_model(GD_BUNDLED_MODEL_DIR);
  const ModelInfo info = read_model_info(GD_BUNDLED_MODEL_DIR);
  EXPECT_GT(info.num_classes, 0);
  EXPECT_EQ(static_cast<std::int64_t>(info.class_names.size()), info.num_classes);
  EXPECT_TRUE(info.generate_guidance.active());
}

TEST(ReadModelInfo, TorchScriptFolderMatchesLoadModelButForTheParameterCount) {
  const std::string path = data_path("torchscript-tiny");
  const ModelInfo header = read_model_info(path);
  const ModelInfo loaded = gd::models::load_model(path).info;
  expect_same_description(header, loaded);
  // The count needs the module, which is not loaded: 0, and a note that says so.
  EXPECT_GT(loaded.parameter_count, 0);
  EXPECT_EQ(header.parameter_count, 0);
  std::vector<std::string> notes = loaded.notes;
  notes.push_back("parameter count not known without loading the TorchScript module");
  EXPECT_EQ(header.notes, notes);
  EXPECT_NE(gd::models::describe_text(header).find("parameters:           not known"),
            std::string::npos)
      << gd::models::describe_text(header);
}

// ---- the weights are not read -----------------------------------------------------------------

TEST(ReadModelInfo, DiffusersNeedsOnlyTheSafetensorsHeader) {
  TempDir tmp;
  const fs::path model = copy_fixture("diffusers-tiny/model", tmp.path());
  const fs::path weights = model / "diffusion_pytorch_model.safetensors";
  const ModelInfo intact = read_model_info(model.string());
  // Keep the header and a few bytes of data: every tensor's offsets now run past the end.
  fs::resize_file(weights, safetensors_header_end(weights) + 16);
  const ModelInfo truncated = read_model_info(model.string());
  expect_same_info(truncated, intact);
  expect_error([&] { gd::models::load_model(model.string()); },
               {weights.string(), "data section has only 16 bytes"});
}

TEST(ReadModelInfo, TorchScriptModuleIsNotLoaded) {
  TempDir tmp;
  const fs::path model = copy_fixture("torchscript-tiny", tmp.path());
  write_file(model / "model.pt", "not a TorchScript archive");
  const ModelInfo info = read_model_info(model.string());
  EXPECT_EQ(info.format, CheckpointFormat::TorchScript);
  EXPECT_EQ(info.downsampling_factor, 2);
  expect_error([&] { gd::models::load_model(model.string()); },
               {(model / "model.pt").string(), "not a loadable TorchScript module"});
}

// ---- bad input: one line naming the file ------------------------------------------------------

TEST(ReadModelInfo, BadInputGivesOneLineErrorsNamingTheFile) {
  expect_error([] { read_model_info(""); }, "no model path given");
  expect_error([] { read_model_info(data_path("no-such-model")); },
               {data_path("no-such-model"), "no such file or folder"});
  expect_error([] { read_model_info(data_path("diffusers-tiny/unet.safetensors")); },
               {data_path("diffusers-tiny/unet.safetensors"), "bare weights file"});
  expect_error([] { read_model_info(data_path("torchscript-tiny/model.pt")); },
               {data_path("torchscript-tiny/model.pt"), "needs its folder"});

  LoadOptions options;
  options.weights = "best";
  expect_error([&] { read_model_info(data_path("lucidrains-tiny/model-1.pt"), options); },
               "weights must be 'ema' or 'model'");
  options.weights = "ema";
  expect_error([&] { read_model_info(data_path("diffusers-tiny/model"), options); },
               {data_path("diffusers-tiny/model"), "Trainer checkpoints only"});
  options = {};
  options.objective = "pred_eps";
  expect_error([&] { read_model_info(data_path("lucidrains-tiny/model-1.pt"), options); },
               {data_path("lucidrains-tiny/model-1.pt"), "unknown objective 'pred_eps'"});

  TempDir tmp;
  const fs::path diffusers = copy_fixture("diffusers-tiny/model", tmp.path());
  const fs::path weights = diffusers / "diffusion_pytorch_model.safetensors";
  const fs::path config = diffusers / "config.json";
  const fs::path scheduler = diffusers / "scheduler_config.json";

  // A header length past the end of the file.
  const std::vector<std::uint8_t> good = gd::test::read_all(weights.string());
  std::string bytes(good.begin(), good.end());
  bytes[6] = '\x01';
  write_file(weights, bytes);
  expect_error([&] { read_model_info(diffusers.string()); },
               {weights.string(), "runs past the end"});
  // A header that is not JSON.
  bytes.assign(good.begin(), good.end());
  bytes[8] = '#';
  write_file(weights, bytes);
  expect_error([&] { read_model_info(diffusers.string()); }, {weights.string(), "not valid JSON"});
  // A shape whose byte count overflows (checked although the data is never looked at).
  write_file(weights, [] {
    const std::string header =
        "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}";
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    return out + header;
  }());
  expect_error([&] { read_model_info(diffusers.string()); },
               {weights.string(), "tensor 'w'", "size overflows"});
  write_file(weights, "");
  expect_error([&] { read_model_info(diffusers.string()); }, {weights.string(), "empty"});
  write_file(weights, std::string(good.begin(), good.end()));

  // Broken description files.
  write_file(config, "{\"block_out_channels\": [32, 64], \"down_block_types\": [\"DownBlock2D\"]");
  expect_error([&] { read_model_info(diffusers.string()); }, config.string());
  fs::remove(config);
  fs::create_directories(tmp.path() / "pipeline" / "unet");
  write_file(tmp.path() / "pipeline" / "model_index.json", "{}");
  expect_error([&] { read_model_info((tmp.path() / "pipeline").string()); },
               {(tmp.path() / "pipeline" / "unet" / "config.json").string(), "no such file"});
  write_file(scheduler, "{\"num_train_timesteps\": -3}");
  fs::create_directories(tmp.path() / "x");
  const fs::path other = copy_fixture("diffusers-tiny/model", tmp.path() / "x");
  fs::copy_file(scheduler, other / "scheduler_config.json", fs::copy_options::overwrite_existing);
  expect_error([&] { read_model_info(other.string()); },
               (other / "scheduler_config.json").string());
  write_file(other / "classes.json",
             "{}");  // no classes in this model: ignored, as load_model does
  write_file(other / "scheduler_config.json", "{\"num_train_timesteps\": 100}");
  EXPECT_NO_THROW(read_model_info(other.string()));
  write_file(other / "guidance.json", "{\"generate\": {\"scale\": 2}}");
  expect_error([&] { read_model_info(other.string()); }, (other / "guidance.json").string());

  // A Trainer checkpoint that is not a zip archive, and one cut short.
  const fs::path trainer = tmp.path() / "results";
  fs::create_directories(trainer);
  write_file(trainer / "model-3.pt", "garbage, not a zip archive");
  expect_error([&] { read_model_info(trainer.string()); }, (trainer / "model-3.pt").string());
  const std::vector<std::uint8_t> ckpt =
      gd::test::read_all(data_path("lucidrains-tiny/model-1.pt"));
  write_file(trainer / "model-4.pt", std::string(ckpt.begin(), ckpt.begin() + ckpt.size() / 2));
  expect_error([&] { read_model_info(trainer.string()); }, (trainer / "model-4.pt").string());

  // A TorchScript folder whose description is broken.
  const fs::path ts = copy_fixture("torchscript-tiny", tmp.path());
  write_file(ts / "gimp-diffusion.json",
             "{\"format\": \"torchscript\", \"module\": \"missing.pt\"}");
  expect_error([&] { read_model_info(ts.string()); },
               {(ts / "missing.pt").string(), "no such file"});
  write_file(ts / "gimp-diffusion.json",
             "{\"format\": \"torchscript\", \"module\": \"model.pt\", "
             "\"sample_size\": -1}");
  expect_error([&] { read_model_info(ts.string()); },
               {(ts / "gimp-diffusion.json").string(), "sample_size"});
}
