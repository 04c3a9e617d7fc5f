// Test data location and whole-file byte helpers, for every test (LibTorch-free, so the reader
// tests can use it in the sanitizer build).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"

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

// A text file under tests/data.
inline std::string read_text(const std::string& relative) {
  std::ifstream in(data_path(relative), std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + relative);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `fn` and expects a one-line gd::Error (not a cancellation) whose message contains every
// needle.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no gd::Error thrown (expected '" << *needles.begin() << "')";
  } catch (const gd::Cancelled&) {
    ADD_FAILURE() << "gd::Cancelled instead of an error about '" << *needles.begin() << "'";
  } catch (const gd::Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message is not one line: " << message;
    for (const auto& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos)
          << "'" << needle << "' not in: " << message;
    }
  }
}

template <typename Fn>
void expect_error(Fn fn, const std::string& needle) {
  expect_error(fn, {needle});
}

}  // namespace gd::test
