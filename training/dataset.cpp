#include "training/dataset.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "image_files/image_io.h"

namespace gd::training {

namespace {

namespace fs = std::filesystem;

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

// The .png files under `dir`, sorted by path.
std::vector<std::string> list_png_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a folder (--data)");
  std::vector<std::string> paths;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file() && lower(it->path().extension().string()) == ".png") {
      paths.push_back(it->path().string());
    }
  }
  if (ec) throw Error(dir + ": cannot list the folder (" + ec.message() + ")");
  if (paths.empty()) throw Error(dir + ": no .png images to train on (--data)");
  std::sort(paths.begin(), paths.end());
  return paths;
}

// One image file as [3, H', W'] float32 in [-1, 1] (H' x W' larger than H x W when tiled).
at::Tensor training_tensor(const std::string& path, int size, bool tile) {
  const image_files::Image image = image_files::read_image(path);
  if (!tile && (image.width < size || image.height < size)) {
    throw Error(path + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                " is smaller than the " + std::to_string(size) + "x" + std::to_string(size) +
                " crop (--size; --tile repeats seamless textures to fit)");
  }
  at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kFloat)
                       .clone();
  const int color = image.has_alpha ? image.channels - 1 : image.channels;
  at::Tensor chw = hwc.narrow(2, 0, color).permute({2, 0, 1});  // [C, H, W], alpha dropped
  if (color == 1) chw = chw.expand({3, image.height, image.width});
  if (tile) {
    // Seamless textures (GIMP's patterns are made to tile): repeat until a crop fits, so
    // crops may also straddle the seams, as they do when the pattern fills a canvas.
    const std::int64_t ry = (size + image.height - 1) / image.height + 1;
    const std::int64_t rx = (size + image.width - 1) / image.width + 1;
    chw = chw.repeat({1, ry, rx});
  }
  return (chw * 2 - 1).contiguous();
}

std::int64_t draw(at::Generator& gen, std::int64_t high) {
  return at::randint(high, {1}, gen, at::kLong).item<std::int64_t>();
}

}  // namespace

Dataset load_dataset(const std::string& dir, int size, bool tile) {
  Dataset data;
  for (const std::string& path : list_png_files(dir)) {
    data.images.push_back(training_tensor(path, size, tile));
    data.names.push_back(
        fs::path(path).lexically_relative(dir).replace_extension().generic_string());
  }
  return data;
}

// The draws come in a fixed order per crop (image, y, x, two flips, rotation): changing it would
// change every run made with a given --seed.
at::Tensor random_batch(const std::vector<at::Tensor>& images, int batch, int size,
                        at::Generator& gen, at::Tensor* labels) {
  std::vector<at::Tensor> crops;
  std::vector<std::int64_t> index;
  for (int i = 0; i < batch; ++i) {
    index.push_back(draw(gen, static_cast<std::int64_t>(images.size())));
    const at::Tensor& img = images[static_cast<std::size_t>(index.back())];
    const std::int64_t y = draw(gen, img.size(1) - size + 1);
    const std::int64_t x = draw(gen, img.size(2) - size + 1);
    at::Tensor crop = img.narrow(1, y, size).narrow(2, x, size);  // [3, size, size]
    if (draw(gen, 2)) crop = crop.flip({2});
    if (draw(gen, 2)) crop = crop.flip({1});
    const std::int64_t k = draw(gen, 4);
    if (k) crop = at::rot90(crop, k, {1, 2});
    crops.push_back(crop);
  }
  *labels = at::tensor(index, at::kLong);
  return at::stack(crops).contiguous();  // [batch, 3, size, size]
}

}  // namespace gd::training
