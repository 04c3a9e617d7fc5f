#include "plugin/model_path.h"

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

std::string resolve_model_path(const std::string& given) {
  if (!given.empty()) return given;
  if (const char* env = std::getenv("GIMP_DIFFUSION_MODEL"); env && *env) return env;
  const std::string folder = user_models_folder();
  std::vector<std::string> candidates;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code ec2;
    if (fs::is_directory(p, ec2)) {
      candidates.push_back(p.string());
    } else {
      std::string ext = p.extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (ext == ".pt" || ext == ".pth" || ext == ".ckpt") candidates.push_back(p.string());
    }
  }
  if (candidates.empty()) {
    throw std::runtime_error("no model given and none found: put a model folder or checkpoint in " +
                             folder + ", set GIMP_DIFFUSION_MODEL, or pass the model argument");
  }
  std::sort(candidates.begin(), candidates.end());
  return candidates.front();
}

}  // namespace gd::plugin
