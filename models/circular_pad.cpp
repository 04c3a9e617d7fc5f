#include "models/circular_pad.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace gd::models {

at::Tensor circular_pad(const at::Tensor& x, std::int64_t left, std::int64_t right,
                        std::int64_t top, std::int64_t bottom) {
  const std::int64_t h = x.size(2), w = x.size(3);
  if (left < 0 || right < 0 || top < 0 || bottom < 0 || left > w || right > w || top > h ||
      bottom > h) {
    throw Error("circular padding larger than the image");
  }
  at::Tensor out = at::empty({x.size(0), x.size(1), top + h + bottom, left + w + right},
                             x.options().memory_format(x.suggest_memory_format()));
  at::Tensor rows = out.narrow(2, top, h);  // [N, C, H, W + left + right]: the image's own rows
  rows.narrow(3, left, w).copy_(x);
  if (left > 0) rows.narrow(3, 0, left).copy_(x.narrow(3, w - left, left));
  if (right > 0) rows.narrow(3, left + w, right).copy_(x.narrow(3, 0, right));
  // The top and bottom pads are whole padded rows from the other edge, corners included.
  if (top > 0) out.narrow(2, 0, top).copy_(out.narrow(2, h, top));
  if (bottom > 0) out.narrow(2, top + h, bottom).copy_(out.narrow(2, top, bottom));
  return out;
}

at::Tensor pad_by_mode(const at::Tensor& x, core::Padding mode, std::int64_t left,
                       std::int64_t right, std::int64_t top, std::int64_t bottom) {
  const bool wrap_w = core::wraps_width(mode), wrap_h = core::wraps_height(mode);
  if (wrap_w && wrap_h) return circular_pad(x, left, right, top, bottom);
  if (wrap_w) return at::constant_pad_nd(circular_pad(x, left, right, 0, 0), {0, 0, top, bottom});
  if (wrap_h) return at::constant_pad_nd(circular_pad(x, 0, 0, top, bottom), {left, right, 0, 0});
  return at::constant_pad_nd(x, {left, right, top, bottom});
}

}  // namespace gd::models
