#include "tools/cli/image_io.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/error.h"
#include "models/mapped_file.h"
#include "models/safetensors_reader.h"
#include "models/tensor_data.h"

namespace gd::cli {

namespace {

std::string errno_text(int err) { return err != 0 ? std::strerror(err) : "unknown error"; }

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

std::string folder_of(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string size_limit_text() {
  return "the limit is " + std::to_string(kMaxImageSide) + " pixels a side and " +
         std::to_string(kMaxImagePixels) + " pixels in all";
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
bool png_phase_pixels(png_structp png, png_infop info, const PngLayout* layout,
                      std::uint8_t* raw, png_bytep* row_pointers, float* out) {
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
      return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
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
    for (png_uint_32 y = 0; y < layout.height; ++y) row_pointers[y] = raw.data() + y * layout.rowbytes;
  }
  if (!png_phase_pixels(reader.png, reader.info, &layout, raw.data(), row_pointers.data(),
                        image.pixels.data())) {
    throw fail("image data");
  }
  return image;
}

// ---------------------------------------------------------------------------------------------
// Temporary file next to the destination, renamed into place by commit().

class TempFile {
 public:
  explicit TempFile(const std::string& path) : path_(path) {
    static std::atomic<unsigned> counter{0};
    std::string folder = folder_of(path);
    std::size_t slash = path.find_last_of('/');
    std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.empty()) throw Error(path + ": not a file name (ends with '/')");
    // Hidden and unique per process and call; O_EXCL never reuses someone else's file.
    // Mode 0666 lets the umask decide, as for any file the user creates.
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string candidate = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
                              "." + name + ".tmp-" + std::to_string(::getpid()) + "-" +
                              std::to_string(counter.fetch_add(1));
      int fd = ::open(candidate.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        throw Error(path + ": cannot create a file in '" + folder + "' (" + errno_text(errno) + ")");
      }
      file_ = ::fdopen(fd, "wb");
      if (file_ == nullptr) {
        int err = errno;
        ::close(fd);
        ::unlink(candidate.c_str());
        throw Error(path + ": cannot open a temporary file (" + errno_text(err) + ")");
      }
      temp_ = candidate;
      return;
    }
    throw Error(path + ": cannot create a temporary file in '" + folder + "' (all names taken)");
  }

  ~TempFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  std::FILE* file() { return file_; }
  const std::string& temp_path() const { return temp_; }

  // Flushes, syncs and closes the file, then renames it over the destination. The sync makes
  // "the file is there" imply "its bytes are there" after a crash. On failure the destructor
  // removes the temporary file.
  void commit() {
    int err = 0;
    if (std::fflush(file_) != 0) err = errno;
    if (err == 0 && ::fsync(::fileno(file_)) != 0 && errno != EINVAL) err = errno;
    int close_result = std::fclose(file_);
    file_ = nullptr;
    if (err == 0 && close_result != 0) err = errno;
    if (err != 0) throw Error(path_ + ": write failed (" + errno_text(err) + ")");
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      throw Error(path_ + ": cannot replace it with the new file (" + errno_text(errno) + ")");
    }
    temp_.clear();
  }

 private:
  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
};

// Encodes one row of `image` into stored PNG samples.
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

// ---------------------------------------------------------------------------------------------
// safetensors

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
                (names.empty() ? std::string("the file holds no tensors") : "it holds " + names) + ")");
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
            msg << what << " has value " << v << " at [" << (batched ? std::to_string(i) + ", " : "")
                << ch << ", " << y << ", " << x << "], outside [0, 1]";
            throw Error(msg.str());
          }
          *out++ = v;
        }
      }
    }
  }
  return images;
}

}  // namespace

std::vector<Image> read_images(const std::string& path) {
  std::string ext = lower_extension(path);
  if (ext == ".png") return {read_png(path)};
  if (ext == ".safetensors") return read_safetensors_images(path);
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

void write_png(const std::string& path, const Image& image, int bit_depth) {
  // Everything is validated before a file is created, so bad input never touches the disk.
  if (bit_depth != 8 && bit_depth != 16) {
    throw Error(path + ": PNG bit depth " + std::to_string(bit_depth) + " is not supported (8 or 16)");
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
                std::to_string(image.pixels.size()) + " values, expected " + std::to_string(expected));
  }
  for (std::size_t i = 0; i < expected; ++i) {
    if (!std::isfinite(image.pixels[i])) {
      std::size_t pixel = i / image.channels;
      throw Error(path + ": value " + std::to_string(image.pixels[i]) + " at x " +
                  std::to_string(pixel % image.width) + ", y " + std::to_string(pixel / image.width) +
                  ", channel " + std::to_string(i % image.channels) + " is not finite");
    }
  }

  TempFile temp(path);
  PngIo io;
  io.file = temp.file();
  PngWriter writer(&io);
  if (writer.png == nullptr || writer.info == nullptr) {
    throw Error(path + ": cannot start the PNG encoder (out of memory)");
  }
  png_set_write_fn(writer.png, &io, write_to_file, flush_file);
  std::vector<std::uint8_t> row(std::size_t(image.width) * image.channels * (bit_depth / 8));
  if (!png_phase_write(writer.png, writer.info, &image, bit_depth, row.data())) {
    if (io.write_errno != 0) throw Error(path + ": write failed (" + errno_text(io.write_errno) + ")");
    throw Error(path + ": PNG encoding failed (" + io.message + ")");
  }
  temp.commit();
}

void write_safetensors_image(const std::string& path, const std::vector<float>& nchw, int n,
                             int c, int h, int w) {
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

  TempFile temp(path);
  std::FILE* f = temp.file();
  auto write_bytes = [&](const void* bytes, std::size_t size) {
    if (std::fwrite(bytes, 1, size, f) != size) {
      throw Error(path + ": write failed (" + errno_text(errno) + ")");
    }
  };
  std::uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(std::uint64_t{header.size()} >> (8 * i));
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

}  // namespace gd::cli
