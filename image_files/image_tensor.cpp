#include "image_files/image_tensor.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "image_files/image_io.h"

namespace gd::image_files {

namespace fs = std::filesystem;

void check_writable(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw Error(path + ": is a folder, not an output file");
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (!fs::is_directory(folder, ec))
    throw Error(path + ": folder " + folder.string() + " does not exist");
  if (access(folder.c_str(), W_OK) != 0)
    throw Error(path + ": folder " + folder.string() + " is not writable");
}

LoadedImage read_image_tensor(const std::string& path) {
  std::vector<Image> images = read_images(path);
  if (images.empty()) throw Error(path + ": no image in the file");
  const Image& first = images.front();
  LoadedImage loaded;
  loaded.has_alpha = first.has_alpha;
  loaded.bit_depth = first.bit_depth;
  std::vector<at::Tensor> frames;
  for (const Image& image : images) {
    if (image.width != first.width || image.height != first.height ||
        image.channels != first.channels) {
      throw Error(path + ": the images in one file must share size and channels");
    }
    // HWC floats -> [1, C, H, W]
    at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                   {image.height, image.width, image.channels}, at::kFloat);
    frames.push_back(hwc.permute({2, 0, 1}).unsqueeze(0).clone());
  }
  loaded.pixels = at::cat(frames, 0);
  return loaded;
}

void write_image_tensor(const std::string& path, const at::Tensor& images, int bit_depth) {
  at::Tensor x = images.to(at::kCPU, at::kFloat).clamp(0, 1).contiguous();  // [N, C, H, W]
  const int n = static_cast<int>(x.size(0)), c = static_cast<int>(x.size(1));
  const int h = static_cast<int>(x.size(2)), w = static_cast<int>(x.size(3));
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return std::tolower(ch); });
  if (ext != ".png" && ext != ".safetensors") {
    throw Error(path + ": cannot write images as '" + ext + "' (.png or .safetensors)");
  }
  if (ext == ".safetensors") {
    std::vector<float> nchw(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
    write_safetensors_image(path, nchw, n, c, h, w);
    return;
  }
  const std::vector<std::string> paths = numbered_paths(path, n);
  for (int i = 0; i < n; ++i) {
    Image image;
    image.width = w;
    image.height = h;
    image.channels = c;
    image.has_alpha = c == 2 || c == 4;
    at::Tensor hwc = x[i].permute({1, 2, 0}).contiguous();
    image.pixels.assign(hwc.data_ptr<float>(), hwc.data_ptr<float>() + hwc.numel());
    write_png(paths[i], image, bit_depth == 16 ? 16 : 8);
  }
}

}  // namespace gd::image_files
