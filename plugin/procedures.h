// The three PDB procedures (Filters > Diffusion) and their arguments.
//   plug-in-diffusion-generate  a new image in the selection bounds (new layer or in place)
//   plug-in-diffusion-img2img   re-noise the selection and sample it back
//   plug-in-diffusion-denoise   treat the selection as a noisy sample and denoise it
//   plug-in-diffusion-inpaint   regenerate the selection so that it continues the rest
//   plug-in-diffusion-make-seamless  make the area tile by inpainting across its offset seams
#pragma once

#include <libgimp/gimp.h>

#include "engine/gimp_diffusion.h"

namespace gd::plugin {

inline constexpr const char* kGenerate = "plug-in-diffusion-generate";
inline constexpr const char* kImg2img = "plug-in-diffusion-img2img";
inline constexpr const char* kDenoise = "plug-in-diffusion-denoise";
inline constexpr const char* kInpaint = "plug-in-diffusion-inpaint";
inline constexpr const char* kMakeSeamless = "plug-in-diffusion-make-seamless";

// "Generate", "Image to Image", "Denoise Layer": the menu titles, used in messages.
const char* action_title(Action action);

// The procedure called `name`, with its arguments, menu entry and return values; nullptr for a
// name that is not ours.
GimpProcedure* create_procedure(GimpPlugIn* plug_in, const gchar* name);

}  // namespace gd::plugin
