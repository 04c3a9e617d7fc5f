#include "tools/cli/device_option.h"

#include <ATen/Context.h>

#include "core/error.h"
#include "tools/cli/cli_args.h"

namespace gd::cli {

c10::Device parse_device(const std::string& text) {
  if (text == "cpu") return c10::Device(c10::kCPU);
  if (text == "cuda") {
    if (!at::hasCUDA()) {
      throw Error("--device cuda: no CUDA device is available (this build or machine has none); "
                  "use --device cpu or auto");
    }
    return c10::Device(c10::kCUDA, 0);
  }
  if (text == "auto") return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  throw UsageError("--device must be auto, cpu or cuda, not '" + text + "'");
}

}  // namespace gd::cli
