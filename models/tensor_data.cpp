#include "models/tensor_data.h"

#include <sstream>

namespace gd::models {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64: return 8;
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::I32: return 4;
    case DType::I16: return 2;
    case DType::I8: return 1;
    case DType::U8: return 1;
    case DType::Bool: return 1;
  }
  return 1;  // unreachable: every enumerator is handled above
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

std::int64_t RawTensor::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;  // readers have already checked this cannot overflow
  return n;
}

bool RawTensor::is_contiguous() const {
  if (strides.size() != shape.size()) return false;
  for (std::int64_t d : shape) {
    if (d == 0) return true;  // an empty tensor has no layout to get wrong
  }
  std::int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    // Dimensions of size 1 may carry any stride without changing the layout.
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

std::vector<std::int64_t> contiguous_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t stride = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    // Zero-sized dimensions would make every later stride 0; keep them at least 1 like torch.
    stride *= shape[i] > 1 ? shape[i] : 1;
  }
  return strides;
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out << ", ";
    out << shape[i];
  }
  out << ']';
  return out.str();
}

}  // namespace gd::models
