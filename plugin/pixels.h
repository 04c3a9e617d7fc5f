// Reading and writing drawable pixels as perceptual floats (GIMP glue, no maths).
#pragma once

#include <libgimp/gimp.h>

#include "plugin/pixel_buffer.h"

namespace gd::plugin {

struct Region {
  int x = 0, y = 0, width = 0, height = 0;  // drawable coordinates
};

// "R'G'B'A float" / "Y' float" ... in the drawable's own colour space, with alpha when the
// drawable has it (or when `force_alpha`).
const Babl* float_format(GimpDrawable* drawable, bool with_alpha);

// The region's pixels, whatever the image precision.
PixelBuffer read_region(GimpDrawable* drawable, const Region& region);

// The image's selection over the drawable's pixels at `region` (drawable coordinates), one
// channel: 1 where a pixel is selected at all, 0 where it is not. Fill Selection regenerates
// every selected pixel; merging the shadow buffer blends feathered ones.
PixelBuffer read_selection(GimpImage* image, GimpDrawable* drawable, const Region& region);

// The part `part` (in the buffer's coordinates) of a buffer.
PixelBuffer crop(const PixelBuffer& pixels, const Region& part);

// Writes `pixels` into the region through the shadow buffer and merges it (undoable, honouring
// the selection mask), then updates the drawable.
void write_region_masked(GimpDrawable* drawable, const Region& region, const PixelBuffer& pixels);

// Writes `pixels` straight into the drawable's buffer at the region (for a new layer).
void write_region_direct(GimpDrawable* drawable, const Region& region, const PixelBuffer& pixels);

}  // namespace gd::plugin
