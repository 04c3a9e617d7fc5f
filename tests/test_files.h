// Test data location and whole-file byte helpers, for every test (LibTorch-free, so the reader
// tests can use it in the sanitizer build).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace gd::test {

// tests/data, from TEST_DATA_DIR (set by meson test) or the path compiled in.
inline std::string data_dir() {
  const char* env = std::getenv("TEST_DATA_DIR");
  if (env != nullptr && *env != '\0') return env;
#ifdef GD_TEST_DATA_DIR
  return GD_TEST_DATA_DIR;
#else
  return "tests/data";
#endif
}

inline std::string data_path(const std::string& relative) { return data_dir() + "/" + relative; }

inline std::vector<std::uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace gd::test
