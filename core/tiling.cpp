#include "core/tiling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "core/error.h"

namespace gd::core {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// n starts spreading `span` units evenly from 0: start i is round(i * span / (n - 1)) units
// (the last exactly span), or round(i * span / n) when wrapping (n windows around a period).
std::vector<std::int64_t> spread(std::int64_t span, std::int64_t n, bool wrap, std::int64_t unit) {
  std::vector<std::int64_t> starts;
  const std::int64_t parts = wrap ? n : n - 1;
  for (std::int64_t i = 0; i < n; ++i)
    starts.push_back((2 * i * span + parts) / (2 * parts) * unit);
  return starts;
}

// A window's pieces along one axis: (canvas start, offset in the window, length); two pieces
// when a wrapping window passes the canvas end.
struct Piece {
  std::int64_t canvas, window, length;
};

std::vector<Piece> pieces(const AxisWindows& axis, std::int64_t index) {
  const std::int64_t start = axis.starts[static_cast<std::size_t>(index)];
  const std::int64_t first = std::min(axis.size, axis.length - start);
  std::vector<Piece> out{{start, 0, first}};
  if (first < axis.size) out.push_back({0, first, axis.size - first});
  return out;
}

// The window's part of x along dim: [.., size, ..] gathered from its pieces.
at::Tensor gather(const at::Tensor& x, std::int64_t dim, const AxisWindows& axis,
                  std::int64_t index) {
  const std::vector<Piece> ps = pieces(axis, index);
  if (ps.size() == 1) return x.narrow(dim, ps[0].canvas, ps[0].length);
  return at::cat(
      {x.narrow(dim, ps[0].canvas, ps[0].length), x.narrow(dim, ps[1].canvas, ps[1].length)}, dim);
}

// canvas[.., rows of window i, cols of window j] += part (part: [N, C, size_y, size_x]).
void scatter_add(at::Tensor& canvas, const TileLayout& layout, std::int64_t i, std::int64_t j,
                 const at::Tensor& part) {
  for (const Piece& py : pieces(layout.rows, i)) {
    for (const Piece& px : pieces(layout.cols, j)) {
      canvas.narrow(2, py.canvas, py.length)
          .narrow(3, px.canvas, px.length)
          .add_(part.narrow(2, py.window, py.length).narrow(3, px.window, px.length));
    }
  }
}

// Repeats a per-image tensor ([N, ...]) for k windows: [k N, ...]; a [1] (or scalar) one shared
// by a batch of N > 1 stays as it is.
at::Tensor per_window(const at::Tensor& v, std::int64_t n, std::int64_t k) {
  if (!v.defined() || v.dim() == 0 || v.size(0) != n) return v;
  std::vector<std::int64_t> reps(static_cast<std::size_t>(v.dim()), 1);
  reps[0] = k;
  return v.repeat(reps);
}

// What every call of a tiled network shares: the layout and the weights.
struct Fusion {
  TileLayout layout;
  std::int64_t per_call = 1;
  std::vector<at::Tensor> weights;  // per window (row-major): [1, 1, size_y, size_x]
  at::Tensor inverse_sum;           // [1, 1, H, W]: 1 / the weight sum

  // Moves the weights to the canvas's device on the first call, so that a CUDA run copies them
  // once, not every step (a run's canvas never changes device).
  void place_on(const c10::Device& device) {
    if (inverse_sum.device() == device) return;
    for (at::Tensor& w : weights) w = w.to(device);
    inverse_sum = inverse_sum.to(device);
  }
};

}  // namespace

