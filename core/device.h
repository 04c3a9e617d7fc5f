// Where a run computes: "auto" (CUDA when this build and machine have it, else the CPU), "cpu"
// or "cuda". The one place a device name is read, for the engine and the trainer alike.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace gd::core {

// Throws gd::Error naming the problem for "cuda" without a CUDA device, or any other text.
c10::Device parse_device(const std::string& text);

}  // namespace gd::core
