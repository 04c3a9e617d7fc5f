// PNG files through libpng: read_png (image_io_internal.h) and write_png (image_io.h).
#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "image_files/image_io_internal.h"
#include "models/mapped_file.h"

namespace gd::image_files {

namespace {

using internal::check_dimensions;
using internal::errno_text;

// ---------------------------------------------------------------------------------------------
// libpng plumbing.
//
// libpng reports errors by calling our error function, which must not return. We longjmp back
// to the setjmp in the phase function that made the call. Two rules keep that well defined in
// C++: (1) a phase function creates no object with a destructor after its setjmp (longjmp
// would skip the destructor), and all buffers live in the caller; (2) every libpng call that
// can fail runs inside a phase function whose setjmp is live: a jmp_buf of a returned frame is
// never jumped to. C++ exceptions are never thrown through libpng's C frames.

struct PngIo {
  // Reading: the mapped file.
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  std::size_t pos = 0;
  bool truncated = false;
  // Writing: the temporary file, and errno of a failed write.
  std::FILE* file = nullptr;
  int write_errno = 0;
  // libpng's message for the last error. A fixed buffer: the error handler must not allocate.
  char message[200] = {};
};

[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof io->message, "%s", message != nullptr ? message : "error");
  png_longjmp(png, 1);
}

// Warnings (a bad CRC in an ancillary chunk, an odd iCCP profile) do not stop a read, and the
// CLI has no place to show them; they are dropped rather than printed to stderr by libpng.
void on_png_warning(png_structp, png_const_charp) {}

void read_from_memory(png_structp png, png_bytep out, png_size_t count) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (count > io->size - io->pos) {
    io->truncated = true;
    png_error(png, "unexpected end of file");
  }
  std::memcpy(out, io->data + io->pos, count);
  io->pos += count;
}

void write_to_file(png_structp png, png_bytep data, png_size_t count) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (std::fwrite(data, 1, count, io->file) != count) {
    io->write_errno = errno;
    png_error(png, "write failed");
  }
}

void flush_file(png_structp png) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (std::fflush(io->file) != 0) {
    io->write_errno = errno;
    png_error(png, "write failed");
  }
}

// Owns the libpng structs so that every exit path (including a thrown gd::Error) frees them.
class PngReader {
 public:
  explicit PngReader(PngIo* io) {
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, io, on_png_error, on_png_warning);
    if (png != nullptr) info = png_create_info_struct(png);
  }
  ~PngReader() { png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr); }
  PngReader(const PngReader&) = delete;
  PngReader& operator=(const PngReader&) = delete;
  png_structp png = nullptr;
  png_infop info = nullptr;
};

class PngWriter {
 public:
  explicit PngWriter(PngIo* io) {
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, io, on_png_error, on_png_warning);
    if (png != nullptr) info = png_create_info_struct(png);
  }
  ~PngWriter() { png_destroy_write_struct(&png, info != nullptr ? &info : nullptr); }
  PngWriter(const PngWriter&) = delete;
  PngWriter& operator=(const PngWriter&) = delete;
  png_structp png = nullptr;
  png_infop info = nullptr;
};

struct PngLayout {
  png_uint_32 width = 0;
  png_uint_32 height = 0;
  int bit_depth = 0;  // after transforms: 8 or 16
  int channels = 0;   // after transforms: 1..4
  bool interlaced = false;
  std::size_t rowbytes = 0;
};

// Phase 1: the signature has been checked; parse everything up to the first IDAT.
bool png_phase_header(png_structp png, png_infop info, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  // Our own size check below gives the better message; libpng's default limit (1e6 a side)
  // would otherwise pre-empt it with "Image width exceeds user limit in IHDR".
  png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  layout->width = png_get_image_width(png, info);
  layout->height = png_get_image_height(png, info);
  return true;
}

// Phase 2: ask for 8- or 16-bit gray/GA/RGB/RGBA whatever the file stores.
bool png_phase_transforms(png_structp png, png_infop info, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  int color_type = png_get_color_type(png, info);
  int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS) != 0) png_set_tRNS_to_alpha(png);
  layout->interlaced = png_set_interlace_handling(png) > 1;
  png_read_update_info(png, info);
  layout->bit_depth = png_get_bit_depth(png, info);
  layout->channels = png_get_channels(png, info);
  layout->rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Stored samples of one row -> floats in [0, 1].
