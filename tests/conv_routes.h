// The routes a float32 convolution takes through LibTorch on the CPU, for the tests of the
// 20/40-channel reference cases (tests/data/diffusers-odd, tests/data/lucidrains-odd).
//
// LibTorch 2.6 sends a float32 convolution to oneDNN, whose Debian 13 build (3.7.2) computes
// 20- and 40-channel layers wrongly on AVX-512 CPUs (docs/numerics.md), only on some routes:
// contiguous 3x3 layers for batches over one or inputs over 20480 values; channels-last 1x1
// layers only with more than one thread (or a batch of 16); channels-last 3x3 ones are right.
// The loader lays weights out channels-last, and tests run one thread, so each case runs on
// three routes: the default, the default with two threads, and the contiguous layout.
#pragma once

#include <ATen/Parallel.h>

#include <vector>

#include "models/model_loader.h"

namespace gd::test {

struct ConvRoute {
  const char* name;
  bool channels_last;
  int threads;
};

inline const std::vector<ConvRoute>& conv_routes() {
  static const std::vector<ConvRoute> routes = {
      {"channels-last, 1 thread (the default)", true, 1},
      {"channels-last, 2 threads", true, 2},
      {"contiguous, 1 thread", false, 1},
  };
  return routes;
}

inline models::LoadOptions load_options(const ConvRoute& route) {
  models::LoadOptions options;
  options.channels_last = route.channels_last;
  return options;
}

// Sets LibTorch's intra-op thread count for a scope.
class ThreadCount {
 public:
  explicit ThreadCount(int threads) : before_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~ThreadCount() { at::set_num_threads(before_); }
  ThreadCount(const ThreadCount&) = delete;
  ThreadCount& operator=(const ThreadCount&) = delete;

 private:
  int before_;
};

}  // namespace gd::test
