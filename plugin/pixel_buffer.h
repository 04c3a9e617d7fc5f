// Interleaved pixels as the plug-in reads and writes them (no LibTorch, no GIMP).
#pragma once

#include <vector>

namespace gd::plugin {

// Interleaved row-major pixels: pixels[(y * width + x) * channels + c], values in [0, 1],
// perceptual (sRGB-encoded) as babl's "R'G'B'A float" / "Y'A float" give them.
// channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; with alpha, it is the last channel.
struct PixelBuffer {
  int width = 0;
  int height = 0;
  int channels = 0;
  bool has_alpha = false;
  std::vector<float> pixels;
};

// The same pixels with an opaque alpha channel added (generated pixels replace an area opaque).
PixelBuffer with_opaque_alpha(const PixelBuffer& colour);

}  // namespace gd::plugin
