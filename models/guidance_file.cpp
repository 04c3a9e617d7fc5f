#include "models/guidance_file.h"

#include <nlohmann/json.hpp>

#include <filesystem>

#include "core/error.h"
#include "models/text_file.h"

namespace gd::models {

core::Guidance read_generate_guidance(const std::string& path, std::int64_t num_classes,
                                      int num_train_timesteps) {
  core::Guidance g;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return g;
  const nlohmann::json j =
      nlohmann::json::parse(read_text_file(path), nullptr, /*allow_exceptions=*/false);
  const char* shape = " (expected {\"generate\": {\"scale\": 2.0, \"below_timestep\": 500}})";
  if (!j.is_object() || !j.contains("generate") || !j["generate"].is_object()) {
    throw Error(path + ": not a guidance file" + shape);
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "generate")
      throw Error(path + ": unknown action '" + key + "' (only Generate has a default)" + shape);
  }
  const nlohmann::json& generate = j["generate"];
  for (const auto& [key, value] : generate.items()) {
    if (key != "scale" && key != "below_timestep")
      throw Error(path + ": unknown setting '" + key + "'" + shape);
  }
  if (!generate.contains("scale") || !generate["scale"].is_number()) {
    throw Error(path + ": \"scale\" must be a number" + shape);
  }
  g.scale = generate["scale"].get<double>();
  if (generate.contains("below_timestep")) {
    if (!generate["below_timestep"].is_number_integer()) {
      throw Error(path + ": \"below_timestep\" must be a whole number" + shape);
    }
    const nlohmann::json& below = generate["below_timestep"];
    // Checked on the JSON value itself, so a huge or negative one is quoted as written.
    const auto top = static_cast<std::uint64_t>(num_train_timesteps);
    const bool in_range =
        below.is_number_unsigned()
            ? below.get<std::uint64_t>() >= 1 && below.get<std::uint64_t>() <= top
            : below.get<std::int64_t>() >= 1 && below.get<std::int64_t>() <= num_train_timesteps;
    if (!in_range) {
      throw Error(path + ": the guidance limit " + below.dump() +
                  " is out of range: it must be a timestep from 1 to " +
                  std::to_string(num_train_timesteps));
    }
    g.below_timestep = below.get<int>();
  }
  try {
    core::check_guidance(g, static_cast<int>(num_classes), num_train_timesteps);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return g;
}

}  // namespace gd::models
