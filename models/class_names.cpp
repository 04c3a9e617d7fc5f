#include "models/class_names.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/class_errors.h"
#include "core/error.h"

namespace gd::models {

void write_class_names(const std::string& path, const std::vector<std::string>& names) {
  nlohmann::ordered_json j;
  j["classes"] = names;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out) throw Error(path + ": cannot write the class names");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(path + ": cannot write the class names (" + ec.message() + ")");
}

std::vector<std::string> read_class_names(const std::string& path, std::int64_t count) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw Error(path + ": cannot read the class names");
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("classes") || !j["classes"].is_array()) {
    throw Error(path + ": not a class list (expected {\"classes\": [\"name\", ...]})");
  }
  std::vector<std::string> names;
  for (const auto& name : j["classes"]) {
    if (!name.is_string() || name.get<std::string>().empty()) {
      throw Error(path + ": every class name must be a non-empty string");
    }
    names.push_back(name.get<std::string>());
  }
  if (static_cast<std::int64_t>(names.size()) != count) {
    throw Error(path + ": lists " + std::to_string(names.size()) + " classes but the model has " +
                std::to_string(count));
  }
  return names;
}

std::string describe_class(const std::vector<std::string>& names, std::int64_t k) {
  const auto i = static_cast<std::size_t>(k);
  return std::to_string(k) + (k >= 0 && i < names.size() ? " (" + names[i] + ")" : "");
}

std::int64_t find_class(const std::string& text, const std::vector<std::string>& names,
                        std::int64_t count) {
  if (count <= 0) throw not_class_conditional();
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) return static_cast<std::int64_t>(i);
  }
  if (!text.empty() && text.find_first_not_of("0123456789") == std::string::npos &&
      text.size() < 12) {
    const std::int64_t value = std::strtoll(text.c_str(), nullptr, 10);
    if (value < count) return value;
    throw class_out_of_range(text, count);
  }
  throw Error("no class called '" + text + "'" +
              (names.empty() ? " (this model's classes have numbers only: 0 to " +
                                   std::to_string(count - 1) + ")"
                             : " (see gimp-diffusion-cli info for the names)"));
}

}  // namespace gd::models
