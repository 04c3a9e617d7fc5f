// gimp-diffusion-cli info: load a model and describe it.
#include <cstdio>

#include "models/model_loader.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"

namespace gd::cli {

int run_info(const std::vector<std::string>& argv) {
  Args args(argv, {"model", "weights", "objective"}, {"json", "help"});
  if (args.flag("help")) {
    std::puts(
        "usage: gimp-diffusion-cli info --model PATH [--weights ema|model]\n"
        "                              [--objective pred_noise|pred_x0|pred_v] [--json]");
    return 0;
  }
  models::LoadOptions options;
  options.weights = args.value("weights").value_or("");
  if (!options.weights.empty() && options.weights != "ema" && options.weights != "model") {
    throw UsageError("--weights must be 'ema' or 'model', not '" + options.weights + "'");
  }
  if (auto objective = args.value("objective")) {
    if (*objective != "pred_noise" && *objective != "pred_x0" && *objective != "pred_v") {
      throw UsageError("--objective must be pred_noise, pred_x0 or pred_v, not '" + *objective + "'");
    }
    options.objective = *objective;
  }
  // Loading the weights (not only reading headers) is what proves the checkpoint usable.
  models::LoadedModel model = models::load_model(args.required("model"), options);
  const std::string text = args.flag("json") ? models::describe_json(model.info)
                                             : models::describe_text(model.info);
  std::fputs(text.c_str(), stdout);
  return 0;
}

}  // namespace gd::cli
