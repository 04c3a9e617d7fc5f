#include "plugin/model_path.h"

#include "engine/gimp_diffusion.h"

#include <libgimp/gimp.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace gd::plugin {

namespace fs = std::filesystem;

std::string user_models_folder() {
  return (fs::path(gimp_directory()) / "diffusion-models").string();
}

std::vector<std::string> user_model_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(user_models_folder(), ec), end; !ec && it != end;
       it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code ec2;
    if (fs::is_directory(p, ec2)) {
      names.push_back(name);
    } else {
      std::string ext = p.extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      if (ext == ".pt" || ext == ".pth" || ext == ".ckpt") names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string resolve_model_path(const std::string& given) {
  const std::string folder = user_models_folder();
  if (!given.empty()) {
    // A bare name picks an installed model; anything else is a path.
    std::error_code ec;
    if (given.find('/') == std::string::npos && !fs::exists(given, ec) &&
        fs::exists(fs::path(folder) / given, ec)) {
      return (fs::path(folder) / given).string();
    }
    return given;
  }
  // $GIMP_DIFFUSION_MODEL, else the bundled model next to the plug-in: the engine's rule.
  if (std::string path = gd::default_model_path(); !path.empty()) return path;
  const std::vector<std::string> names = user_model_names();
  if (names.empty()) {
    throw std::runtime_error(
        "no model given and the bundled model is missing (reinstall the "
        "plug-in): put a model folder or checkpoint in " +
        folder + ", set GIMP_DIFFUSION_MODEL, or pass the model argument");
  }
  return (fs::path(folder) / names.front()).string();
}

}  // namespace gd::plugin
