// The plug-in's door to the engine (engine/gimp_diffusion.h): pixel buffers in and out, and the
// model described for the dialog. The GIMP glue sees images only as PixelBuffers.
//
// Every function throws std::exception (gd::Error underneath) with a one-line message on any
// problem; the PDB procedures catch them at their boundary.
#pragma once

#include <string>

#include "engine/gimp_diffusion.h"
#include "plugin/pixel_buffer.h"

namespace gd::plugin {

// Runs `request` on a loaded model. input: the drawable's pixels for img2img and denoise (alpha
// is passed through untouched), nullptr for generate, which makes request.width x height with
// `channels` colour channels (1 or 3). The result's details (classes, sigma) go to *details.
// mask: inpainting's, one channel over the input (1: regenerate), nullptr for the others.
PixelBuffer run_on_pixels(const Model& model, const Request& request, const PixelBuffer* input,
                          int channels, const Callbacks& callbacks, Result* details,
                          const PixelBuffer* mask = nullptr);

// One line for the dialog: architecture, format, size, channels, parameters, classes, guidance,
// the device a run would use. Reads the model's configuration, not its weights.
std::string describe_model(const std::string& model_path, const std::string& device);

}  // namespace gd::plugin
