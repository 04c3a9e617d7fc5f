// Named tensors as checkpoint readers see them: raw bytes, a dtype, a shape and strides.
//
// This header and the readers behind it (safetensors, torch.save zip + restricted pickle)
// do not depend on LibTorch, so their bad-input tests build and run cheaply under
// AddressSanitizer and UndefinedBehaviorSanitizer. Conversion to at::Tensor happens in
// tensor_convert.h, after every size and offset here has been validated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gd::models {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, Bool };

// Bytes per element.
std::size_t dtype_size(DType dtype);
// "F32", "BF16", ... as safetensors spells them.
const char* dtype_name(DType dtype);

// One tensor inside a checkpoint. `data` points at element [0,...,0]; every element reachable
// through shape and strides lies inside the bytes that `owner` keeps alive (readers check this
// before they hand out a RawTensor).
struct RawTensor {
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;  // in elements, same length as shape
  const std::uint8_t* data = nullptr;
  std::shared_ptr<const void> owner;  // the mapped file or buffer the bytes live in

  std::int64_t numel() const;
  bool is_contiguous() const;
};

// Ordered by name, so listings and error messages are stable.
using TensorMap = std::map<std::string, RawTensor>;

// Row-major strides for a shape.
std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape);

// "[2, 3, 16, 16]"
std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace gd::models
