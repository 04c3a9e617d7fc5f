// The neutral description of a loaded model: what `gimp-diffusion-cli info` prints and what the
// plug-in's dialog summarises. Filled by the loader from whichever format was read.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/guidance.h"
#include "core/schedule.h"

namespace gd::models {

enum class CheckpointFormat {
  Diffusers,    // a diffusers UNet2DModel folder, flat or in a pipeline's unet/ folder
  DdpmPytorch,  // a denoising-diffusion-pytorch Trainer checkpoint (model-N.pt)
  TorchScript,  // our documented folder around a TorchScript module
};

struct ModelInfo {
  std::string path;
  CheckpointFormat format = CheckpointFormat::Diffusers;
  std::string format_detail;  // e.g. "pipeline folder (unet/, scheduler/), safetensors weights"
  std::string architecture;   // e.g. "UNet2DModel"
  std::string structure;      // one line: stages, widths, attention placement
  std::string weights;        // "ema" or "model" for Trainer checkpoints, else empty
  std::int64_t parameter_count = 0;  // 0: not known (read_model_info of a TorchScript folder)
  int in_channels = 3;               // image channels the network reads (without self-conditioning)
  int out_channels = 3;              // image channels it predicts (without learned variance)
  int native_height = 0;             // training size; 0 when the format does not say
  int native_width = 0;
  int downsampling_factor = 1;  // width and height must be multiples of this
  bool self_condition = false;
  // Whether the network has attention layers, which see the whole image at once: tiled runs
  // then default to windows of the native size, which it was trained at (core/tiling.h). True
  // when not known (TorchScript).
  bool attention = true;
  bool learned_variance = false;
  core::PredictionType prediction_type = core::PredictionType::Epsilon;
  std::string beta_schedule;  // diffusers' name, or what a Trainer checkpoint's betas match
  int num_train_timesteps = 1000;
  std::string default_spacing;           // how inference timesteps are chosen by default
  std::int64_t num_classes = 0;          // class-conditional models: how many classes, else 0
  std::vector<std::string> class_names;  // their names (classes.json), empty when unnamed
  core::Guidance generate_guidance;      // Generate's default (guidance.json); off without one
  std::vector<std::string> notes;
};

const char* format_name(
    CheckpointFormat format);  // "diffusers", "denoising-diffusion-pytorch", "torchscript"

// Human-readable, several lines, aligned "key: value".
std::string describe_text(const ModelInfo& info);

// One JSON object, for scripts.
std::string describe_json(const ModelInfo& info);

}  // namespace gd::models
