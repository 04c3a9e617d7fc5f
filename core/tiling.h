// Windowed (tiled) network evaluation: any canvas size in bounded memory.
//
// MultiDiffusion (Bar-Tal et al. 2023): the sampler works on the whole canvas as usual, but the
// network's output for the canvas is fused from overlapping windows,
//
//   out(p) = sum_w ramp_w(p) * net(x[w])(p) / sum_w ramp_w(p)
//
// where ramp_w is 1 inside window w and falls linearly to near 0 over the overlap on each side
// that another window covers, so the fused output has no steps at window edges. The sampler
// never knows: it sees one network output for the canvas, and its random numbers are drawn for
// the canvas as before. A canvas that fits in one window calls the network once, unchanged.
//
// Seamless runs wrap the windows around the canvas edges (a torus), so every edge is blended
// like an interior one. A window that spans the whole canvas along an axis pads circularly
// along that axis (it wraps onto itself); windows pad with zeros where they end inside the
// canvas, which the ramps fade out.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/conditioning.h"
#include "core/sampler.h"

namespace gd::core {

// The windows along one axis of a canvas.
struct AxisWindows {
  std::int64_t length = 0;  // the canvas's, in pixels
  std::int64_t size = 0;    // each window's (the whole length when one window spans the axis)
  bool wraps = false;       // windows continue past the end from the start (seamless)
  std::vector<std::int64_t> starts;  // first pixel of each window, ascending

  std::int64_t count() const { return static_cast<std::int64_t>(starts.size()); }
};

// Windows of `size` (a multiple of `factor`) along an axis of `length` (a multiple of
// `factor`), each overlapping its neighbours by at least `overlap` pixels (at most size / 2 and
// size - factor),
// starting at multiples of `factor` so that every window's downsampling grid is the canvas's.
// As few windows as that allows, spread evenly; one window of the whole length when it fits.
// `wrap`: the canvas is periodic along the axis (seamless), so windows wrap past its end.
AxisWindows axis_windows(std::int64_t length, std::int64_t size, std::int64_t overlap,
                         std::int64_t factor, bool wrap);

// [size] float32 weights of window `index`: 1, falling linearly as (u + 0.5) / overlap towards
// each end that another window covers (both ends of a wrapping window, none at a canvas edge).
at::Tensor window_ramp(const AxisWindows& axis, std::int64_t index, std::int64_t overlap);

// The windows of a canvas: rows (y) and columns (x).
struct TileLayout {
  AxisWindows rows, cols;
  std::int64_t overlap = 0;

  std::int64_t count() const { return rows.count() * cols.count(); }
  bool single() const { return count() == 1; }
};

// Windows of at most tile_height x tile_width pixels (0: the whole canvas along that axis) over
// a height x width canvas (multiples of factor), wrapping for seamless runs. The sizes and the
// overlap are rounded down to multiples of factor (sizes at least factor), the overlap is capped
// at half the smaller size, and each axis's windows are then shrunk to the least size that
// covers it with as many windows, so no pixel is computed more often than it must be.
TileLayout tile_layout(std::int64_t height, std::int64_t width, std::int64_t tile_height,
                       std::int64_t tile_width, std::int64_t overlap, std::int64_t factor,
                       bool seamless);

// The padding a window of the layout runs with, for a run padded with `run`: `run`'s wrapping
// along an axis that one window spans, zeros along the others.
Padding window_padding(const TileLayout& layout, Padding run);

// [H, W] float32: the sum of every window's weight at each canvas pixel (fusion's divisor).
at::Tensor weight_sum(const TileLayout& layout);

// The network over the canvas fused from the layout's windows, `per_call` windows to a network
// call (batched along N). x: [N, C, H, W] of the layout's canvas; the output is float32 on the
// CPU. After each call, on_window(windows done, windows in all) when set; false cancels
// (gd::Cancelled) between windows. A single-window layout is the network itself.
NetworkFn tiled_network(NetworkFn network, const TileLayout& layout, std::int64_t per_call,
                        StepFn on_window);

}  // namespace gd::core
