#include "models/model_header.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <optional>
#include <tuple>
#include <utility>

#include "core/error.h"
#include "core/scheduler_config.h"
#include "models/class_names.h"
#include "models/diffusers_unet.h"
#include "models/guidance_file.h"
#include "models/safetensors_reader.h"
#include "models/text_file.h"
#include "models/torch_zip_reader.h"
#include "models/zip_reader.h"

namespace gd::models {

namespace fs = std::filesystem;

namespace model_header {

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

constexpr const char* kTorchScriptConfigFile = "gimp-diffusion.json";

std::string read_text(const fs::path& path) { return read_text_file(path.string()); }

// Where the pieces of a diffusers model are, for the flat layout (config.json beside the
// weights) and for the pipeline layout (model_index.json, unet/, scheduler/).
struct DiffusersPaths {
  fs::path config, weights, scheduler;
  bool pipeline = false;
};

DiffusersPaths find_diffusers_paths(const fs::path& dir) {
  DiffusersPaths paths;
  fs::path unet_dir = dir;
  if (is_file(dir / "model_index.json") && is_dir(dir / "unet")) {
    paths.pipeline = true;
    unet_dir = dir / "unet";
  }
  paths.config = unet_dir / "config.json";
  if (!is_file(paths.config)) throw Error(paths.config.string() + ": no such file");
  for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"}) {
    if (is_file(unet_dir / name)) {
      paths.weights = unet_dir / name;
      break;
    }
  }
  if (paths.weights.empty()) {
    throw Error(
        unet_dir.string() +
        ": no weights (diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin)");
  }
  // The scheduler sits in scheduler/ for pipelines, beside config.json for flat folders, and
  // in ../scheduler/ when the user points at a pipeline's unet/ folder.
  for (const fs::path& candidate :
       {dir / "scheduler" / "scheduler_config.json", unet_dir / "scheduler_config.json",
        unet_dir.parent_path() / "scheduler" / "scheduler_config.json"}) {
    if (is_file(candidate)) {
      paths.scheduler = candidate;
      break;
    }
  }
  if (paths.scheduler.empty()) {
    throw Error(unet_dir.string() +
                ": no scheduler_config.json (beside config.json or in scheduler/)");
  }
  return paths;
}

std::string join_ints(const std::vector<std::int64_t>& values) {
  std::string out;
  for (std::size_t i = 0; i < values.size(); ++i)
    out += (i ? ", " : "") + std::to_string(values[i]);
  return out;
}

std::string spacing_description(const core::ScheduleConfig& schedule) {
  std::string text =
      std::string(core::timestep_spacing_name(schedule.timestep_spacing)) + " timestep spacing";
  if (schedule.steps_offset) text += " (offset " + std::to_string(schedule.steps_offset) + ")";
  return text;
}

// The schedule part of the description, for the formats that carry a diffusers scheduler config.
void describe_schedule(const core::ScheduleConfig& schedule, ModelInfo& info) {
  info.prediction_type = schedule.prediction_type;
  info.beta_schedule = core::beta_schedule_name(schedule.beta_schedule);
  info.num_train_timesteps = schedule.num_train_timesteps;
  info.default_spacing = spacing_description(schedule);
}

// The package keeps its schedule as buffers; the neutral ScheduleConfig lists the same betas.
core::ScheduleConfig ddpm_schedule_config(const DdpmDiffusionSettings& settings) {
  core::ScheduleConfig schedule;
  schedule.scheduler_class = "denoising-diffusion-pytorch GaussianDiffusion";
  schedule.num_train_timesteps = static_cast<int>(settings.num_timesteps);
  schedule.beta_schedule = core::BetaSchedule::Given;
  schedule.given_betas = settings.betas;
  if (settings.objective == "pred_noise") schedule.prediction_type = core::PredictionType::Epsilon;
  else if (settings.objective == "pred_x0") schedule.prediction_type = core::PredictionType::Sample;
  else schedule.prediction_type = core::PredictionType::V;
  schedule.clip_sample = true;             // the package clamps x0 to [-1, 1] while sampling
  schedule.variance_type = "fixed_small";  // posterior_log_variance_clipped
  schedule.family = core::ScheduleConfig::Family::DdpmPytorch;
  schedule.stored_buffers = settings.buffers;
  return schedule;
}

std::pair<int, int> parse_size(const nlohmann::json& value, const std::string& where) {
  if (value.is_number_integer()) {
    const int side = value.get<int>();
    if (side < 1) throw Error(where + ": 'sample_size' must be positive");
    return {side, side};
  }
  if (value.is_array() && value.size() == 2 && value[0].is_number_integer() &&
      value[1].is_number_integer() && value[0].get<int>() > 0 && value[1].get<int>() > 0) {
    return {value[0].get<int>(), value[1].get<int>()};  // [height, width]
  }
  throw Error(where + ": 'sample_size' must be a positive integer or [height, width]");
}

bool has_entry_ending(const ZipArchive& archive, const std::string& suffix) {
  for (const std::string& name : archive.names()) {
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return true;
    }
  }
  return false;
}

