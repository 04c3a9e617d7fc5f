// A procedure's config (its PDB arguments, or the dialog's choices) as an engine Request.
#pragma once

#include <libgimp/gimp.h>

#include <string>

#include "engine/gimp_diffusion.h"

namespace gd::plugin {

struct PluginRequest {
  Request request;             // model_path resolved (plugin/model_path.h), seed resolved
  std::string model_argument;  // the "model" argument as given
  bool new_layer = false;      // "output" is new-layer
};

// Reads every argument; a seed of -1 becomes a random one. Throws std::exception when the model
// cannot be resolved. Values are not judged here: check_request does that.
PluginRequest read_config(Action action, GimpProcedureConfig* config);

// A RequestError in the plug-in's words: its field as the argument name ("class_name" ->
// "class", "sigma" -> "noise-level", "tile_size" -> "tile-size", "max_memory" -> "max-memory",
// "image" -> "the area to process").
std::string argument_message(const RequestError& error);

}  // namespace gd::plugin
