// safetensors image files: one float32 tensor "image" of shape [N, C, H, W] or [C, H, W].
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "image_files/image_io_internal.h"
#include "models/safetensors_reader.h"
#include "models/tensor_data.h"

namespace gd::image_files {

namespace {

using internal::check_dimensions;
using internal::errno_text;

float load_f32_le(const std::uint8_t* p) {
  std::uint32_t bits = std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) |
                       (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

void store_f32_le(float value, std::uint8_t* p) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(bits >> (8 * i));
}

}  // namespace

namespace internal {

std::vector<Image> read_safetensors_images(const std::string& path) {
  models::TensorMap tensors = models::read_safetensors(path);
  auto it = tensors.find("image");
  if (it == tensors.end()) {
    std::string names;
    int listed = 0;
    for (const auto& entry : tensors) {
      if (listed == 5) {
        names += ", ...";
        break;
      }
      names += (listed++ > 0 ? ", " : "") + entry.first;
    }
    throw Error(path + ": no tensor named 'image' (" +
                (names.empty() ? std::string("the file holds no tensors") : "it holds " + names) +
                ")");
  }
  const models::RawTensor& t = it->second;
  const std::string what = path + ": tensor 'image'";
  if (t.dtype != models::DType::F32) {
    throw Error(what + " is " + models::dtype_name(t.dtype) + ", expected F32");
  }
  if (t.shape.size() != 3 && t.shape.size() != 4) {
    throw Error(what + " has shape " + models::shape_string(t.shape) +
                ", expected [N, C, H, W] or [C, H, W]");
  }
  const bool batched = t.shape.size() == 4;
  const std::size_t d = batched ? 1 : 0;  // index of C in shape
  const std::int64_t n = batched ? t.shape[0] : 1;
  const std::int64_t c = t.shape[d], h = t.shape[d + 1], w = t.shape[d + 2];
  const std::int64_t sn = batched ? t.strides[0] : 0;
  const std::int64_t sc = t.strides[d], sh = t.strides[d + 1], sw = t.strides[d + 2];
  if (n < 1 || h < 1 || w < 1) {
    throw Error(what + " has shape " + models::shape_string(t.shape) + ": no pixels");
  }
  if (c < 1 || c > 4) {
    throw Error(what + " has " + std::to_string(c) + " channels, expected 1 to 4 (shape " +
                models::shape_string(t.shape) + ")");
  }
  check_dimensions(path, w, h, n);

  std::vector<Image> images(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    Image& image = images[static_cast<std::size_t>(i)];
    image.width = static_cast<int>(w);
    image.height = static_cast<int>(h);
    image.channels = static_cast<int>(c);
    image.has_alpha = c == 2 || c == 4;
    image.bit_depth = 32;
    image.pixels.resize(static_cast<std::size_t>(h * w * c));
    float* out = image.pixels.data();
    // The reader has checked that every element reachable through shape and strides lies
    // inside the file. Loads go byte by byte: the data need not be 4-byte aligned.
    for (std::int64_t y = 0; y < h; ++y) {
      for (std::int64_t x = 0; x < w; ++x) {
        for (std::int64_t ch = 0; ch < c; ++ch) {
          std::int64_t element = i * sn + ch * sc + y * sh + x * sw;
          float v = load_f32_le(t.data + element * 4);
          if (!(v >= 0.0f && v <= 1.0f)) {  // also catches NaN
            std::ostringstream msg;
            msg << what << " has value " << v << " at ["
                << (batched ? std::to_string(i) + ", " : "") << ch << ", " << y << ", " << x
                << "], outside [0, 1]";
            throw Error(msg.str());
          }
          *out++ = v;
        }
      }
    }
  }
  return images;
}

}  // namespace internal

void write_safetensors_image(const std::string& path, const std::vector<float>& nchw, int n, int c,
                             int h, int w) {
  if (n < 1 || c < 1 || h < 1 || w < 1) {
    throw Error(path + ": cannot write an image tensor of shape [" + std::to_string(n) + ", " +
                std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + "]");
  }
  // Four ints can multiply past 2^64: check step by step (4 bytes a value must fit too).
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() / 4;
  std::uint64_t count = 1;
  for (int dim : {n, c, h, w}) {
    if (count > limit / static_cast<std::uint64_t>(dim)) {
      throw Error(path + ": image tensor is too large to write");
    }
    count *= static_cast<std::uint64_t>(dim);
  }
  if (nchw.size() != count) {
    throw Error(path + ": shape [" + std::to_string(n) + ", " + std::to_string(c) + ", " +
                std::to_string(h) + ", " + std::to_string(w) + "] needs " + std::to_string(count) +
                " values but " + std::to_string(nchw.size()) + " were given");
  }
  for (std::size_t i = 0; i < nchw.size(); ++i) {
    if (!std::isfinite(nchw[i])) {
      throw Error(path + ": value " + std::to_string(nchw[i]) + " at flat index " +
                  std::to_string(i) + " is not finite");
    }
  }
  const std::uint64_t data_bytes = count * 4;
  std::string header = "{\"image\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(n) + "," +
                       std::to_string(c) + "," + std::to_string(h) + "," + std::to_string(w) +
                       "],\"data_offsets\":[0," + std::to_string(data_bytes) + "]}}";
  // The format recommends padding the header with spaces so the data starts 8-byte aligned.
  header.append((8 - header.size() % 8) % 8, ' ');

  internal::TempFile temp(path);
  std::FILE* f = temp.file();
  auto write_bytes = [&](const void* bytes, std::size_t size) {
    if (std::fwrite(bytes, 1, size, f) != size) {
      throw Error(path + ": write failed (" + errno_text(errno) + ")");
    }
  };
  std::uint8_t length[8];
  for (int i = 0; i < 8; ++i)
    length[i] = static_cast<std::uint8_t>(std::uint64_t{header.size()} >> (8 * i));
  write_bytes(length, sizeof length);
  write_bytes(header.data(), header.size());
  // Converted to little-endian in chunks: no second copy of a large batch.
  std::vector<std::uint8_t> chunk;
  constexpr std::size_t kChunkValues = 1 << 16;
  for (std::size_t begin = 0; begin < nchw.size(); begin += kChunkValues) {
    std::size_t end = std::min(nchw.size(), begin + kChunkValues);
    chunk.resize((end - begin) * 4);
    for (std::size_t i = begin; i < end; ++i) store_f32_le(nchw[i], chunk.data() + (i - begin) * 4);
    write_bytes(chunk.data(), chunk.size());
  }
  temp.commit();
}

}  // namespace gd::image_files