void decode_row(const std::uint8_t* row, std::size_t samples, int bit_depth, float* out) {
  if (bit_depth == 16) {
    for (std::size_t i = 0; i < samples; ++i) {
      unsigned v = (static_cast<unsigned>(row[2 * i]) << 8) | row[2 * i + 1];  // big-endian
      out[i] = static_cast<float>(v) / 65535.0f;
    }
  } else {
    for (std::size_t i = 0; i < samples; ++i) out[i] = static_cast<float>(row[i]) / 255.0f;
  }
}

// Phase 3: decode the pixels. `raw` holds one row (non-interlaced: rows are decoded as they
// come, so the byte copy of the image never exists) or all rows (interlaced: every pass
// revisits every row).
bool png_phase_pixels(png_structp png, png_infop info, const PngLayout* layout, std::uint8_t* raw,
                      png_bytep* row_pointers, float* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  const std::size_t samples = std::size_t{layout->width} * layout->channels;
  if (layout->interlaced) {
    png_read_image(png, row_pointers);
    for (png_uint_32 y = 0; y < layout->height; ++y) {
      decode_row(row_pointers[y], samples, layout->bit_depth, out + y * samples);
    }
  } else {
    for (png_uint_32 y = 0; y < layout->height; ++y) {
      png_read_row(png, raw, nullptr);
      decode_row(raw, samples, layout->bit_depth, out + y * samples);
    }
  }
  // Reads the chunks after the image data up to IEND, so a file cut off there is refused too.
  png_read_end(png, info);
  return true;
}

void encode_row(const Image& image, int y, int bit_depth, std::uint8_t* row) {
  const std::size_t samples = std::size_t(image.width) * image.channels;
  const float* in = image.pixels.data() + std::size_t(y) * samples;
  const float scale = bit_depth == 16 ? 65535.0f : 255.0f;
  for (std::size_t i = 0; i < samples; ++i) {
    float v = std::min(1.0f, std::max(0.0f, in[i]));
    auto level = static_cast<unsigned>(std::lround(v * scale));
    if (bit_depth == 16) {
      row[2 * i] = static_cast<std::uint8_t>(level >> 8);
      row[2 * i + 1] = static_cast<std::uint8_t>(level & 0xff);
    } else {
      row[i] = static_cast<std::uint8_t>(level);
    }
  }
}

