// Where a run computes and in which precision: "auto" (CUDA when this build and machine have it,
// else the CPU), "cpu" or "cuda"; precision "auto", "fp32", "bf16" or "fp16". The one place these
// names are read, for the engine and the trainer alike.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace gd::core {

// Throws gd::Error naming the problem for "cuda" without a CUDA device, or any other text.
c10::Device parse_device(const std::string& text);

// The network's dtype for a precision name on a device (sampling always stays float32):
//   auto: bf16 on CUDA devices with bf16 convolutions (compute capability 8.0 and later, cuDNN
//         8+), fp32 on older CUDA devices and on the CPU (docs/numerics.md has the bf16 figures);
//   fp32, bf16: as named, on any device;
//   fp16: CUDA only (LibTorch's CPU half kernels are slow and partly missing).
// Throws gd::Error naming the problem for fp16 on the CPU or any other text.
c10::ScalarType parse_precision(const std::string& text, const c10::Device& device);

// "fp32", "bf16" or "fp16".
std::string precision_name(c10::ScalarType dtype);

// Whether this CUDA build and device run bf16 convolutions natively (false without CUDA).
bool cuda_bf16_supported();

}  // namespace gd::core
