// The format-independent part of image_io.h: dispatch on the extension, the size limits, output
// names. The formats live in png_file.cpp and safetensors_image.cpp.
#include "image_files/image_io.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "image_files/image_io_internal.h"

namespace gd::image_files {

namespace {

// ".png", ".safetensors", ... lower-cased; "" when the file name has no extension.
std::string lower_extension(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  std::size_t name_begin = slash == std::string::npos ? 0 : slash + 1;
  std::size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || dot <= name_begin) return "";
  std::string ext = path.substr(dot);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext;
}

std::string size_limit_text() {
  return "the limit is " + std::to_string(kMaxImageSide) + " pixels a side and " +
         std::to_string(kMaxImagePixels) + " pixels in all";
}

}  // namespace

namespace internal {

std::string errno_text(int err) { return err != 0 ? std::strerror(err) : "unknown error"; }

std::string folder_of(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Checked before anything proportional to the image is allocated.
void check_dimensions(const std::string& path, std::int64_t width, std::int64_t height,
                      std::int64_t count) {
  if (width > kMaxImageSide || height > kMaxImageSide ||
      width * height > kMaxImagePixels / std::max<std::int64_t>(count, 1)) {
    throw Error(path + ": image is " + std::to_string(width) + "x" + std::to_string(height) +
                (count > 1 ? " x" + std::to_string(count) + " images" : "") + ", too large (" +
                size_limit_text() + ")");
  }
}

}  // namespace internal

std::vector<Image> read_images(const std::string& path) {
  std::string ext = lower_extension(path);
  if (ext == ".png") return {internal::read_png(path)};
  if (ext == ".safetensors") return internal::read_safetensors_images(path);
  throw Error(path + ": unsupported image format " +
              (ext.empty() ? std::string("(no extension)") : "'" + ext + "'") +
              " (supported: .png, .safetensors)");
}

Image read_image(const std::string& path) {
  std::vector<Image> images = read_images(path);
  if (images.size() != 1) {
    throw Error(path + ": holds " + std::to_string(images.size()) +
                " images, expected 1 (one image per input file)");
  }
  return std::move(images[0]);
}

std::vector<std::string> numbered_paths(const std::string& path, int count) {
  if (count < 0) throw Error(path + ": cannot number " + std::to_string(count) + " output files");
  if (count == 1) return {path};
  std::size_t slash = path.find_last_of('/');
  std::size_t name_begin = slash == std::string::npos ? 0 : slash + 1;
  std::size_t dot = path.find_last_of('.');
  // A dot that starts the file name (".png") or lies in a folder name is not an extension.
  if (dot == std::string::npos || dot <= name_begin) dot = path.size();
  std::vector<std::string> paths;
  paths.reserve(static_cast<std::size_t>(count));
  for (int i = 0; i < count; ++i) {
    paths.push_back(path.substr(0, dot) + "-" + std::to_string(i) + path.substr(dot));
  }
  return paths;
}

}  // namespace gd::image_files
