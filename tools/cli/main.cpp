// gimp-diffusion-cli: the engine from the command line.
//
// This is a boundary: every exception from the engine ends here as one line on stderr and an
// exit status (0 success, 1 the command failed, 2 wrong usage).
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "core/memory_policy.h"
#include "engine/gimp_diffusion.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"

namespace {

const char* kUsage =
    "usage: gimp-diffusion-cli COMMAND [OPTIONS]\n"
    "\n"
    "commands:\n"
    "  info --model PATH [--weights ema|model] [--objective OBJ] [--json] [--no-kernel-check]\n"
    "        describe a model: format, architecture, parameters, channels, native size,\n"
    "        downsampling factor, prediction type and noise schedule\n"
    "        --weights    Trainer checkpoints: EMA weights (default) or the online ones\n"
    "        --objective  Trainer checkpoints whose loss_weight does not say it:\n"
    "                     pred_noise, pred_x0 or pred_v\n"
    "        --json       one JSON object instead of text\n"
    "        (the text ends with the result of the convolution kernel check)\n"
    "  generate [--model PATH] -o OUT [--width W] [--height H] [--batch N] [--seamless]\n"
    "        sample new images (default size: the model's native size)\n"
    "  img2img [--model PATH] -i IN -o OUT [--strength S] [--seamless]\n"
    "        re-noise IN to strength S in (0, 1] (default 0.6) and sample back\n"
    "        --seamless: circular padding, so the result tiles (sizes must be multiples of\n"
    "        the model's downsampling factor)\n"
    "  denoise [--model PATH] -i IN -o OUT [--sigma auto|VALUE]\n"
    "        treat IN as a noisy sample with Gaussian noise of standard deviation VALUE\n"
    "        (0-1 units; auto: estimated from the image) and run the reverse process\n"
    "  train --data DIR --out MODEL_DIR [--resume] [OPTIONS]\n"
    "        train a UNet2DModel on random crops of the PNGs in DIR (flips, 90-degree\n"
    "        rotations); MODEL_DIR becomes a diffusers folder with the EMA weights, and\n"
    "        MODEL_DIR/training/ holds checkpoint.pt and sample grids. Options (default):\n"
    "        --size 64 --batch 16 --steps 10000 --lr 1e-4 --weight-decay 0\n"
    "        --offset-noise 0 (0.1: offset noise, wider range of colour and brightness)\n"
    "        --cooldown 0 (N: the last N steps before --steps lower the learning rate\n"
    "        linearly towards 0; may be set or changed on --resume)\n"
    "        (--size and --offset-noise may change on --resume; the other model and\n"
    "        training options are the checkpoint's)\n"
    "        --objective epsilon|sample|v --schedule linear|squaredcos_cap_v2|sigmoid\n"
    "        --timesteps 1000 --loss l1|l2 (l2) --accumulate 1 --clip 1.0 (0: off)\n"
    "        --ema-decay 0.995 --ema-every 10 --ema-after 100 --save-every 1000\n"
    "        --sample-every 1000 (0: off) --sample-count 4 --sample-steps 50 --log-every 50\n"
    "        --block-channels 32,64,128 --layers-per-block 2 --attention-stages last|none|0,2\n"
    "        (none: no attention at all, middle block included: fully convolutional)\n"
    "        --norm-groups 32 --head-dim 8 --seed S --threads N\n"
    "        --device auto|cpu|cuda (auto) --bf16 (bfloat16 autocast; both may change on "
    "--resume)\n"
    "        --tile (repeat images smaller than the crop: seamless textures)\n"
    "        --classes (one class per image, named after its file: a class-conditional\n"
    "        model whose --class picks the texture to make variations of)\n"
    "        --init MODEL_DIR (new runs: start from a diffusers folder's weights; give its\n"
    "        architecture options. Its class embedding, if any, is kept only if it fits)\n"
    "\n"
    "sampling options (generate, img2img, denoise):\n"
    "  --model PATH     default: $GIMP_DIFFUSION_MODEL, else the bundled texture model\n"
    "  --dry-run        read the inputs, load the model, check every option against it,\n"
    "                   print the plan and stop: nothing is written (-o may be left out)\n"
    "  --no-kernel-check  skip checking the model's convolutions against LibTorch's own\n"
    "                   kernel at load (also GD_NO_KERNEL_CHECK=1; docs/numerics.md)\n"
    "  --sampler ddpm|ddim|dpmpp_2m|euler|euler_a   default: the model's own scheduler\n"
    "  --steps N        default: full chain for ddpm, 50 for ddim, 20 for the solvers\n"
    "  --eta E          DDIM stochasticity in [0, 1] (default 0)\n"
    "  --seed S         default: random (the seed used is printed)\n"
    "  --device auto|cpu|cuda   default auto: CUDA when present\n"
    "  --precision auto|fp32|bf16|fp16   the network's precision (sampling stays fp32);\n"
    "                   default auto: bf16 on CUDA devices that support it, fp32 on the\n"
    "                   CPU (exact). bf16 is ~3x faster on CPUs with AVX-512 bf16, close\n"
    "                   but not equal to the reference; fp16 is CUDA only\n"
    "  --threads N      CPU threads, 0 or more (default 0: automatic, all cores on an idle\n"
    "                   machine, fewer when other programs keep cores busy)\n"
    "  --tile-size auto|none|N\n"
    "                   the largest window (pixels a side) the network sees at once; the\n"
    "                   canvas is fused from overlapping windows without seams (default\n"
    "                   auto: the native size for networks with attention, else the largest\n"
    "                   window the memory budget allows; none: the whole canvas at once)\n"
    "  --tile-overlap N pixels neighbouring windows share (default 64, at most a quarter\n"
    "                   of the window)\n"
    "  --max-memory SIZE  the run's memory budget, e.g. 4G or 512M (default: 80% of the\n"
    "                   memory available); a run that cannot fit stops before it starts\n"
    "  --weights ema|model, --objective OBJ   as for info\n"
    "  --bit-depth 8|16 PNG output depth (default: the input's, or 8)\n"
    "  --class NAME|N   class-conditional models: the class (info lists them). Default:\n"
    "                   generate draws it from the seed; img2img and denoise take the\n"
    "                   class that fits the input best\n"
    "  --guidance W     class-conditional models: guidance against the mean class, from 1\n"
    "                   (off) to 20. Default: generate uses the model's (info shows it;\n"
    "                   the bundled model's is 2.5 below timestep 300), the others none\n"
    "  --guidance-below T\n"
    "                   guide only the steps whose timestep is below T (default: the\n"
    "                   model's limit for generate, else every step; needs guidance)\n"
    "IN and OUT are .png (8- or 16-bit, gray or RGB, with or without alpha) or .safetensors\n"
    "(tensor \"image\", float32, N x C x H x W in [0, 1]). Alpha passes through untouched.\n"
    "Batches written as PNG get -0, -1, ... before the extension.\n"
    "\n"
    "PATH is a diffusers UNet2DModel folder (config.json + diffusion_pytorch_model.safetensors\n"
    "or .bin + scheduler_config.json, or a pipeline folder with unet/ and scheduler/), a\n"
    "denoising-diffusion-pytorch Trainer checkpoint (model-N.pt), or a TorchScript model folder\n"
    "(gimp-diffusion.json + module + scheduler_config.json; see docs/models.md).\n"
    "\n"
    "exit status: 0 success, 1 the command failed (message on stderr), 2 wrong usage\n";

// Engine and LibTorch messages can span lines (LibTorch appends a backtrace); the contract at
// this boundary is one line.
std::string one_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// An engine RequestError in the CLI's words: its field as the option ("steps" -> "--steps",
// "guidance_below" -> "--guidance-below", "class_name" -> "--class", "image" -> "--input").
std::string option_message(const gd::RequestError& error) {
  const std::string& field = error.field();
  std::string option = field == "class_name"   ? "class"
                       : field == "image"      ? "input"
                       : field == "model_path" ? "model"
                                               : field;
  for (char& c : option) c = c == '_' ? '-' : c;
  option = "--" + option;
  const std::string text = error.what();
  // "steps 101 exceeds ..." reads "--steps 101 exceeds ..."; other sentences get the option first.
  if (text.rfind(field + " ", 0) == 0) return option + text.substr(field.size());
  return option + ": " + text;
}

}  // namespace

int main(int argc, char** argv) {
  gd::core::reuse_freed_memory();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "info") return gd::cli::run_info(args);
    if (command == "generate" || command == "img2img" || command == "denoise") {
      return gd::cli::run_sample_command(command, args);
    }
    if (command == "train") return gd::cli::run_train(args);
    throw gd::cli::UsageError("unknown command '" + command + "' (try --help)");
  } catch (
      const gd::RequestError& e) {  // wrong for any model: usage (2); for this model: failed (1)
    const std::string text = one_line(option_message(e));
    if (!e.about_model()) std::fprintf(stderr, "gimp-diffusion-cli: %s\n", text.c_str());
    else std::fprintf(stderr, "gimp-diffusion-cli: error: %s\n", text.c_str());
    return e.about_model() ? 1 : 2;
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
