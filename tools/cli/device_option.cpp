#include "tools/cli/device_option.h"

#include "core/device.h"
#include "core/error.h"
#include "tools/cli/cli_args.h"

namespace gd::cli {

c10::Device parse_device(const std::string& text) {
  try {
    return core::parse_device(text);
  } catch (const Error& e) {
    if (text == "cuda") throw;  // a fact about this machine, not a usage error
    throw UsageError("--" +
                     std::string(e.what()));  // "--device must be auto, cpu or cuda, not 'x'"
  }
}

}  // namespace gd::cli
