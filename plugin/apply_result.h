// Writing a finished result into the image: a new layer, a layer copy or the drawable itself,
// blended through the selection mask, alpha kept, all in one undo step.
#pragma once

#include <libgimp/gimp.h>

#include <string>

#include "engine/gimp_diffusion.h"
#include "plugin/pixel_buffer.h"
#include "plugin/pixels.h"

namespace gd::plugin {

struct Placement {
  Action action = Action::Generate;
  GimpImage* image = nullptr;
  GimpDrawable* drawable = nullptr;
  Region region;           // where the result goes, in drawable coordinates
  bool new_layer = false;  // the "output" argument
  std::string tag;         // how the result was made: "model, sampler ddim, 6 steps, seed 7"
};

// Writes `result` (colour, plus alpha where the input had it) and returns the layer holding it
// (nullptr when the drawable is not a layer, e.g. a channel or mask).
GimpLayer* apply_result(const Placement& where, const PixelBuffer& result);

}  // namespace gd::plugin
