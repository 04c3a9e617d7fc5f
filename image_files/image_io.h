// Image files for the CLI, the trainer and the tests: PNG (through libpng) and safetensors (a
// float32 tensor "image").
//
// Deliberately LibTorch-free: images travel as plain interleaved floats so this code and its
// hostile-input tests build and run without LibTorch (and under sanitizers). The caller turns
// an Image into a [1, C, H, W] tensor where it needs one (image_tensor.h, the LibTorch half).
//
// Every failure is one gd::Error line that names the path and the problem
// ("out/x.png: cannot create a file in 'out' (No such file or directory)").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gd::image_files {

// Images larger than this are refused after reading the header and before any pixel buffer is
// allocated: a 100000x100000 PNG header costs 33 bytes but would ask for 160 GB of floats.
// 16384 a side covers every image a pixel-space diffusion model can process; at the limit an
// RGBA image is already 4 GiB of floats.
constexpr int kMaxImageSide = 16384;
constexpr std::int64_t kMaxImagePixels = std::int64_t{1} << 28;  // width * height (* N)

struct Image {
  int width = 0;
  int height = 0;
  // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
  int channels = 0;
  // True when the last channel is alpha (channels 2 and 4). Diffusion models see color only:
  // callers strip it before inference and may put it back afterwards.
  bool has_alpha = false;
  // Precision of the source: 8 or 16 for PNG (1-, 2- and 4-bit and palette images read as 8),
  // 32 for float safetensors. The CLI can use it as the default output depth.
  int bit_depth = 8;
  // Interleaved row-major HWC: pixels[(y * width + x) * channels + c], values in [0, 1].
  std::vector<float> pixels;
};

// Reads a .png or .safetensors file (extension case-insensitive), which must hold exactly one
// image: a safetensors batch with N > 1 is refused with a message naming N (use read_images),
// so no image is ever dropped silently.
//
// PNG: 8- and 16-bit gray, gray+alpha, RGB, RGBA; palette and 1/2/4-bit gray are expanded to
// 8-bit; a tRNS chunk becomes an alpha channel. Values are the stored samples divided by 255 or
// 65535 (no gamma or color-profile conversion). Interlaced files are fine.
//
// safetensors: a tensor named "image", dtype F32, shape [N, C, H, W] or [C, H, W] with C in
// 1..4 (C 2 and 4 mean the last channel is alpha), every value finite and in [0, 1].
Image read_image(const std::string& path);

// As read_image, but returns all N images of a safetensors batch (in order). A PNG gives one.
std::vector<Image> read_images(const std::string& path);

// Writes `image` as a PNG of bit depth 8 or 16, color type from image.channels (1 gray,
// 2 gray+alpha, 3 RGB, 4 RGBA). Values are clamped to [0, 1] (model outputs overshoot slightly)
// and rounded to the nearest level, so a 16-bit round trip is exact to 1/65535. NaN or
// infinite values are refused: they mean the model diverged, and a black pixel would hide it.
//
// The file is written to a temporary name in the same folder and renamed over `path` only once
// complete and flushed to disk, so a failure never leaves a partial or temporary file behind
// and never damages an existing file at `path`.
void write_png(const std::string& path, const Image& image, int bit_depth);

// Writes a safetensors file with one float32 tensor "image" of shape [n, c, h, w] holding
// `nchw` (row-major, exactly n*c*h*w values, stored as given: no clamping, so numerical
// comparisons see the model's raw output). Same temporary-file-and-rename guarantee as
// write_png. Non-finite values are refused.
void write_safetensors_image(const std::string& path, const std::vector<float>& nchw, int n, int c,
                             int h, int w);

// Output names for `count` images: {path} for count 1; otherwise "-0", "-1", ... inserted
// before the extension of the file name ("out/x.png" -> "out/x-0.png", "out/x-1.png"), or
// appended where the name has none ("x" -> "x-0"). A leading dot (".png") is not an
// extension. count 0 gives {}; a negative count is a gd::Error.
std::vector<std::string> numbered_paths(const std::string& path, int count);

}  // namespace gd::image_files
