#include "models/tensor_convert.h"

#include <ATen/ATen.h>

#include "core/error.h"

namespace gd::models {

namespace {

c10::ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::Bool: return at::kBool;
  }
  throw Error("internal: unknown dtype");
}

}  // namespace

at::Tensor to_tensor(const RawTensor& raw) {
  // The reader validated that every element reachable through shape and strides lies inside
  // the owner's bytes; from_blob only borrows them, clone() makes the tensor self-owned.
  auto options = at::TensorOptions().dtype(scalar_type(raw.dtype));
  void* data = const_cast<std::uint8_t*>(raw.data);
  return at::from_blob(data, raw.shape, raw.strides, options).clone(at::MemoryFormat::Contiguous);
}

at::Tensor borrow_tensor(const RawTensor& raw) {
  // Validated as in to_tensor; the deleter holds the owner, so the bytes outlive every user.
  auto options = at::TensorOptions().dtype(scalar_type(raw.dtype));
  void* data = const_cast<std::uint8_t*>(raw.data);
  std::shared_ptr<const void> owner = raw.owner;
  return at::from_blob(
      data, raw.shape, raw.strides, [owner](void*) mutable { owner.reset(); }, options);
}

}  // namespace gd::models
