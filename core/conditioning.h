// What a single network call depends on besides its input and timesteps: the class of each
// image, the padding of the convolutions and the self-conditioning input.
//
// It is an argument of every call (Network::forward), never state on a loaded model, so one
// loaded model can serve several runs at once, and calls with different classes or padding can
// share a batch.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>

namespace gd::core {

// The class label that stands for the mean of all class embeddings (what guidance steers away
// from; core/guidance.h).
inline constexpr std::int64_t kMeanClassLabel = -1;

enum class Padding {
  Zeros,     // the networks' own (and the reference's) zero padding
  Circular,  // wrap-around: left meets right and top meets bottom, so the output tiles
  // Wrap-around along one axis, zeros along the other: a window of a tiled seamless canvas that
  // spans the whole canvas along that axis (core/tiling.h).
  CircularWidth,   // left meets right
  CircularHeight,  // top meets bottom
};

inline bool wraps_width(Padding p) { return p == Padding::Circular || p == Padding::CircularWidth; }
inline bool wraps_height(Padding p) {
  return p == Padding::Circular || p == Padding::CircularHeight;
}
// The padding that wraps the axes given.
inline Padding padding_wrapping(bool width, bool height) {
  if (width && height) return Padding::Circular;
  if (width) return Padding::CircularWidth;
  if (height) return Padding::CircularHeight;
  return Padding::Zeros;
}

struct Conditioning {
  // Class-conditional networks: [N] or [1] int64 labels, each in [0, classes) or
  // kMeanClassLabel (for networks that implement it); undefined for unconditional networks.
  at::Tensor class_labels;
  Padding padding = Padding::Zeros;
  // Self-conditioned networks: the previous x0 estimate [N, C, H, W]; empty otherwise.
  std::optional<at::Tensor> self_cond;

  // A call with only a self-conditioning input (or none): no classes, zero padding.
  static Conditioning self_conditioned(const std::optional<at::Tensor>& self_cond) {
    Conditioning c;
    c.self_cond = self_cond;
    return c;
  }
};

// The network of a loaded model: raw output [N, C_out, H, W] for (x, t, conditioning). It must
// be safe to call from several threads at once (models::Network::forward is).
using NetworkFn =
    std::function<at::Tensor(const at::Tensor& x, const at::Tensor& t, const Conditioning& cond)>;

}  // namespace gd::core
