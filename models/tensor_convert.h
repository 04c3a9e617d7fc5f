// RawTensor (validated checkpoint bytes) -> at::Tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include "models/tensor_data.h"

namespace gd::models {

// A new tensor that owns a copy of the data, on the CPU, in the checkpoint's own dtype.
at::Tensor to_tensor(const RawTensor& raw);

// A CPU tensor over the checkpoint's own bytes, no copy: it keeps raw.owner (the mapped file)
// alive for as long as it or any tensor sharing its storage lives. Writing to it changes only
// this process's private copy of the pages (map_file maps copy-on-write), never the file.
at::Tensor borrow_tensor(const RawTensor& raw);

}  // namespace gd::models
