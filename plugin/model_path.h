// Which model a run uses when the "model" argument is empty.
#pragma once

#include <string>
#include <vector>

namespace gd::plugin {

// The user models folder: <gimp user dir>/diffusion-models.
std::string user_models_folder();

// The models installed in user_models_folder(), by name (folder or checkpoint file name), sorted.
std::vector<std::string> user_model_names();

// `given` when not empty (a bare name picks a model in user_models_folder()); otherwise
// gd::default_model_path() ($GIMP_DIFFUSION_MODEL when set, otherwise the bundled model,
// installed as <plug-in folder>/models/gimp-patterns), otherwise the first model
// (alphabetically: a folder, or a .pt/.pth/.ckpt file) in user_models_folder(). Throws
// std::runtime_error with a message saying where to put one when there is none.
std::string resolve_model_path(const std::string& given);

}  // namespace gd::plugin
