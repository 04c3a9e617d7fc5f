#include "plugin/model_list.h"

#include <cstdlib>
#include <exception>
#include <filesystem>

#include "engine/gimp_diffusion.h"
#include "models/model_header.h"
#include "plugin/model_path.h"

namespace gd::plugin {

namespace {

// "diffusers, 64x64" from the model's header; the first line of the error when unreadable.
std::string short_description(const std::string& path) {
  try {
    const models::ModelInfo info = models::read_model_info(path);
    std::string text = models::format_name(info.format);
    if (info.native_width > 0 && info.native_height > 0) {
      text += ", " + std::to_string(info.native_width) + "x" + std::to_string(info.native_height);
    }
    return text;
  } catch (const std::exception& e) {
    std::string why = e.what();
    if (why.size() > 80) why = why.substr(0, 77) + "...";
    return "unreadable: " + why;
  }
}

}  // namespace

std::vector<gd::ui::ModelChoice> list_models() {
  std::vector<gd::ui::ModelChoice> choices;
  // The default: $GIMP_DIFFUSION_MODEL when set, else the bundled model.
  const std::string default_path = gd::default_model_path();
  if (!default_path.empty()) {
    const std::string name = std::filesystem::path(default_path).filename().string();
    const bool bundled = std::getenv("GIMP_DIFFUSION_MODEL") == nullptr ||
                         *std::getenv("GIMP_DIFFUSION_MODEL") == '\0';
    choices.push_back({"", name + (bundled ? " (bundled)" : " ($GIMP_DIFFUSION_MODEL)") + " — " +
                               short_description(default_path)});
  }
  const std::string folder = user_models_folder();
  for (const std::string& name : user_model_names()) {
    const std::string path = (std::filesystem::path(folder) / name).string();
    choices.push_back({name, name + " — " + short_description(path)});
  }
  return choices;
}

}  // namespace gd::plugin
