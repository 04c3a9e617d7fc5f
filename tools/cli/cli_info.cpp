// gimp-diffusion-cli info: load a model and describe it.
#include <cstdio>

#include "engine/gimp_diffusion.h"
#include "models/model_info.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"

namespace gd::cli {

int run_info(const std::vector<std::string>& argv) {
  Args args(argv, {"model", "weights", "objective"}, {"json", "help", "no-kernel-check"});
  if (args.flag("help")) {
    std::puts(
        "usage: gimp-diffusion-cli info --model PATH [--weights ema|model]\n"
        "                              [--objective pred_noise|pred_x0|pred_v] [--json]\n"
        "                              [--no-kernel-check]");
    return 0;
  }
  Request request;
  request.model_path = args.required("model");
  request.weights = args.value("weights").value_or("");
  request.objective = args.value("objective").value_or("");
  request.device = "cpu";
  request.kernel_check = !args.flag("no-kernel-check");
  // Loading the weights (not only reading headers) is what proves the checkpoint usable.
  const Model model = load_model(request);
  const std::string text =
      args.flag("json") ? models::describe_json(model.info()) : models::describe_text(model.info());
  std::fputs(text.c_str(), stdout);
  if (!args.flag("json") && !model.kernel_check().empty()) {
    std::printf("kernel check:       %s\n", model.kernel_check().c_str());
  }
  if (!args.flag("json")) std::printf("memory probe:       %s\n", model.memory_probe().c_str());
  return 0;
}

}  // namespace gd::cli