AxisWindows axis_windows(std::int64_t length, std::int64_t size, std::int64_t overlap,
                         std::int64_t factor, bool wrap) {
  if (factor < 1 || length < 1 || length % factor != 0 || size < factor || size % factor != 0 ||
      overlap < 0 || 2 * overlap > size || size - overlap < factor) {
    throw Error("tiling: bad window layout (length " + std::to_string(length) + ", window " +
                std::to_string(size) + ", overlap " + std::to_string(overlap) + ", factor " +
                std::to_string(factor) + ")");
  }
  AxisWindows axis;
  axis.length = length;
  if (size >= length) {  // one window spans the axis
    axis.size = length;
    axis.starts = {0};
    return axis;
  }
  axis.size = size;
  axis.wraps = wrap;
  // Neighbouring starts may be at most this far apart (so that they overlap by `overlap`); a
  // whole number of factors, at least one since overlap <= size / 2.
  const std::int64_t max_step = (size - overlap) / factor;
  const std::int64_t span = (wrap ? length : length - size) / factor;  // in factors
  // Evenly spread starts differ by ceil(span / parts) factors at most.
  const std::int64_t parts = ceil_div(span, max_step);
  const std::int64_t n = wrap ? std::max<std::int64_t>(parts, 2) : parts + 1;
  axis.starts = spread(span, n, wrap, factor);
  return axis;
}

at::Tensor window_ramp(const AxisWindows& axis, std::int64_t index, std::int64_t overlap) {
  at::Tensor w = at::ones({axis.size}, at::kFloat);  // [size]
  if (axis.count() == 1 || overlap == 0) return w;
  const at::Tensor u = at::arange(axis.size, at::kFloat);  // [size]: 0, 1, ...
  const bool before = axis.wraps || index > 0;
  const bool after = axis.wraps || index < axis.count() - 1;
  if (before) w = at::minimum(w, (u + 0.5) / static_cast<double>(overlap));
  if (after) w = at::minimum(w, (static_cast<double>(axis.size) - u - 0.5) / overlap);
  return w;
}

namespace {

// The windows along an axis, shrunk to the least size (a multiple of factor) that covers it with
// as many windows: length + (n - 1) overlap over n windows, or length / n + overlap wrapping.
AxisWindows fitted_axis(std::int64_t length, std::int64_t size, std::int64_t overlap,
                        std::int64_t factor, bool wrap) {
  AxisWindows axis = axis_windows(length, size, overlap, factor, wrap);
  const std::int64_t n = axis.count();
  if (n == 1) return axis;
  const std::int64_t need =
      wrap ? ceil_div(length, n) + overlap : ceil_div(length + (n - 1) * overlap, n);
  const std::int64_t fitted = std::max(ceil_div(need, factor) * factor, 2 * overlap);
  if (fitted >= size) return axis;
  AxisWindows shrunk = axis_windows(length, fitted, overlap, factor, wrap);
  return shrunk.count() == n ? shrunk : axis;
}

std::int64_t window_side(std::int64_t tile, std::int64_t length, std::int64_t factor) {
  if (tile <= 0) return length;
  return std::max(tile / factor * factor, factor);
}

}  // namespace

TileLayout tile_layout(std::int64_t height, std::int64_t width, std::int64_t tile_height,
                       std::int64_t tile_width, std::int64_t overlap, std::int64_t factor,
                       bool seamless) {
  factor = std::max<std::int64_t>(1, factor);
  const std::int64_t sy = window_side(tile_height, height, factor);
  const std::int64_t sx = window_side(tile_width, width, factor);
  // The overlap matters only along axes with several windows.
  std::int64_t smallest = std::numeric_limits<std::int64_t>::max();
  if (sy < height) smallest = std::min(smallest, sy);
  if (sx < width) smallest = std::min(smallest, sx);
  overlap =
      smallest == std::numeric_limits<std::int64_t>::max()
          ? 0
          : std::clamp<std::int64_t>(overlap / factor * factor, 0, smallest / 2 / factor * factor);
  TileLayout layout;
  layout.rows = fitted_axis(height, sy, overlap, factor, seamless);
  layout.cols = fitted_axis(width, sx, overlap, factor, seamless);
  layout.overlap = overlap;
  return layout;
}

Padding window_padding(const TileLayout& layout, Padding run) {
  return padding_wrapping(wraps_width(run) && layout.cols.count() == 1,
                          wraps_height(run) && layout.rows.count() == 1);
}

