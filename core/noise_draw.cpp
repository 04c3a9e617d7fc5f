#include "core/noise_draw.h"

#include <ATen/ATen.h>

namespace gd::core {

at::Tensor draw_noise(at::IntArrayRef sizes, at::Generator& generator,
                      const at::TensorOptions& like) {
  const at::Tensor noise = at::randn(sizes, generator, at::TensorOptions().dtype(at::kFloat));
  return noise.to(like.device(), like.dtype());  // no copy when already CPU float32
}

}  // namespace gd::core
