// Loading a model from a path: sniff the format, read the weights, build the network,
// describe it.
//
//   gd::models::LoadOptions options;              // CPU, float32, EMA weights
//   gd::models::LoadedModel model = gd::models::load_model("google-ddpm-cifar10-32", options);
//   std::puts(gd::models::describe_text(model.info).c_str());
//   at::Tensor eps = model.network->forward(x, t, std::nullopt);
//
// A LoadedModel is heavy and reusable: load it once and sample from it many times.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <memory>
#include <optional>
#include <string>

#include "core/schedule.h"
#include "models/conv_guard.h"
#include "models/ddpm_pytorch_checkpoint.h"
#include "models/mapped_file.h"
#include "models/model_info.h"
#include "models/network.h"

namespace gd::models {

struct LoadOptions {
  // Trainer checkpoints carry two sets of weights: "ema" (the default, what the package
  // samples with) or "model" (the online weights). Empty means the format's default.
  std::string weights;
  // denoising-diffusion-pytorch objective ("pred_noise", "pred_x0", "pred_v") when the
  // checkpoint's loss_weight does not identify it.
  std::optional<std::string> objective;
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::kFloat;
  // Convolution weights laid out channels-last: faster kernels, same results up to float
  // rounding (well inside the 1e-4 the reference checks allow).
  bool channels_last = true;
  // Check the network's convolutions against LibTorch's own kernel and reroute the wrong ones
  // (models/conv_guard.h). Off also with GD_NO_KERNEL_CHECK set.
  bool kernel_check = true;
};

// Where a load's time went, in seconds (tools/benchmark/load_time.cpp prints it). Formats other
// than diffusers folders count reading, building and filling together under `read`.
struct LoadTimes {
  double read = 0;    // configuration files, checkpoint header, mapping the weights
  double build = 0;   // the network's layers and parameter tensors
  double fill = 0;    // the weights into the parameters (ParamStore::load)
  double layout = 0;  // convolution weights to channels-last
  double check = 0;   // the kernel check (models/conv_guard.h)
};

struct LoadedModel {
  ModelInfo info;
  std::unique_ptr<Network> network;
  core::ScheduleConfig schedule;  // the noise schedule the model was trained with
  // For denoising-diffusion-pytorch checkpoints: the diffusion buffers exactly as stored, so
  // that sampling uses the package's own float32 tables.
  std::optional<DdpmDiffusionSettings> ddpm;
  ConvCheckReport kernel_check;  // ran == false when skipped (or a TorchScript network)
  LoadTimes times;
  // The mapped checkpoint, while load_model runs: its pages are released once the parameters
  // are in place (every parameter holds its own copy, so a file changed or truncated later
  // cannot reach a loaded model). Empty afterwards.
  std::shared_ptr<const MappedFile> checkpoint;
};

// What kind of model `path` holds, from names and magic bytes only (no weights are read).
// Defined in model_header.cpp, with the other reads that need no weights.
CheckpointFormat detect_format(const std::string& path);

// fp32 means float32 on CUDA too: turns off LibTorch's default TF32 for cuDNN and cuBLAS
// (load_model calls it; networks built by hand, like the benchmark's, call it themselves).
void exact_float32_on(const c10::Device& device);

// Reads and validates everything; throws gd::Error with a one-line message on any problem.
// model_header.h's read_model_info gives the same info without reading the weights.
LoadedModel load_model(const std::string& path, const LoadOptions& options = {});

}  // namespace gd::models
