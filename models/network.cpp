// Shared behaviour of the Network interface: checking a call's conditioning.
#include "models/network.h"

#include <ATen/ATen.h>

#include "core/class_errors.h"
#include "core/error.h"

namespace gd::models {

void check_class_labels(const at::Tensor& labels, std::int64_t num_classes, bool allow_mean) {
  if (!labels.defined()) return;
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

void check_conditioning(const core::Conditioning& cond, std::int64_t num_classes, bool allow_mean,
                        bool circular_ok, const char* what) {
  check_class_labels(cond.class_labels, num_classes, allow_mean);
  if (num_classes > 0 && !cond.class_labels.defined()) {
    throw Error(std::string(what) + ": this model is class-conditional (" +
                std::to_string(num_classes) + " classes) and was given no class");
  }
  if (cond.padding != core::Padding::Zeros && !circular_ok) {
    throw Error(std::string(what) +
                ": this model cannot pad circularly (its padding is not ours to change)");
  }
}

}  // namespace gd::models
