// RawTensor (validated checkpoint bytes) -> at::Tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include "models/tensor_data.h"

namespace gd::models {

// A new tensor that owns a copy of the data, on the CPU, in the checkpoint's own dtype.
at::Tensor to_tensor(const RawTensor& raw);

}  // namespace gd::models
