// Shared behaviour of the Network interface: class labels.
#include "models/network.h"

#include <ATen/ATen.h>

#include "core/class_errors.h"
#include "core/error.h"
#include "core/guidance.h"

namespace gd::models {

void check_class_labels(const at::Tensor& labels, std::int64_t num_classes, bool allow_mean) {
  if (num_classes <= 0) throw not_class_conditional();
  if (labels.dim() > 1 || labels.numel() < 1 || labels.scalar_type() != at::kLong) {
    throw Error("class labels must be a non-empty [N] int64 tensor");
  }
  const at::Tensor cpu = labels.to(at::kCPU);
  const std::int64_t lo = cpu.min().item<std::int64_t>(), hi = cpu.max().item<std::int64_t>();
  const std::int64_t lowest = allow_mean ? core::kMeanClassLabel : 0;
  if (lo < lowest || hi >= num_classes) {
    throw class_out_of_range(std::to_string(lo < lowest ? lo : hi), num_classes);
  }
}

void Network::set_class_labels(const at::Tensor& labels) {
  if (labels.defined()) check_class_labels(labels, num_classes());
}

}  // namespace gd::models