// The elements of every tensor in `tensors`, from their shapes alone. Header-only reads have not
// checked the shapes against the data, so every step is overflow-checked.
std::int64_t count_elements(const TensorMap& tensors, const std::string& source) {
  std::int64_t total = 0;
  for (const auto& [name, tensor] : tensors) {
    std::int64_t n = 1;
    bool overflow = false;
    for (std::int64_t d : tensor.shape) {
      if (d < 0 || __builtin_mul_overflow(n, d, &n)) overflow = true;
    }
    if (overflow || __builtin_add_overflow(total, n, &total)) {
      throw Error(source + ": tensor '" + name + "' with shape " + shape_string(tensor.shape) +
                  " takes the parameter count past 64 bits");
    }
  }
  return total;
}

// A diffusers model's parameter count from its weights' shapes: the safetensors header, or the
// .bin checkpoint's pickle (whose storages are mapped, not read). Equal to the network's count
// whenever load_model accepts the weights, since it loads every tensor and refuses extra ones.
std::int64_t diffusers_parameter_count(const DiffusersModel& model) {
  TensorMap shapes;  // shapes and dtypes only: never converted, so `data` may stay null
  if (model.safetensors) {
    for (auto& [name, entry] : read_safetensors_header(model.weights_path).tensors) {
      RawTensor& t = shapes[name];
      t.dtype = entry.dtype;
      t.shape = std::move(entry.shape);
    }
  } else {
    shapes = state_dict_tensors(read_torch_checkpoint(model.weights_path), model.weights_path);
  }
  rename_legacy_attention_keys(shapes);  // a file with both spellings of a key counts it once
  return count_elements(shapes, model.weights_path);
}

// denoising-diffusion-pytorch's Trainer writes results/model-<milestone>.pt; a folder of them
// means "the newest one".
std::optional<std::string> newest_trainer_checkpoint(const std::string& dir) {
  std::optional<std::string> best;
  long best_milestone = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() < 10 || name.rfind("model-", 0) != 0 || name.substr(name.size() - 3) != ".pt") {
      continue;
    }
    const std::string digits = name.substr(6, name.size() - 9);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit) ||
        digits.size() > 9) {
      continue;
    }
    const long milestone = std::stol(digits);
    if (milestone > best_milestone) {
      best_milestone = milestone;
      best = entry.path().string();
    }
  }
  return best;
}

}  // namespace

ModelSource find_model_source(const std::string& path, const LoadOptions& options) {
  if (!options.weights.empty() && options.weights != "ema" && options.weights != "model") {
    throw Error("weights must be 'ema' or 'model', not '" + options.weights + "'");
  }
  ModelSource source;
  source.format = detect_format(path);
  if (!options.weights.empty() && source.format != CheckpointFormat::DdpmPytorch) {
    throw Error("--weights applies to denoising-diffusion-pytorch Trainer checkpoints only; " +
                path + " is a " + format_name(source.format) + " model");
  }
  source.path = path;
  if (source.format == CheckpointFormat::DdpmPytorch && is_dir(path)) {
    source.path = *newest_trainer_checkpoint(path);  // detect_format found one
  }
  return source;
}

