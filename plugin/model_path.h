// Which model a run uses when the "model" argument is empty.
#pragma once

#include <string>
#include <vector>

namespace gd::plugin {

// The user models folder: <gimp user dir>/diffusion-models.
std::string user_models_folder();

// `given` when not empty; otherwise $GIMP_DIFFUSION_MODEL when set, otherwise the first model
// (alphabetically: a folder, or a .pt/.pth/.ckpt file) in user_models_folder(). Throws
// std::runtime_error with a message saying where to put one when there is none.
// The models installed in user_models_folder(), by name (folder or checkpoint file name), sorted.
std::vector<std::string> user_model_names();

std::string resolve_model_path(const std::string& given);

}  // namespace gd::plugin
