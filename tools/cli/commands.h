// One function per subcommand; each takes the arguments after the command name and returns
// the exit status. They may throw gd::Error or UsageError: main() turns those into one line.
#pragma once

#include <string>
#include <vector>

namespace gd::cli {

int run_info(const std::vector<std::string>& args);
// generate, img2img, denoise, inpaint, make-seamless.
int run_sample_command(const std::string& command, const std::vector<std::string>& args);
// train: a UNet2DModel from a folder of PNGs (tools/cli/cli_train.cpp).
int run_train(const std::vector<std::string>& args);

}  // namespace gd::cli