DiffusersModel read_diffusers(const std::string& dir) {
  const DiffusersPaths paths = find_diffusers_paths(dir);
  DiffusersModel model;
  model.config_path = paths.config.string();
  model.weights_path = paths.weights.string();
  model.scheduler_path = paths.scheduler.string();
  model.safetensors = paths.weights.extension() == ".safetensors";
  model.config = parse_unet2d_config(read_text(paths.config), model.config_path);
  model.schedule = core::parse_scheduler_config(read_text(paths.scheduler), model.scheduler_path);

  const UNet2DConfig& config = model.config;
  ModelInfo& info = model.info;
  info.path = dir;
  info.format = CheckpointFormat::Diffusers;
  info.format_detail = std::string(paths.pipeline ? "pipeline folder" : "model folder") + ", " +
                       (model.safetensors ? "safetensors" : "torch .bin") + " weights";
  info.architecture = "UNet2DModel";
  info.structure = describe_unet2d(config);
  info.in_channels = static_cast<int>(config.in_channels);
  info.out_channels = static_cast<int>(config.out_channels);
  info.native_height = static_cast<int>(config.sample_height);
  info.native_width = static_cast<int>(config.sample_width);
  info.downsampling_factor = static_cast<int>(config.downsampling_factor());
  info.attention = config.mid_block && config.add_attention;
  for (UNet2DBlock b : config.down_blocks) info.attention |= b == UNet2DBlock::Attention;
  for (UNet2DBlock b : config.up_blocks) info.attention |= b == UNet2DBlock::Attention;
  info.num_classes = config.num_class_embeds;
  const fs::path folder = paths.config.parent_path();
  if (info.num_classes > 0) {
    info.class_names = read_class_names((folder / kClassNamesFile).string(), info.num_classes);
  }
  describe_schedule(model.schedule, info);
  info.generate_guidance = read_generate_guidance((folder / kGuidanceFile).string(),
                                                  info.num_classes, info.num_train_timesteps);
  return model;
}

DdpmModel read_ddpm(const std::string& file, const LoadOptions& options) {
  DdpmLoadOptions ddpm_options;
  ddpm_options.weights = options.weights == "model" ? DdpmWeights::Model : DdpmWeights::Ema;
  ddpm_options.objective = options.objective;
  DdpmModel model;
  model.checkpoint = load_ddpm_checkpoint(file, ddpm_options);
  const DdpmCheckpoint& loaded = model.checkpoint;
  model.schedule = ddpm_schedule_config(loaded.diffusion);

  ModelInfo& info = model.info;
  info.path = file;
  info.format = CheckpointFormat::DdpmPytorch;
  info.format_detail =
      "Trainer checkpoint" +
      (loaded.step ? ", step " + std::to_string(*loaded.step) : std::string()) +
      (loaded.package_version.empty() ? "" : ", package " + loaded.package_version);
  info.architecture = "denoising-diffusion-pytorch Unet";
  const DdpmUnetConfig& c = loaded.unet;
  std::string attention;
  for (std::size_t i = 0; i < c.full_attn.size(); ++i) {
    attention += std::string(i ? ", " : "") + (c.full_attn[i] ? "full" : "linear");
  }
  info.structure = "dim " + std::to_string(c.dim) + ", dim_mults (" + join_ints(c.dim_mults) +
                   "), attention (" + attention + ")";
  info.weights = ddpm_weights_name(loaded.weights);
  info.in_channels = static_cast<int>(c.channels);
  info.out_channels = static_cast<int>(c.channels);
  info.self_condition = c.self_condition;
  info.learned_variance = c.learned_variance;
  info.downsampling_factor = static_cast<int>(c.downsample_factor());
  info.prediction_type = model.schedule.prediction_type;
  info.beta_schedule = loaded.diffusion.beta_schedule;
  info.num_train_timesteps = static_cast<int>(loaded.diffusion.num_timesteps);
  info.default_spacing = "full DDPM chain (the package's default sampling_timesteps)";
  info.notes.push_back(
      "objective " + loaded.diffusion.objective +
      (loaded.diffusion.objective_inferred ? " (inferred from loss_weight)" : " (given)"));
  info.notes.push_back(
      "Trainer checkpoints do not store the image size; any multiple of the downsampling factor "
      "works");
  return model;
}

