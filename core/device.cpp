#include "core/device.h"

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include "core/error.h"

namespace gd::core {

c10::Device parse_device(const std::string& text) {
  if (text == "cpu") return c10::Device(c10::kCPU);
  if (text == "cuda") {
    if (!at::hasCUDA()) {
      throw Error(
          "device cuda: no CUDA device is available (this build or machine has none); choose cpu "
          "or auto");
    }
    return c10::Device(c10::kCUDA, 0);
  }
  if (text == "auto" || text.empty())
    return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  throw Error("device must be auto, cpu or cuda, not '" + text + "'");
}

bool cuda_bf16_supported() {
  // The CUDA hooks are registered by libtorch_cuda; in a CPU-only build they answer false.
  return at::hasCUDA() && at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8();
}

c10::ScalarType parse_precision(const std::string& text, const c10::Device& device) {
  const bool cuda = device.is_cuda();
  if (text == "auto" || text.empty()) {
    // The CPU stays fp32 until bf16's deviation on the bundled model is measured and decided
    // (docs/numerics.md, "bf16 on the CPU").
    return cuda && cuda_bf16_supported() ? at::kBFloat16 : at::kFloat;
  }
  if (text == "fp32") return at::kFloat;
  if (text == "bf16") return at::kBFloat16;
  if (text == "fp16") {
    if (!cuda) throw Error("precision fp16 needs a CUDA device; on the CPU use fp32 or bf16");
    return at::kHalf;
  }
  throw Error("precision must be auto, fp32, bf16 or fp16, not '" + text + "'");
}

std::string precision_name(c10::ScalarType dtype) {
  if (dtype == at::kBFloat16) return "bf16";
  if (dtype == at::kHalf) return "fp16";
  return "fp32";
}

}  // namespace gd::core
