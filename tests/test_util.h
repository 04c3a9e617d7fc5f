// Helpers shared by the LibTorch tests: where the test data lives, and fixture tensors.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

#include "models/safetensors_reader.h"
#include "models/tensor_convert.h"

namespace gd::test {

// tests/data, from TEST_DATA_DIR (set by meson test) or the path compiled in.
inline std::string data_dir() {
  if (const char* dir = std::getenv("TEST_DATA_DIR")) return dir;
#ifdef GD_TEST_DATA_DIR
  return GD_TEST_DATA_DIR;
#else
  return "tests/data";
#endif
}

inline std::string data_path(const std::string& relative) { return data_dir() + "/" + relative; }

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