TorchScriptModel read_torchscript(const std::string& dir_text) {
  const fs::path dir(dir_text);
  const fs::path config_path = dir / kTorchScriptConfigFile;
  const std::string where = config_path.string();
  const nlohmann::json config = nlohmann::json::parse(read_text(config_path), nullptr, false);
  if (config.is_discarded() || !config.is_object())
    throw Error(where + ": not a valid JSON object");
  auto integer = [&](const char* key, int fallback, int lo, int hi) {
    if (!config.contains(key)) return fallback;
    const auto& v = config[key];
    if (!v.is_number_integer() || v.get<long>() < lo || v.get<long>() > hi) {
      throw Error(where + ": '" + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
    return v.get<int>();
  };
  if (config.value("format", "") != "torchscript") {
    throw Error(where + ": 'format' must be \"torchscript\"");
  }
  if (!config.contains("module") || !config["module"].is_string()) {
    throw Error(where + ": 'module' must name the TorchScript file");
  }
  const fs::path module_path = dir / config["module"].get<std::string>();
  if (!is_file(module_path)) throw Error(module_path.string() + ": no such file");

  TorchScriptModel model;
  model.module_path = module_path.string();
  const fs::path scheduler = dir / "scheduler_config.json";
  model.schedule = core::parse_scheduler_config(read_text(scheduler), scheduler.string());

  ModelInfo& info = model.info;
  info.path = dir_text;
  info.format = CheckpointFormat::TorchScript;
  info.format_detail = "module " + module_path.filename().string();
  info.architecture = "TorchScript module";
  info.in_channels = integer("in_channels", 3, 1, 4);
  info.out_channels = integer("out_channels", info.in_channels, 1, 4);
  info.downsampling_factor = integer("downsampling_factor", 1, 1, 1024);
  if (config.contains("sample_size")) {
    std::tie(info.native_height, info.native_width) = parse_size(config["sample_size"], where);
  }
  describe_schedule(model.schedule, info);
  return model;
}

}  // namespace model_header

CheckpointFormat detect_format(const std::string& path_text) {
  using namespace model_header;
  const fs::path path(path_text);
  std::error_code ec;
  if (path_text.empty()) throw Error("no model path given");
  if (!fs::exists(path, ec)) throw Error(path_text + ": no such file or folder");
  if (is_dir(path)) {
    if (is_file(path / kTorchScriptConfigFile)) return CheckpointFormat::TorchScript;
    if (is_file(path / "config.json") ||
        (is_file(path / "model_index.json") && is_dir(path / "unet"))) {
      return CheckpointFormat::Diffusers;
    }
    if (newest_trainer_checkpoint(path_text)) return CheckpointFormat::DdpmPytorch;
    throw Error(path_text +
                ": not a model folder (expected config.json for diffusers, "
                "model_index.json with unet/ for a diffusers pipeline, " +
                kTorchScriptConfigFile + " for TorchScript, or model-N.pt Trainer checkpoints)");
  }
  const std::string ext = path.extension().string();
  if (ext == ".safetensors" || ext == ".bin") {
    throw Error(path_text +
                ": a bare weights file; give the folder that holds it with config.json "
                "and scheduler_config.json");
  }
  if (ext == ".json") {
    throw Error(path_text + ": give the model folder, not one of its JSON files");
  }
  // Both Trainer checkpoints and TorchScript archives are zip files: tell them apart by content.
  const ZipArchive archive = ZipArchive::open(path_text);
  const bool torchscript = has_entry_ending(archive, "/constants.pkl");
  if (has_entry_ending(archive, "/data.pkl") && !torchscript) return CheckpointFormat::DdpmPytorch;
  if (torchscript) {
    throw Error(path_text + ": a TorchScript module needs its folder with " +
                std::string(kTorchScriptConfigFile) + " and scheduler_config.json (see README)");
  }
  throw Error(path_text + ": unknown model format");
}

ModelInfo read_model_info(const std::string& path, const LoadOptions& options) {
  using namespace model_header;
  const ModelSource source = find_model_source(path, options);
  switch (source.format) {
    case CheckpointFormat::Diffusers: {
      DiffusersModel model = read_diffusers(source.path);
      model.info.parameter_count = diffusers_parameter_count(model);
      return std::move(model.info);
    }
    case CheckpointFormat::DdpmPytorch: {
      DdpmModel model = read_ddpm(source.path, options);
      // Exact whenever load_model accepts the weights: it loads every Unet tensor and refuses
      // extra ones.
      model.info.parameter_count = count_elements(model.checkpoint.unet_weights, source.path);
      return std::move(model.info);
    }
    case CheckpointFormat::TorchScript: {
      TorchScriptModel model = read_torchscript(source.path);
      model.info.parameter_count = 0;
      model.info.notes.push_back(
          "parameter count not known without loading the TorchScript module");
      return std::move(model.info);
    }
  }
  throw Error(path + ": unknown model format");
}

}  // namespace gd::models
