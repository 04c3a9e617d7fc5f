// Between the CLI's image files (tools/cli/image_io.h, LibTorch-free) and the engine's
// [N, C, H, W] float tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace gd::cli {

struct LoadedImage {
  at::Tensor pixels;       // [N, C, H, W] float32 in [0, 1], alpha last when has_alpha
  bool has_alpha = false;
  int bit_depth = 8;       // of the source (8/16 for PNG, 32 for safetensors)
};

// ".png" or ".safetensors" (lower case); anything else is a UsageError naming the path.
std::string output_extension(const std::string& path);

// Fails early, before any work, when `path` (or, for a batch, its numbered siblings) cannot be
// created: missing folder, no permission, or a folder in the way.
void check_writable(const std::string& path);

LoadedImage read_image_tensor(const std::string& path);

// PNG: one file per image (numbered when N > 1), 8 or 16 bits. safetensors: one file, all N.
void write_image_tensor(const std::string& path, const at::Tensor& images, int bit_depth);

}  // namespace gd::cli
