// Wrap-around padding for seamless textures, in the input's memory layout.
//
// at::pad(x, ..., "circular") returns a row-major (NCHW) tensor even for a channels-last input,
// so every padded convolution of a channels-last network paid two layout conversions: the pad
// itself transposed the activation and the convolution converted it back. The values are the
// same; only the layout differs.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/conditioning.h"

namespace gd::models {

// [N, C, H, W] -> [N, C, top + H + bottom, left + W + right], each pad taken from the opposite
// edge (as at::pad's "circular" mode, whose result it equals), in x's suggested memory format.
// Each pad must be at most the size of its dimension.
at::Tensor circular_pad(const at::Tensor& x, std::int64_t left, std::int64_t right,
                        std::int64_t top, std::int64_t bottom);

// The same pads, circular along the axes `mode` wraps and zeros along the others (all zeros for
// Padding::Zeros).
at::Tensor pad_by_mode(const at::Tensor& x, core::Padding mode, std::int64_t left,
                       std::int64_t right, std::int64_t top, std::int64_t bottom);

}  // namespace gd::models
