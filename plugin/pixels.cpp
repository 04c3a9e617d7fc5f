#include "plugin/pixels.h"

#include <stdexcept>

namespace gd::plugin {

PixelBuffer with_opaque_alpha(const PixelBuffer& colour) {
  PixelBuffer out = colour;
  out.channels = colour.channels + 1;
  out.has_alpha = true;
  out.pixels.clear();
  out.pixels.reserve(static_cast<std::size_t>(out.width) * out.height * out.channels);
  for (std::size_t i = 0; i < colour.pixels.size(); i += colour.channels) {
    for (int c = 0; c < colour.channels; ++c) out.pixels.push_back(colour.pixels[i + c]);
    out.pixels.push_back(1.0f);
  }
  return out;
}

const Babl* float_format(GimpDrawable* drawable, bool with_alpha) {
  const bool rgb = gimp_drawable_is_rgb(drawable);
  const char* name = rgb ? (with_alpha ? "R'G'B'A float" : "R'G'B' float")
                         : (with_alpha ? "Y'A float" : "Y' float");
  return babl_format_with_space(name, gimp_drawable_get_format(drawable));
}

PixelBuffer read_region(GimpDrawable* drawable, const Region& region) {
  PixelBuffer out;
  out.width = region.width;
  out.height = region.height;
  out.has_alpha = gimp_drawable_has_alpha(drawable);
  out.channels = (gimp_drawable_is_rgb(drawable) ? 3 : 1) + (out.has_alpha ? 1 : 0);
  out.pixels.resize(static_cast<std::size_t>(region.width) * region.height * out.channels);
  GeglBuffer* buffer = gimp_drawable_get_buffer(drawable);
  const GeglRectangle rect = {region.x, region.y, region.width, region.height};
  gegl_buffer_get(buffer, &rect, 1.0, float_format(drawable, out.has_alpha), out.pixels.data(),
                  GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  return out;
}

PixelBuffer read_selection(GimpImage* image, GimpDrawable* drawable, const Region& region) {
  int ox = 0, oy = 0;
  gimp_drawable_get_offsets(drawable, &ox, &oy);
  PixelBuffer out;
  out.width = region.width;
  out.height = region.height;
  out.channels = 1;
  out.pixels.resize(static_cast<std::size_t>(region.width) * region.height);
  GeglBuffer* buffer = gimp_drawable_get_buffer(GIMP_DRAWABLE(gimp_image_get_selection(image)));
  const GeglRectangle rect = {ox + region.x, oy + region.y, region.width, region.height};
  gegl_buffer_get(buffer, &rect, 1.0, babl_format("Y float"), out.pixels.data(),
                  GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref(buffer);
  for (float& v : out.pixels) v = v > 0.0f ? 1.0f : 0.0f;
  return out;
}

PixelBuffer crop(const PixelBuffer& pixels, const Region& part) {
  PixelBuffer out = pixels;
  out.width = part.width;
  out.height = part.height;
  out.pixels.clear();
  const std::size_t row = static_cast<std::size_t>(part.width) * pixels.channels;
  for (int y = part.y; y < part.y + part.height; ++y) {
    const auto start = pixels.pixels.begin() +
                       (static_cast<std::ptrdiff_t>(y) * pixels.width + part.x) * pixels.channels;
    out.pixels.insert(out.pixels.end(), start, start + static_cast<std::ptrdiff_t>(row));
  }
  return out;
}

namespace {

void check_shape(GimpDrawable* drawable, const Region& region, const PixelBuffer& pixels) {
  const int want = (gimp_drawable_is_rgb(drawable) ? 3 : 1) + (pixels.has_alpha ? 1 : 0);
  if (pixels.width != region.width || pixels.height != region.height || pixels.channels != want) {
    throw std::runtime_error("internal error: result does not match the drawable");
  }
}

}  // namespace

void write_region_masked(GimpDrawable* drawable, const Region& region, const PixelBuffer& pixels) {
  check_shape(drawable, region, pixels);
  GeglBuffer* shadow = gimp_drawable_get_shadow_buffer(drawable);
  const GeglRectangle rect = {region.x, region.y, region.width, region.height};
  gegl_buffer_set(shadow, &rect, 0, float_format(drawable, pixels.has_alpha), pixels.pixels.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(shadow);  // flushes
  gimp_drawable_merge_shadow(drawable, TRUE);
  gimp_drawable_update(drawable, region.x, region.y, region.width, region.height);
}

void write_region_direct(GimpDrawable* drawable, const Region& region, const PixelBuffer& pixels) {
  check_shape(drawable, region, pixels);
  GeglBuffer* buffer = gimp_drawable_get_buffer(drawable);
  const GeglRectangle rect = {region.x, region.y, region.width, region.height};
  gegl_buffer_set(buffer, &rect, 0, float_format(drawable, pixels.has_alpha), pixels.pixels.data(),
                  GEGL_AUTO_ROWSTRIDE);
  g_object_unref(buffer);
  gimp_drawable_update(drawable, region.x, region.y, region.width, region.height);
}

}  // namespace gd::plugin
