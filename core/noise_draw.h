// The one rule for random numbers in a run: drawn from the run's CPU generator in float32, then
// moved to where the canvas is (diffusers' randn_tensor convention). The same seed therefore gives
// the same starting noise, and the same per-step draws, on the CPU and on CUDA.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

namespace gd::core {

// Standard normal noise of `sizes`, drawn on the CPU from `generator`, returned with `like`'s
// device and dtype (one host-to-device copy on CUDA, none on the CPU).
at::Tensor draw_noise(at::IntArrayRef sizes, at::Generator& generator,
                      const at::TensorOptions& like);

}  // namespace gd::core
