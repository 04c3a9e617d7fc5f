// Helpers shared by the LibTorch tests: where the test data lives, and fixture tensors.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "models/safetensors_reader.h"
#include "models/tensor_convert.h"
#include "tests/test_files.h"

namespace gd::test {

// One tensor of a fixture file, as an owning CPU tensor in the file's dtype.
inline at::Tensor fixture_tensor(const std::string& relative_file, const std::string& name) {
  models::TensorMap tensors = models::read_safetensors(data_path(relative_file));
  auto it = tensors.find(name);
  if (it == tensors.end()) throw std::runtime_error(relative_file + " has no tensor " + name);
  return models::to_tensor(it->second);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace gd::test
