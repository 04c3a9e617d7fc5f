// Writing a diffusers UNet2DModel folder: config.json, diffusion_pytorch_model.safetensors and
// scheduler_config.json, readable by diffusers' UNet2DModel.from_pretrained /
// DDPMScheduler.from_pretrained and by our own load_model.
//
//   write_diffusers_folder("out/model", unet_config, schedule, ema_network.params()->all());
//
// Every file is written to a temporary name in the folder and renamed into place once complete,
// so an interrupted write never leaves a truncated file under the final name.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "core/schedule.h"
#include "models/diffusers_config.h"

namespace gd::models {

// config.json text with every key UNet2DModel.__init__ takes (unsupported features at their
// "off" values: positional time embedding, no class embedding, dropout 0).
std::string unet2d_config_json(const UNet2DConfig& config);

// scheduler_config.json text for DDPMScheduler. Given (trained) betas are written as
// trained_betas.
std::string scheduler_config_json(const core::ScheduleConfig& schedule);

// The safetensors bytes for `tensors`, stored as F32 (converted from any floating dtype,
// copied to the CPU): 8-byte little-endian header length, JSON header (keys in sorted order,
// "__metadata__": {"format": "pt"}) padded with spaces to a multiple of 8, then the data in the
// same key order. Duplicate names are an error.
std::string safetensors_bytes(const std::vector<std::pair<std::string, at::Tensor>>& tensors);

// Writes `bytes` to `path` through a temporary file in the same folder and a rename; throws
// gd::Error naming the path on failure.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Creates `dir` (and its parents) if needed and writes the three files.
void write_diffusers_folder(const std::string& dir, const UNet2DConfig& config,
                            const core::ScheduleConfig& schedule,
                            const std::vector<std::pair<std::string, at::Tensor>>& weights);

}  // namespace gd::models