namespace {

// [1, 1, sy, sx]: the weight of window (i, j), the product of its row and column ramps.
at::Tensor window_weight(const TileLayout& layout, std::int64_t i, std::int64_t j) {
  const at::Tensor w = at::outer(window_ramp(layout.rows, i, layout.overlap),
                                 window_ramp(layout.cols, j, layout.overlap));  // [sy, sx]
  return w.reshape({1, 1, w.size(0), w.size(1)});
}

}  // namespace

at::Tensor weight_sum(const TileLayout& layout) {
  at::Tensor sum = at::zeros({1, 1, layout.rows.length, layout.cols.length}, at::kFloat);
  for (std::int64_t i = 0; i < layout.rows.count(); ++i) {
    for (std::int64_t j = 0; j < layout.cols.count(); ++j) {
      scatter_add(sum, layout, i, j, window_weight(layout, i, j));
    }
  }
  return sum.reshape({layout.rows.length, layout.cols.length});
}

NetworkFn tiled_network(NetworkFn network, const TileLayout& layout, std::int64_t per_call,
                        StepFn on_window) {
  if (layout.single()) return network;
  auto fusion = std::make_shared<Fusion>();
  fusion->layout = layout;
  fusion->per_call = std::clamp<std::int64_t>(per_call, 1, layout.count());
  for (std::int64_t i = 0; i < layout.rows.count(); ++i) {
    for (std::int64_t j = 0; j < layout.cols.count(); ++j) {
      fusion->weights.push_back(window_weight(layout, i, j));
    }
  }
  fusion->inverse_sum =
      weight_sum(layout).reciprocal().reshape({1, 1, layout.rows.length, layout.cols.length});
  return [network = std::move(network), fusion, on_window = std::move(on_window)](
             const at::Tensor& x, const at::Tensor& t, const Conditioning& cond) {
    const TileLayout& l = fusion->layout;
    if (x.dim() != 4 || x.size(2) != l.rows.length || x.size(3) != l.cols.length) {
      throw Error("tiling: the canvas is not the layout's size");
    }
    const std::int64_t n = x.size(0), total = l.count();
    fusion->place_on(x.device());
    Conditioning window_cond = cond;
    window_cond.padding = window_padding(l, cond.padding);
    at::Tensor sum;  // [N, C_out, H, W] float32, on x's device
    for (std::int64_t first = 0; first < total; first += fusion->per_call) {
      const std::int64_t k = std::min(fusion->per_call, total - first);
      std::vector<at::Tensor> xs, self_conds;
      for (std::int64_t w = first; w < first + k; ++w) {
        const std::int64_t i = w / l.cols.count(), j = w % l.cols.count();
        xs.push_back(gather(gather(x, 2, l.rows, i), 3, l.cols, j));  // [N, C, sy, sx]
        if (cond.self_cond) {
          self_conds.push_back(gather(gather(*cond.self_cond, 2, l.rows, i), 3, l.cols, j));
        }
      }
      Conditioning c = window_cond;
      c.class_labels = per_window(cond.class_labels, n, k);  // [k N] or [1]
      if (cond.self_cond) c.self_cond = at::cat(self_conds, 0);
      const at::Tensor out =
          network(at::cat(xs, 0), per_window(t.reshape({-1}), n, k), c)  // [k N, C_out, sy, sx]
              .to(x.device(), at::kFloat);
      if (!sum.defined()) {
        sum = at::zeros({n, out.size(1), l.rows.length, l.cols.length}, out.options());
      }
      for (std::int64_t w = first; w < first + k; ++w) {
        const at::Tensor part =
            out.narrow(0, (w - first) * n, n) * fusion->weights[static_cast<std::size_t>(w)];
        scatter_add(sum, l, w / l.cols.count(), w % l.cols.count(), part);
      }
      if (on_window && !on_window(static_cast<int>(first + k), static_cast<int>(total))) {
        throw Cancelled();
      }
    }
    return sum.mul_(fusion->inverse_sum);  // [N, C_out, H, W]
  };
}

}  // namespace gd::core
