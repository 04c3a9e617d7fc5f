// --device auto|cpu|cuda, shared by the sampling commands and train.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace gd::cli {

// "auto": CUDA when this build and machine have it, else the CPU. "cuda" without a CUDA
// device is a gd::Error naming the problem; any other text is a UsageError.
c10::Device parse_device(const std::string& text);

}  // namespace gd::cli
