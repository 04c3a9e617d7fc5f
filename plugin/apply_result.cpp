#include "plugin/apply_result.h"

#include "plugin/procedures.h"

namespace gd::plugin {

namespace {

// One undo step, closed even when writing fails half-way.
class UndoGroup {
 public:
  explicit UndoGroup(GimpImage* image) : image_(image) { gimp_image_undo_group_start(image_); }
  ~UndoGroup() { gimp_image_undo_group_end(image_); }
  UndoGroup(const UndoGroup&) = delete;
  UndoGroup& operator=(const UndoGroup&) = delete;

 private:
  GimpImage* image_;
};

bool is_layer(GimpDrawable* drawable) {
  return GIMP_IS_LAYER(drawable) && !GIMP_IS_LAYER_MASK(drawable);
}

// Generate into a new layer at the region, above the drawable, opaque.
GimpLayer* new_generated_layer(const Placement& where, const PixelBuffer& result) {
  GimpImage* image = where.image;
  const bool rgb = gimp_image_get_base_type(image) == GIMP_RGB;
  const std::string name = "Generated (" + where.tag + ")";
  GimpLayer* layer = gimp_layer_new(image, name.c_str(), where.region.width, where.region.height,
                                    rgb ? GIMP_RGBA_IMAGE : GIMP_GRAYA_IMAGE, 100.0,
                                    gimp_image_get_default_new_layer_mode(image));
  GimpLayer* parent = nullptr;
  int position = -1;
  if (is_layer(where.drawable)) {
    parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(where.drawable)));
    position = gimp_image_get_item_position(image, GIMP_ITEM(where.drawable));
  }
  gimp_image_insert_layer(image, layer, parent, position);
  int ox = 0, oy = 0;
  gimp_drawable_get_offsets(where.drawable, &ox, &oy);
  gimp_layer_set_offsets(layer, ox + where.region.x, oy + where.region.y);
  write_region_direct(GIMP_DRAWABLE(layer), Region{0, 0, where.region.width, where.region.height},
                      with_opaque_alpha(result));
  return layer;
}

// Image to image into a copy of the layer, above it, changed inside the selection only.
GimpLayer* layer_copy(const Placement& where) {
  GimpLayer* copy = gimp_layer_copy(GIMP_LAYER(where.drawable));
  gimp_item_set_name(GIMP_ITEM(copy),
                     (std::string(action_title(where.action)) + " (" + where.tag + ")").c_str());
  GimpLayer* parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(where.drawable)));
  gimp_image_insert_layer(where.image, copy, parent,
                          gimp_image_get_item_position(where.image, GIMP_ITEM(where.drawable)));
  return copy;
}

}  // namespace

GimpLayer* apply_result(const Placement& where, const PixelBuffer& result) {
  UndoGroup undo(where.image);
  if (where.action == Action::Generate && where.new_layer)
    return new_generated_layer(where, result);
  GimpDrawable* target = where.drawable;
  GimpLayer* layer = is_layer(where.drawable) ? GIMP_LAYER(where.drawable) : nullptr;
  const bool copies = where.action == Action::Img2img || where.action == Action::Inpaint ||
                      where.action == Action::MakeSeamless;
  if (copies && where.new_layer && layer) {
    layer = layer_copy(where);
    target = GIMP_DRAWABLE(layer);
  }
  // Generated pixels replace the area opaque; the other actions carry the input's alpha.
  const bool opaque = where.action == Action::Generate && gimp_drawable_has_alpha(where.drawable);
  write_region_masked(target, where.region, opaque ? with_opaque_alpha(result) : result);
  return layer;
}

}  // namespace gd::plugin
