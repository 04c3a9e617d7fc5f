#include "models/guidance_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace gd::models {

core::Guidance read_generate_guidance(const std::string& path, std::int64_t num_classes, int num_train_timesteps) {
  core::Guidance g;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return g;
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw Error(path + ": cannot read the guidance settings");
  const nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const char* shape = " (expected {\"generate\": {\"scale\": 2.0, \"below_timestep\": 500}})";
  if (!j.is_object() || !j.contains("generate") || !j["generate"].is_object()) {
    throw Error(path + ": not a guidance file" + shape);
  }
  const nlohmann::json& generate = j["generate"];
  for (const auto& [key, value] : generate.items()) {
    if (key != "scale" && key != "below_timestep") throw Error(path + ": unknown setting '" + key + "'" + shape);
  }
  if (!generate.contains("scale") || !generate["scale"].is_number()) {
    throw Error(path + ": \"scale\" must be a number" + shape);
  }
  g.scale = generate["scale"].get<double>();
  if (generate.contains("below_timestep")) {
    if (!generate["below_timestep"].is_number_integer()) {
      throw Error(path + ": \"below_timestep\" must be a whole number" + shape);
    }
    const std::int64_t below = generate["below_timestep"].get<std::int64_t>();
    // Out-of-range values are reported by check_guidance; this only keeps them inside an int.
    g.below_timestep = static_cast<int>(std::clamp<std::int64_t>(below, -1, num_train_timesteps + 1));
  }
  try {
    core::check_guidance(g, static_cast<int>(num_classes), num_train_timesteps);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  return g;
}

}  // namespace gd::models
