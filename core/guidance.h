// Guidance against the mean class, for class-conditional models.
//
// A class-conditional network asked for "the mean of all class embeddings" predicts a blend of
// everything it learned: soft, low in contrast. Classifier-free guidance (Ho & Salimans 2022)
// pushes each prediction away from such an unconditional one:
//
//   out = u + scale * (c - u)      c: the network for the image's class, u: for the mean class
//
// Our trainer never drops the class, so the mean embedding stands in for the missing null
// class. Guidance may be limited to the low-noise end of the chain (timesteps below a limit),
// where it restores detail and contrast without changing the colours chosen early on, and
// where it costs a second network call per step only.
//
// The output of the network is combined as it is, whatever it predicts: epsilon, x0 and v are
// each affine in the others for a given x_t, so guiding one is guiding all three.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "core/conditioning.h"
#include "core/sampler.h"

namespace gd::core {

struct Guidance {
  double scale = 1.0;  // 1: off (one network call per step); from 1 to kMaxGuidanceScale
  // Guided steps are those whose timestep is below this; the rest are plain. The default guides
  // every step.
  int below_timestep = std::numeric_limits<int>::max();
  bool active() const { return scale != 1.0; }
  bool limited() const { return below_timestep != std::numeric_limits<int>::max(); }
};

inline constexpr double kMaxGuidanceScale = 20.0;

// Throws gd::Error naming the problem: a scale outside [1, kMaxGuidanceScale], a limit outside
// [1, num_train_timesteps] (unless it is the default), or guidance for a model without classes.
void check_guidance(const Guidance& guidance, int num_classes, int num_train_timesteps);
// The same without the model's classes: the scale and the limit alone.
void check_guidance_values(const Guidance& guidance, int num_train_timesteps);

// "guidance 2 below timestep 500", "guidance 2", or "" when off: for progress text and layer
// names, so a result says how it was made.
std::string describe_guidance(const Guidance& guidance);

// The sampler's callback for one run: `network` under the run's conditioning (labels [N] of the
// images' classes, or undefined; padding), guided where `guidance` says. At a guided timestep
// the class and the mean class are evaluated in one call of batch 2N when the batch has at
// most `max_batched_pixels` pixels (N * H * W per half), else in two calls of N; the results
// agree to float rounding. With learned variance (more output channels than
// `prediction_channels`), only the prediction channels are guided; the variance stays the
// class's own. The callback sees the first timestep of t as the batch's (the samplers give
// every image the same one).
ModelFn conditioned_network(const NetworkFn& network, const Conditioning& cond,
                            const Guidance& guidance, std::int64_t prediction_channels,
                            std::int64_t max_batched_pixels);

// Batch 2N guidance up to this many pixels per half (N * H * W). Measured on the CPU (bundled
// model, 2 threads, docs/benchmarks.md): one call of 2N halves a guided 64x64 run, ties at
// 128x128, and is 5-10% slower at 256x256 and 512x512 with twice the peak memory; so larger
// batches are split in two calls of N.
inline constexpr std::int64_t kMaxBatchedGuidancePixels = 128LL * 128LL;

}  // namespace gd::core
