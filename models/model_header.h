// A model's description without its weights: the ModelInfo that load_model(path).info gives,
// read from the model's small files and the headers of its weight files, cheap enough to run
// on every pause in typing.
//
//   gd::models::ModelInfo info = gd::models::read_model_info("models/checkpoints/gimp-patterns");
//   std::puts(gd::models::describe_text(info).c_str());
//
// What is read, per format:
//   diffusers             config.json, scheduler_config.json, classes.json, guidance.json, and
//                         the weights' tensor shapes: the safetensors header (the data section
//                         is never touched) or the .bin checkpoint's pickle;
//   Trainer checkpoints   the zip directory and the pickle (tensor shapes, from which the Unet
//                         is inferred), and of the tensor data only the diffusion schedule
//                         buffers (betas, loss_weight, ...: a few kB); never the Unet weights;
//   TorchScript           gimp-diffusion.json and scheduler_config.json; the module is not
//                         loaded, so parameter_count is 0 and a note says it is not known.
// Every other field equals load_model's. Problems that only the weights show (a truncated data
// section, a tensor the configuration does not expect) go unnoticed until load_model.
#pragma once

#include <cstdint>
#include <string>

#include "core/schedule.h"
#include "models/ddpm_pytorch_checkpoint.h"
#include "models/diffusers_config.h"
#include "models/model_info.h"
#include "models/model_loader.h"

namespace gd::models {

// Throws gd::Error with a one-line message naming the file on any problem, as load_model does.
ModelInfo read_model_info(const std::string& path, const LoadOptions& options = {});

// ---- The steps load_model shares (model_loader.cpp) -----------------------------------------
// Each reads one format's description and fills every ModelInfo field except parameter_count,
// which read_model_info takes from the weights' shapes and load_model from the built network.
namespace model_header {

// The format of `path` (detect_format, which is defined in model_header.cpp too) and the file
// or folder to read: the newest model-N.pt of a Trainer results folder, else `path` itself.
// Checks options.weights against the format.
struct ModelSource {
  CheckpointFormat format = CheckpointFormat::Diffusers;
  std::string path;
};
ModelSource find_model_source(const std::string& path, const LoadOptions& options);

struct DiffusersModel {
  std::string config_path, weights_path, scheduler_path;
  bool safetensors = true;  // else a torch .bin
  UNet2DConfig config;
  core::ScheduleConfig schedule;
  ModelInfo info;
};
DiffusersModel read_diffusers(const std::string& dir);

// The checkpoint's tensors point into its mapping; only the schedule buffers have been read.
struct DdpmModel {
  DdpmCheckpoint checkpoint;
  core::ScheduleConfig schedule;
  ModelInfo info;
};
DdpmModel read_ddpm(const std::string& file, const LoadOptions& options);

struct TorchScriptModel {
  std::string module_path;
  core::ScheduleConfig schedule;
  ModelInfo info;
};
TorchScriptModel read_torchscript(const std::string& dir);

}  // namespace model_header

}  // namespace gd::models
