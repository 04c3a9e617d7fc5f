// Reader for the safetensors format (huggingface): an 8-byte little-endian header length, a
// JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes.
//
// Every length, offset, dtype and shape is validated before any tensor byte is touched; each
// problem is one gd::Error line naming the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "models/tensor_data.h"

namespace gd::models {

// Maps `path` and parses it; the tensors point into the mapping and keep it alive.
TensorMap read_safetensors(const std::string& path);

// Parses safetensors bytes that `owner` keeps alive. `label` names the source in errors.
TensorMap parse_safetensors(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                            std::size_t size, const std::string& label);

}  // namespace gd::models
