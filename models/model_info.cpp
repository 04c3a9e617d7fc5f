#include "models/model_info.h"

#include <nlohmann/json.hpp>

#include <sstream>

namespace gd::models {

const char* format_name(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::Diffusers: return "diffusers";
    case CheckpointFormat::DdpmPytorch: return "denoising-diffusion-pytorch";
    case CheckpointFormat::TorchScript: return "torchscript";
  }
  return "?";
}

namespace {

std::string with_thousands(std::int64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string size_text(const ModelInfo& info) {
  if (info.native_width <= 0 || info.native_height <= 0) return "not recorded";
  return std::to_string(info.native_width) + " x " + std::to_string(info.native_height);
}

}  // namespace

std::string describe_text(const ModelInfo& info) {
  std::ostringstream out;
  auto line = [&out](const char* key, const std::string& value) {
    out << key << std::string(22 - std::string(key).size(), ' ') << value << '\n';
  };
  line("path:", info.path);
  line("format:", std::string(format_name(info.format)) +
                      (info.format_detail.empty() ? "" : " (" + info.format_detail + ")"));
  line("architecture:", info.architecture);
  if (!info.structure.empty()) line("structure:", info.structure);
  if (!info.weights.empty()) line("weights:", info.weights);
  // 0 when a header read could not count them (TorchScript; a note says so).
  line("parameters:",
       info.parameter_count > 0 ? with_thousands(info.parameter_count) : "not known");
  line("channels:", std::to_string(info.in_channels) + " in, " + std::to_string(info.out_channels) +
                        " out" + (info.self_condition ? ", self-conditioned" : "") +
                        (info.learned_variance ? ", learned variance" : ""));
  line("native size:", size_text(info));
  line("downsampling factor:", std::to_string(info.downsampling_factor));
  line("prediction type:", core::prediction_type_name(info.prediction_type));
  line("schedule:", info.beta_schedule + ", " + std::to_string(info.num_train_timesteps) +
                        " training timesteps" +
                        (info.default_spacing.empty() ? "" : ", " + info.default_spacing));
  if (info.num_classes > 0) {
    std::string list;
    for (std::size_t i = 0; i < info.class_names.size(); ++i) {
      list += (i ? ", " : "") + std::to_string(i) + " " + info.class_names[i];
    }
    line("classes:",
         std::to_string(info.num_classes) + (list.empty() ? " (numbered)" : ": " + list));
  }
  if (info.generate_guidance.active())
    line("generate:", core::describe_guidance(info.generate_guidance) + " (guidance.json)");
  for (const auto& note : info.notes) line("note:", note);
  return out.str();
}

std::string describe_json(const ModelInfo& info) {
  nlohmann::ordered_json j;
  j["path"] = info.path;
  j["format"] = format_name(info.format);
  j["format_detail"] = info.format_detail;
  j["architecture"] = info.architecture;
  j["structure"] = info.structure;
  j["weights"] =
      info.weights.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(info.weights);
  j["parameter_count"] = info.parameter_count;
  j["in_channels"] = info.in_channels;
  j["out_channels"] = info.out_channels;
  j["self_condition"] = info.self_condition;
  j["attention"] = info.attention;
  j["learned_variance"] = info.learned_variance;
  if (info.native_width > 0 && info.native_height > 0) {
    j["native_size"] = {info.native_width, info.native_height};
  } else {
    j["native_size"] = nullptr;
  }
  j["downsampling_factor"] = info.downsampling_factor;
  j["prediction_type"] = core::prediction_type_name(info.prediction_type);
  j["schedule"] = {{"beta_schedule", info.beta_schedule},
                   {"num_train_timesteps", info.num_train_timesteps},
                   {"default_spacing", info.default_spacing}};
  j["num_classes"] = info.num_classes;
  j["class_names"] = info.class_names;
  if (info.generate_guidance.active()) {
    j["generate_guidance"] = {{"scale", info.generate_guidance.scale}};
    if (info.generate_guidance.limited()) {
      j["generate_guidance"]["below_timestep"] = info.generate_guidance.below_timestep;
    }
  } else {
    j["generate_guidance"] = nullptr;
  }
  j["notes"] = info.notes;
  return j.dump(2) + "\n";
}

}  // namespace gd::models
