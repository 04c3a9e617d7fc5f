// Reader for the safetensors format (huggingface): an 8-byte little-endian header length, a
// JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes.
//
// Every length, offset, dtype and shape is validated before any tensor byte is touched; each
// problem is one gd::Error line naming the file and the tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/tensor_data.h"

namespace gd::models {

// One tensor as the header describes it, without its bytes.
struct SafetensorsEntry {
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // data_offsets, relative to the data section
  std::uint64_t end = 0;
};

struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;  // by name, without __metadata__
  std::uint64_t data_start = 0;                     // file offset of the data section
};

// Reads only the header of `path` (the file is mapped and just the header's pages are
// touched): every tensor's name, dtype, shape and offsets, validated as read_safetensors
// validates them, except that the data section is never looked at, so a file whose data is
// truncated still has a readable header.
SafetensorsHeader read_safetensors_header(const std::string& path);

// The same over bytes; `label` names the source in errors.
SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes, std::size_t size,
                                           const std::string& label);

// Maps `path` and parses it; the tensors point into the mapping and keep it alive.
TensorMap read_safetensors(const std::string& path);

// Parses safetensors bytes that `owner` keeps alive. `label` names the source in errors.
TensorMap parse_safetensors(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                            std::size_t size, const std::string& label);

}  // namespace gd::models