bool png_phase_write(png_structp png, png_infop info, const Image* image, int bit_depth,
                     std::uint8_t* row) {
  if (setjmp(png_jmpbuf(png))) return false;
  static const int kColorTypes[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                    PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(png, info, static_cast<png_uint_32>(image->width),
               static_cast<png_uint_32>(image->height), bit_depth, kColorTypes[image->channels - 1],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image->height; ++y) {
    encode_row(*image, y, bit_depth, row);
    png_write_row(png, row);
  }
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

namespace internal {

Image read_png(const std::string& path) {
  std::shared_ptr<const models::MappedFile> file = models::map_file(path);
  static constexpr std::size_t kSignatureBytes = 8;
  if (file->size() < kSignatureBytes || png_sig_cmp(file->data(), 0, kSignatureBytes) != 0) {
    throw Error(path + ": not a PNG file (no PNG signature)");
  }
  // The size check runs on the IHDR bytes themselves, before libpng is even started: a
  // 33-byte file claiming 100000x100000 pixels is refused from its header alone, whatever
  // follows it. (PNG requires IHDR first; libpng refuses files where it is not.)
  const std::uint8_t* b = file->data();
  if (file->size() >= 24 && std::memcmp(b + 12, "IHDR", 4) == 0) {
    auto be32 = [](const std::uint8_t* p) {
      return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
             (std::uint32_t{p[2]} << 8) | p[3];
    };
    check_dimensions(path, be32(b + 16), be32(b + 20), 1);
  }
  PngIo io;
  io.data = file->data();
  io.size = file->size();
  io.pos = kSignatureBytes;
  PngReader reader(&io);
  if (reader.png == nullptr || reader.info == nullptr) {
    throw Error(path + ": cannot start the PNG decoder (out of memory)");
  }
  png_set_read_fn(reader.png, &io, read_from_memory);

  auto fail = [&](const char* stage) {
    if (io.truncated) {
      return Error(path + ": PNG file is truncated (" + stage + " runs past the end of the " +
                   std::to_string(io.size) + "-byte file)");
    }
    return Error(path + ": invalid PNG " + stage + " (" + io.message + ")");
  };

  PngLayout layout;
  if (!png_phase_header(reader.png, reader.info, &layout)) throw fail("header");
  check_dimensions(path, layout.width, layout.height, 1);  // the same numbers, as libpng read them
  if (!png_phase_transforms(reader.png, reader.info, &layout)) throw fail("header");
  // The transforms above always yield 8 or 16 bits and 1..4 channels; checked anyway because
  // the buffers below are sized from these numbers.
  if ((layout.bit_depth != 8 && layout.bit_depth != 16) || layout.channels < 1 ||
      layout.channels > 4 ||
      layout.rowbytes != std::size_t{layout.width} * layout.channels * (layout.bit_depth / 8)) {
    throw Error(path + ": unsupported PNG layout (" + std::to_string(layout.channels) +
                " channels of " + std::to_string(layout.bit_depth) + " bits)");
  }

  Image image;
  image.width = static_cast<int>(layout.width);
  image.height = static_cast<int>(layout.height);
  image.channels = layout.channels;
  image.has_alpha = layout.channels == 2 || layout.channels == 4;
  image.bit_depth = layout.bit_depth;
  image.pixels.resize(std::size_t{layout.width} * layout.height * layout.channels);
  std::vector<std::uint8_t> raw(layout.rowbytes * (layout.interlaced ? layout.height : 1));
  std::vector<png_bytep> row_pointers;
  if (layout.interlaced) {
    row_pointers.resize(layout.height);
    for (png_uint_32 y = 0; y < layout.height; ++y)
      row_pointers[y] = raw.data() + y * layout.rowbytes;
  }
  if (!png_phase_pixels(reader.png, reader.info, &layout, raw.data(), row_pointers.data(),
                        image.pixels.data())) {
    throw fail("image data");
  }
  return image;
}

}  // namespace internal

void write_png(const std::string& path, const Image& image, int bit_depth) {
  // Everything is validated before a file is created, so bad input never touches the disk.
  if (bit_depth != 8 && bit_depth != 16) {
    throw Error(path + ": PNG bit depth " + std::to_string(bit_depth) +
                " is not supported (8 or 16)");
  }
  if (image.channels < 1 || image.channels > 4) {
    throw Error(path + ": cannot write " + std::to_string(image.channels) +
                " channels as PNG (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA)");
  }
  if (image.width < 1 || image.height < 1) {
    throw Error(path + ": cannot write an empty " + std::to_string(image.width) + "x" +
                std::to_string(image.height) + " image");
  }
  check_dimensions(path, image.width, image.height, 1);
  const std::size_t expected = std::size_t(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected) {
    throw Error(path + ": image is " + std::to_string(image.width) + "x" +
                std::to_string(image.height) + "x" + std::to_string(image.channels) + " but has " +
                std::to_string(image.pixels.size()) + " values, expected " +
                std::to_string(expected));
  }
  for (std::size_t i = 0; i < expected; ++i) {
    if (!std::isfinite(image.pixels[i])) {
      std::size_t pixel = i / image.channels;
      throw Error(path + ": value " + std::to_string(image.pixels[i]) + " at x " +
                  std::to_string(pixel % image.width) + ", y " +
                  std::to_string(pixel / image.width) + ", channel " +
                  std::to_string(i % image.channels) + " is not finite");
    }
  }

  internal::TempFile temp(path);
  PngIo io;
  io.file = temp.file();
  PngWriter writer(&io);
  if (writer.png == nullptr || writer.info == nullptr) {
    throw Error(path + ": cannot start the PNG encoder (out of memory)");
  }
  png_set_write_fn(writer.png, &io, write_to_file, flush_file);
  std::vector<std::uint8_t> row(std::size_t(image.width) * image.channels * (bit_depth / 8));
  if (!png_phase_write(writer.png, writer.info, &image, bit_depth, row.data())) {
    if (io.write_errno != 0)
      throw Error(path + ": write failed (" + errno_text(io.write_errno) + ")");
    throw Error(path + ": PNG encoding failed (" + io.message + ")");
  }
  temp.commit();
}

}  // namespace gd::image_files
