// Between the image files (image_files/image_io.h, LibTorch-free) and the engine's
// [N, C, H, W] float tensors. The LibTorch half of gd_image_files, in its own library
// (gd_image_tensor) so that image_io builds without LibTorch.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace gd::image_files {

struct LoadedImage {
  at::Tensor pixels;  // [N, C, H, W] float32 in [0, 1], alpha last when has_alpha
  bool has_alpha = false;
  int bit_depth = 8;  // of the source (8/16 for PNG, 32 for safetensors)
};

// Fails early, before any work, when `path` (or, for a batch, its numbered siblings) cannot be
// created: missing folder, no permission, or a folder in the way.
void check_writable(const std::string& path);

LoadedImage read_image_tensor(const std::string& path);

// By the extension of `path` (case-insensitive; anything but .png or .safetensors is a
// gd::Error): PNG, one file per image (numbered when N > 1), 8 or 16 bits; safetensors, one
// file, all N. `images` is [N, C, H, W], clamped to [0, 1].
void write_image_tensor(const std::string& path, const at::Tensor& images, int bit_depth);

}  // namespace gd::image_files
