// gimp-diffusion-cli: the engine from the command line.
//
// This is a boundary: every exception from the engine ends here as one line on stderr and an
// exit status (0 success, 1 the command failed, 2 wrong usage).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"

namespace {

const char* kUsage =
    "usage: gimp-diffusion-cli COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  info --model PATH [--weights ema|model] [--objective OBJ] [--json]\n"
    "        describe a model: format, architecture, parameters, channels, native size,\n"
    "        downsampling factor, prediction type and noise schedule\n"
    "        --weights    Trainer checkpoints: EMA weights (default) or the online ones\n"
    "        --objective  Trainer checkpoints whose loss_weight does not say it:\n"
    "                     pred_noise, pred_x0 or pred_v\n"
    "        --json       one JSON object instead of text\n"
    "\n"
    "PATH is a diffusers UNet2DModel folder (config.json + diffusion_pytorch_model.safetensors\n"
    "or .bin + scheduler_config.json, or a pipeline folder with unet/ and scheduler/), a\n"
    "denoising-diffusion-pytorch Trainer checkpoint (model-N.pt), or a TorchScript model folder\n"
    "(gimp-diffusion.json + module + scheduler_config.json; see README).\n"
    "\n"
    "exit status: 0 success, 1 the command failed (message on stderr), 2 wrong usage\n";

// Engine and LibTorch messages can span lines (LibTorch appends a backtrace); the contract at
// this boundary is one line.
std::string one_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "info") return gd::cli::run_info(args);
    throw gd::cli::UsageError("unknown command '" + command + "' (try --help)");
  } catch (const gd::cli::UsageError& e) {
    std::fprintf(stderr, "gimp-diffusion-cli: %s\n", one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gimp-diffusion-cli: error: %s\n", one_line(e.what()).c_str());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "gimp-diffusion-cli: error: unexpected failure\n");
    return 1;
  }
}
