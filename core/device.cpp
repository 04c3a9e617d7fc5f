#include "core/device.h"

#include <ATen/Context.h>

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

}  // namespace gd::core
