// Shared by the sources of gd_image_files (image_io.cpp, png_file.cpp, safetensors_image.cpp,
// temp_file.cpp); not part of the library's interface, which is image_io.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "image_files/image_io.h"

namespace gd::image_files::internal {

// strerror(err), or "unknown error" for 0 (a failed call that set no errno).
std::string errno_text(int err);

// The folder part of `path` ("." for a bare name, "/" for a file in the root).
std::string folder_of(const std::string& path);

// Refuses images over kMaxImageSide / kMaxImagePixels (count images of width x height).
// Called before anything proportional to the image is allocated.
void check_dimensions(const std::string& path, std::int64_t width, std::int64_t height,
                      std::int64_t count);

Image read_png(const std::string& path);                              // png_file.cpp
std::vector<Image> read_safetensors_images(const std::string& path);  // safetensors_image.cpp

// Temporary file next to the destination, renamed into place by commit(): a failed write never
// leaves a partial file at the destination or a temporary one beside it.
class TempFile {
 public:
  explicit TempFile(const std::string& path);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  std::FILE* file() { return file_; }
  const std::string& temp_path() const { return temp_; }

  // Flushes, syncs and closes the file, then renames it over the destination. The sync makes
  // "the file is there" imply "its bytes are there" after a crash. On failure the destructor
  // removes the temporary file.
  void commit();

 private:
  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
};

}  // namespace gd::image_files::internal
