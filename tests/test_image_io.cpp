// PNG and safetensors image input/output (image_files/image_io.h): round trips,
// hostile and broken files, and the no-partial-output guarantee of the writers.
//
// Test PNGs are made here: with libpng for the layouts our writer does not produce (palette,
// 1-bit gray, interlaced), and byte by byte for headers libpng would refuse to write.
#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "image_files/image_io.h"
#include "models/safetensors_reader.h"

namespace fs = std::filesystem;
using gd::image_files::Image;
using gd::image_files::numbered_paths;
using gd::image_files::read_image;
using gd::image_files::read_images;
using gd::image_files::write_png;
using gd::image_files::write_safetensors_image;

namespace {

// A fresh folder per test, removed afterwards.
class ImageIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "gd-image-io-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  // Names of everything in `folder` (default: the test folder), sorted.
  std::vector<std::string> listing(const std::string& folder = "") const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(folder.empty() ? dir_ : folder)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string dir_;
};

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Deterministic pixels exactly on the levels of `bit_depth`, so a round trip must be exact.
Image quantized_image(int width, int height, int channels, int bit_depth, unsigned seed) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  image.has_alpha = channels == 2 || channels == 4;
  image.bit_depth = bit_depth;
  const unsigned max_level = bit_depth == 16 ? 65535u : 255u;
  unsigned state = seed;
  for (int i = 0; i < width * height * channels; ++i) {
    state = state * 1664525u + 1013904223u;  // LCG: reproducible everywhere
    unsigned level = (state >> 8) % (max_level + 1);
    if (i == 0) level = 0;
    if (i == 1) level = max_level;  // both extremes present
    image.pixels.push_back(static_cast<float>(level) / static_cast<float>(max_level));
  }
  return image;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "(no error)";
}

#define EXPECT_ERROR_CONTAINS(statement, text)                     \
  do {                                                             \
    std::string message_ = error_of([&] { statement; });           \
    EXPECT_NE(message_.find(text), std::string::npos) << message_; \
    EXPECT_EQ(message_.find('\n'), std::string::npos) << message_; \
  } while (0)

// A PNG written by libpng itself, in layouts write_png never produces. `rows` are the stored
// bytes of each row (packed samples for depths below 8).
struct TestPng {
  int width = 0, height = 0, bit_depth = 8, color_type = PNG_COLOR_TYPE_RGB;
  int interlace = PNG_INTERLACE_NONE;
  std::vector<png_color> palette;
  std::vector<png_byte> palette_alpha;  // tRNS for palette images
  std::vector<std::vector<png_byte>> rows;
};

bool write_test_png_raw(const char* path, TestPng* spec) {
  std::FILE* f = std::fopen(path, "wb");
  if (f == nullptr) return false;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(f);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, spec->width, spec->height, spec->bit_depth, spec->color_type,
               spec->interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!spec->palette.empty()) {
    png_set_PLTE(png, info, spec->palette.data(), static_cast<int>(spec->palette.size()));
  }
  if (!spec->palette_alpha.empty()) {
    png_set_tRNS(png, info, spec->palette_alpha.data(),
                 static_cast<int>(spec->palette_alpha.size()), nullptr);
  }
  png_write_info(png, info);
  std::vector<png_bytep> pointers;
  for (auto& row : spec->rows) pointers.push_back(row.data());
  png_write_image(png, pointers.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return std::fclose(f) == 0;
}

void write_test_png(const std::string& path, TestPng spec) {
  ASSERT_TRUE(write_test_png_raw(path.c_str(), &spec)) << path;
}

std::uint32_t crc32(const std::uint8_t* data, std::size_t size) {
  std::uint32_t crc = 0xffffffffu;
  for (std::size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
  }
  return crc ^ 0xffffffffu;
}

void put_be32(std::vector<std::uint8_t>* out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out->push_back(static_cast<std::uint8_t>(v >> shift));
}

// Signature + a valid IHDR chunk (correct CRC) and nothing else.
std::vector<std::uint8_t> png_with_ihdr(std::uint32_t width, std::uint32_t height,
                                        std::uint8_t color_type = PNG_COLOR_TYPE_RGB) {
  std::vector<std::uint8_t> bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> chunk = {'I', 'H', 'D', 'R'};
  put_be32(&chunk, width);
  put_be32(&chunk, height);
  chunk.insert(chunk.end(), {8, color_type, 0, 0, 0});
  put_be32(&bytes, 13);
  bytes.insert(bytes.end(), chunk.begin(), chunk.end());
  put_be32(&bytes, crc32(chunk.data(), chunk.size()));
  return bytes;
}

// A safetensors file with any header, for layouts write_safetensors_image does not produce.
void write_safetensors_raw(const std::string& path, const std::string& header,
                           const std::vector<float>& values) {
  std::vector<std::uint8_t> bytes(8);
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<std::uint8_t>(std::uint64_t{header.size()} >> (8 * i));
  bytes.insert(bytes.end(), header.begin(), header.end());
  const auto* raw = reinterpret_cast<const std::uint8_t*>(values.data());  // little-endian host
  bytes.insert(bytes.end(), raw, raw + values.size() * 4);
  write_bytes(path, bytes);
}

std::string f32_header(const std::string& name, const std::string& dtype, const std::string& shape,
                       std::size_t bytes) {
  return "{\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[0," + std::to_string(bytes) + "]}}";
}

}  // namespace

// --- round trips ---------------------------------------------------------------------------

class PngRoundTrip : public ImageIoTest,
                     public ::testing::WithParamInterface<std::tuple<int, int>> {};

TEST_P(PngRoundTrip, ExactOnStoredLevels) {
  const int channels = std::get<0>(GetParam());
  const int depth = std::get<1>(GetParam());
  Image original = quantized_image(37, 23, channels, depth, 1234u + channels * 7u + depth);
  const std::string file = path("round.png");
  write_png(file, original, depth);
  Image read = read_image(file);
  EXPECT_EQ(read.width, 37);
  EXPECT_EQ(read.height, 23);
  EXPECT_EQ(read.channels, channels);
  EXPECT_EQ(read.has_alpha, channels == 2 || channels == 4);
  EXPECT_EQ(read.bit_depth, depth);
  ASSERT_EQ(read.pixels.size(), original.pixels.size());
  for (std::size_t i = 0; i < read.pixels.size(); ++i) {
    ASSERT_EQ(read.pixels[i], original.pixels[i]) << "value " << i;
  }
  EXPECT_EQ(listing(), std::vector<std::string>{"round.png"});  // no temporary left
}

INSTANTIATE_TEST_SUITE_P(GrayGrayAlphaRgbRgba, PngRoundTrip,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4),
                                            ::testing::Values(8, 16)),
                         [](const auto& info) {
                           return "channels" + std::to_string(std::get<0>(info.param)) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "bit";
                         });

TEST_F(ImageIoTest, WriteRoundsToNearestLevelAndClamps) {
  Image image;
  image.width = 6;
  image.height = 1;
  image.channels = 1;
  image.pixels = {-0.25f, 0.0f, 0.3f, 0.5f, 1.0f, 1.75f};
  for (int depth : {8, 16}) {
    const float levels = depth == 16 ? 65535.0f : 255.0f;
    write_png(path("r.png"), image, depth);
    Image read = read_image(path("r.png"));
    EXPECT_EQ(read.pixels[0], 0.0f);
    EXPECT_EQ(read.pixels[4], 1.0f);
    EXPECT_EQ(read.pixels[5], 1.0f);
    for (int i = 1; i < 5; ++i) {
      EXPECT_LE(std::fabs(read.pixels[i] - image.pixels[i]), 0.5f / levels + 1e-7f)
          << depth << " " << i;
    }
  }
}

TEST_F(ImageIoTest, OverwritesExistingFile) {
  write_bytes(path("o.png"), {'o', 'l', 'd'});
  write_png(path("o.png"), quantized_image(4, 4, 3, 8, 5u), 8);
  EXPECT_EQ(read_image(path("o.png")).width, 4);
  EXPECT_EQ(listing(), std::vector<std::string>{"o.png"});
}

TEST_F(ImageIoTest, PalettePngExpandsToRgbAndTrnsToAlpha) {
  TestPng spec;
  spec.width = 5;
  spec.height = 2;
  spec.bit_depth = 4;  // packed: two indices a byte
  spec.color_type = PNG_COLOR_TYPE_PALETTE;
  spec.palette = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}};
  // Indices: row 0 = 0 1 2 0 1, row 1 = 2 2 1 0 0.
  spec.rows = {{0x01, 0x20, 0x10}, {0x22, 0x10, 0x00}};
  write_test_png(path("pal.png"), spec);
  const int indices[] = {0, 1, 2, 0, 1, 2, 2, 1, 0, 0};

  Image rgb = read_image(path("pal.png"));
  ASSERT_EQ(rgb.channels, 3);
  EXPECT_FALSE(rgb.has_alpha);
  EXPECT_EQ(rgb.bit_depth, 8);
  for (int p = 0; p < 10; ++p) {
    const png_color& color = spec.palette[indices[p]];
    EXPECT_EQ(rgb.pixels[p * 3 + 0], color.red / 255.0f) << p;
    EXPECT_EQ(rgb.pixels[p * 3 + 1], color.green / 255.0f) << p;
    EXPECT_EQ(rgb.pixels[p * 3 + 2], color.blue / 255.0f) << p;
  }

  spec.palette_alpha = {255, 0};  // index 1 transparent, index 2 opaque (missing entries are)
  write_test_png(path("pal-alpha.png"), spec);
  Image rgba = read_image(path("pal-alpha.png"));
  ASSERT_EQ(rgba.channels, 4);
  EXPECT_TRUE(rgba.has_alpha);
  for (int p = 0; p < 10; ++p) {
    EXPECT_EQ(rgba.pixels[p * 4 + 3], indices[p] == 1 ? 0.0f : 1.0f) << p;
    EXPECT_EQ(rgba.pixels[p * 4 + 0], spec.palette[indices[p]].red / 255.0f) << p;
  }
}

TEST_F(ImageIoTest, OneBitGrayExpandsToEightBit) {
  TestPng spec;
  spec.width = 10;
  spec.height = 1;
  spec.bit_depth = 1;
  spec.color_type = PNG_COLOR_TYPE_GRAY;
  spec.rows = {{0b10110000, 0b01000000}};  // 1 0 1 1 0 0 0 0 | 0 1
  write_test_png(path("bits.png"), spec);
  Image image = read_image(path("bits.png"));
  ASSERT_EQ(image.channels, 1);
  EXPECT_EQ(image.bit_depth, 8);
  const float expected[] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1};
  for (int x = 0; x < 10; ++x) EXPECT_EQ(image.pixels[x], expected[x]) << x;
}

TEST_F(ImageIoTest, InterlacedSixteenBitRgb) {
  TestPng spec;
  spec.width = 11;
  spec.height = 9;
  spec.bit_depth = 16;
  spec.color_type = PNG_COLOR_TYPE_RGB;
  spec.interlace = PNG_INTERLACE_ADAM7;
  for (int y = 0; y < spec.height; ++y) {
    std::vector<png_byte> row;
    for (int x = 0; x < spec.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        unsigned v = static_cast<unsigned>((y * 7919 + x * 104729 + c * 31) % 65536);
        row.push_back(static_cast<png_byte>(v >> 8));
        row.push_back(static_cast<png_byte>(v & 0xff));
      }
    }
    spec.rows.push_back(row);
  }
  write_test_png(path("adam7.png"), spec);
  Image image = read_image(path("adam7.png"));
  ASSERT_EQ(image.channels, 3);
  EXPECT_EQ(image.bit_depth, 16);
  for (int y = 0; y < spec.height; ++y) {
    for (int x = 0; x < spec.width; ++x) {
      for (int c = 0; c < 3; ++c) {
        unsigned v = static_cast<unsigned>((y * 7919 + x * 104729 + c * 31) % 65536);
        ASSERT_EQ(image.pixels[(y * spec.width + x) * 3 + c], v / 65535.0f) << x << "," << y;
      }
    }
  }
}

TEST_F(ImageIoTest, SafetensorsRoundTripBatch) {
  const int n = 2, c = 3, h = 5, w = 7;
  std::vector<float> nchw;
  for (int i = 0; i < n * c * h * w; ++i)
    nchw.push_back(static_cast<float>(i) / (n * c * h * w - 1));
  write_safetensors_image(path("b.safetensors"), nchw, n, c, h, w);
  EXPECT_EQ(listing(), std::vector<std::string>{"b.safetensors"});

  // The file is valid safetensors: header length a multiple of 8, one F32 tensor.
  std::vector<std::uint8_t> bytes = read_bytes(path("b.safetensors"));
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_len + nchw.size() * 4);
  gd::models::TensorMap tensors = gd::models::read_safetensors(path("b.safetensors"));
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(gd::models::shape_string(tensors.at("image").shape), "[2, 3, 5, 7]");

  std::vector<Image> images = read_images(path("b.safetensors"));
  ASSERT_EQ(images.size(), 2u);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(images[i].width, w);
    EXPECT_EQ(images[i].height, h);
    EXPECT_EQ(images[i].channels, c);
    EXPECT_EQ(images[i].bit_depth, 32);
    EXPECT_FALSE(images[i].has_alpha);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int ch = 0; ch < c; ++ch)
          ASSERT_EQ(images[i].pixels[(y * w + x) * c + ch], nchw[((i * c + ch) * h + y) * w + x]);
  }
  // One image per input file: a batch is refused by read_image rather than cut to its first.
  EXPECT_ERROR_CONTAINS(read_image(path("b.safetensors")), "holds 2 images");

  // A single image reads through read_image; the extension is case-insensitive.
  write_safetensors_image(path("one.SafeTensors"), std::vector<float>(2 * 3 * 4, 0.25f), 1, 2, 3,
                          4);
  Image one = read_image(path("one.SafeTensors"));
  EXPECT_EQ(one.channels, 2);
  EXPECT_TRUE(one.has_alpha);
  EXPECT_EQ(one.pixels, std::vector<float>(24, 0.25f));
}

TEST_F(ImageIoTest, SafetensorsChwAndBadTensors) {
  // [C, H, W] without a batch dimension.
  std::vector<float> chw = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};  // C 1, H 2, W 3
  write_safetensors_raw(path("chw.safetensors"), f32_header("image", "F32", "[1,2,3]", 24), chw);
  Image image = read_image(path("chw.safetensors"));
  EXPECT_EQ(image.channels, 1);
  EXPECT_EQ(image.height, 2);
  EXPECT_EQ(image.width, 3);
  EXPECT_EQ(image.pixels, chw);

  write_safetensors_raw(path("name.safetensors"), f32_header("latent", "F32", "[1,2,3]", 24), chw);
  EXPECT_ERROR_CONTAINS(read_image(path("name.safetensors")),
                        "no tensor named 'image' (it holds latent)");
  write_safetensors_raw(path("dtype.safetensors"), f32_header("image", "F16", "[1,2,3]", 12),
                        {0.0f, 0.0f, 0.0f});
  EXPECT_ERROR_CONTAINS(read_image(path("dtype.safetensors")), "is F16, expected F32");
  write_safetensors_raw(path("rank.safetensors"), f32_header("image", "F32", "[6]", 24), chw);
  EXPECT_ERROR_CONTAINS(read_image(path("rank.safetensors")), "expected [N, C, H, W] or [C, H, W]");
  write_safetensors_raw(path("chan.safetensors"), f32_header("image", "F32", "[6,1,1]", 24), chw);
  EXPECT_ERROR_CONTAINS(read_image(path("chan.safetensors")), "6 channels, expected 1 to 4");
  write_safetensors_raw(path("range.safetensors"), f32_header("image", "F32", "[1,2,3]", 24),
                        {0.0f, 0.1f, 0.2f, 0.3f, 1.5f, 0.5f});
  EXPECT_ERROR_CONTAINS(read_image(path("range.safetensors")),
                        "value 1.5 at [0, 1, 1], outside [0, 1]");
  write_safetensors_raw(path("nan.safetensors"), f32_header("image", "F32", "[1,1,1]", 4), {NAN});
  EXPECT_ERROR_CONTAINS(read_image(path("nan.safetensors")), "outside [0, 1]");
  // Huge shape: the reader refuses it because the data is missing; a shape whose data exists
  // but exceeds our limits is refused by ours.
  std::vector<float> wide(20000, 0.5f);
  write_safetensors_raw(path("wide.safetensors"), f32_header("image", "F32", "[1,1,20000]", 80000),
                        wide);
  EXPECT_ERROR_CONTAINS(read_image(path("wide.safetensors")),
                        "too large (the limit is 16384 pixels a side");
}

// --- broken and hostile input ----------------------------------------------------------------

TEST_F(ImageIoTest, TruncatedPngIsAnError) {
  write_png(path("full.png"), quantized_image(64, 64, 3, 8, 99u), 8);
  std::vector<std::uint8_t> bytes = read_bytes(path("full.png"));
  for (std::size_t keep : {std::size_t{20}, std::size_t{40}, bytes.size() / 2, bytes.size() - 1}) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep));
    write_bytes(path("cut.png"), cut);
    EXPECT_ERROR_CONTAINS(read_image(path("cut.png")), path("cut.png") + ": PNG file is truncated");
  }
}

TEST_F(ImageIoTest, CorruptPngIsAnError) {
  write_png(path("full.png"), quantized_image(64, 64, 3, 8, 98u), 8);
  std::vector<std::uint8_t> bytes = read_bytes(path("full.png"));
  bytes[bytes.size() / 2] ^= 0x5a;  // inside IDAT: the CRC no longer matches
  write_bytes(path("bad.png"), bytes);
  EXPECT_ERROR_CONTAINS(read_image(path("bad.png")),
                        path("bad.png") + ": invalid PNG image data (");
}

TEST_F(ImageIoTest, NotAPngWithPngName) {
  write_bytes(path("text.png"), {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  EXPECT_ERROR_CONTAINS(read_image(path("text.png")), path("text.png") + ": not a PNG file");
  write_bytes(path("short.png"), {0x89, 'P'});
  EXPECT_ERROR_CONTAINS(read_image(path("short.png")), "not a PNG file");
  write_bytes(path("empty.png"), {});
  EXPECT_ERROR_CONTAINS(read_image(path("empty.png")), path("empty.png"));
}

TEST_F(ImageIoTest, HugeDimensionsRefusedBeforeAllocation) {
  // 100000 x 100000 RGB would be 120 GB of floats; the 33-byte file must be refused from its
  // header alone (no IDAT follows, so reading on would report truncation instead).
  write_bytes(path("huge.png"), png_with_ihdr(100000, 100000));
  EXPECT_ERROR_CONTAINS(
      read_image(path("huge.png")),
      path("huge.png") + ": image is 100000x100000, too large (the limit is 16384");
  // The same header followed by data chunks (IDAT, IEND), as a real hostile file would be.
  std::vector<std::uint8_t> with_data = png_with_ihdr(100000, 100000);
  const std::uint8_t tail[] = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e,
                               0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
  with_data.insert(with_data.end(), std::begin(tail), std::end(tail));
  write_bytes(path("huge2.png"), with_data);
  EXPECT_ERROR_CONTAINS(read_image(path("huge2.png")), "image is 100000x100000, too large");
  write_bytes(path("tall.png"), png_with_ihdr(1, 16385));
  EXPECT_ERROR_CONTAINS(read_image(path("tall.png")), "image is 1x16385, too large");
  // At the limit the header passes and the missing data is what fails.
  write_bytes(path("edge.png"), png_with_ihdr(16384, 1));
  EXPECT_ERROR_CONTAINS(read_image(path("edge.png")), "truncated");
  // Beyond what PNG allows at all (2^31 - 1): still our message.
  write_bytes(path("beyond.png"), png_with_ihdr(0x80000000u, 1));
  EXPECT_ERROR_CONTAINS(read_image(path("beyond.png")), "image is 2147483648x1, too large");
  // A header libpng refuses (color type 5 does not exist): its reason, in one line.
  write_bytes(path("invalid.png"), png_with_ihdr(4, 4, 5));
  EXPECT_ERROR_CONTAINS(read_image(path("invalid.png")),
                        path("invalid.png") + ": invalid PNG header (");
}

TEST_F(ImageIoTest, MissingFileAndUnknownExtension) {
  EXPECT_ERROR_CONTAINS(read_image(path("absent.png")), path("absent.png"));
  write_bytes(path("photo.jpg"), {1, 2, 3});
  EXPECT_ERROR_CONTAINS(
      read_image(path("photo.jpg")),
      path("photo.jpg") + ": unsupported image format '.jpg' (supported: .png, .safetensors)");
  EXPECT_ERROR_CONTAINS(read_image(path("noext")),
                        "(no extension) (supported: .png, .safetensors)");
}

// --- failed writes ---------------------------------------------------------------------------

TEST_F(ImageIoTest, UnwritableOutputFolderIsAnErrorAndLeavesNoFile) {
  Image image = quantized_image(3, 3, 3, 8, 1u);
  const std::string missing = path("no-such-folder/out.png");
  EXPECT_ERROR_CONTAINS(write_png(missing, image, 8),
                        missing + ": cannot create a file in '" + path("no-such-folder") + "'");
  write_bytes(path("plain-file"), {1});
  const std::string under_file = path("plain-file/out.safetensors");
  EXPECT_ERROR_CONTAINS(write_safetensors_image(under_file, {0.5f}, 1, 1, 1, 1),
                        under_file + ": cannot create");
  EXPECT_EQ(listing(), std::vector<std::string>{"plain-file"});

  // Permission bits do not stop root, so this part only runs unprivileged.
  if (geteuid() != 0) {
    fs::create_directory(path("locked"));
    fs::permissions(path("locked"), fs::perms::owner_read | fs::perms::owner_exec);
    EXPECT_ERROR_CONTAINS(write_png(path("locked/out.png"), image, 8), "Permission denied");
    fs::permissions(path("locked"), fs::perms::owner_all);
    EXPECT_TRUE(listing(path("locked")).empty());
  }
}

TEST_F(ImageIoTest, FailedRenameLeavesNoTempFile) {
  // The whole file is written, then the rename onto a folder fails: the temporary must go.
  fs::create_directory(path("taken.png"));
  write_bytes(path("taken.png/keep"), {1});
  EXPECT_ERROR_CONTAINS(write_png(path("taken.png"), quantized_image(8, 8, 3, 8, 2u), 8),
                        path("taken.png") + ": cannot replace it");
  EXPECT_ERROR_CONTAINS(write_safetensors_image(path("taken.png"), {0.5f}, 1, 1, 1, 1),
                        "cannot replace it");
  EXPECT_EQ(listing(), std::vector<std::string>{"taken.png"});
}

TEST_F(ImageIoTest, FailedWriteLeavesNoTempFileAndKeepsOldFile) {
  // A file size limit makes write() fail with EFBIG part-way through, like a full disk.
  write_bytes(path("out.png"), {'o', 'l', 'd'});
  write_bytes(path("out.safetensors"), {'o', 'l', 'd'});
  Image big = quantized_image(256, 256, 4, 16, 3u);  // incompressible: ~512 kB
  std::vector<float> values(64 * 1024, 0.5f);

  struct rlimit saved {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto old_handler = signal(SIGXFSZ, SIG_IGN);  // fail the write instead of killing the process
  struct rlimit small = saved;
  small.rlim_cur = 100 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string png_error = error_of([&] { write_png(path("out.png"), big, 16); });
  std::string st_error =
      error_of([&] { write_safetensors_image(path("out.safetensors"), values, 1, 1, 256, 256); });
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
  signal(SIGXFSZ, old_handler);

  EXPECT_NE(png_error.find(path("out.png") + ": write failed (File too large)"), std::string::npos)
      << png_error;
  EXPECT_NE(st_error.find(path("out.safetensors") + ": write failed (File too large)"),
            std::string::npos)
      << st_error;
  EXPECT_EQ(listing(), (std::vector<std::string>{"out.png", "out.safetensors"}));
  EXPECT_EQ(read_bytes(path("out.png")), (std::vector<std::uint8_t>{'o', 'l', 'd'}));
  EXPECT_EQ(read_bytes(path("out.safetensors")), (std::vector<std::uint8_t>{'o', 'l', 'd'}));
}

TEST_F(ImageIoTest, InvalidImagesAreRefusedBeforeAnyFileIsCreated) {
  Image image = quantized_image(4, 3, 3, 8, 4u);
  EXPECT_ERROR_CONTAINS(write_png(path("x.png"), image, 12), "PNG bit depth 12 is not supported");
  Image nan = image;
  nan.pixels[3 * 5 + 1] = NAN;  // x 1, y 1, channel 1
  EXPECT_ERROR_CONTAINS(write_png(path("x.png"), nan, 8), "at x 1, y 1, channel 1 is not finite");
  Image short_image = image;
  short_image.pixels.pop_back();
  EXPECT_ERROR_CONTAINS(write_png(path("x.png"), short_image, 8), "has 35 values, expected 36");
  Image five = image;
  five.channels = 5;
  EXPECT_ERROR_CONTAINS(write_png(path("x.png"), five, 8), "cannot write 5 channels as PNG");
  EXPECT_ERROR_CONTAINS(write_safetensors_image(path("x.safetensors"), {0.5f, 0.5f}, 1, 1, 1, 3),
                        "needs 3 values but 2 were given");
  EXPECT_ERROR_CONTAINS(write_safetensors_image(path("x.safetensors"), {INFINITY}, 1, 1, 1, 1),
                        "not finite");
  EXPECT_ERROR_CONTAINS(write_safetensors_image(path("x.safetensors"), {}, 0, 1, 1, 1),
                        "shape [0, 1, 1, 1]");
  EXPECT_TRUE(listing().empty());
}

TEST(NumberedPaths, InsertsIndexBeforeExtension) {
  EXPECT_EQ(numbered_paths("out.png", 1), std::vector<std::string>{"out.png"});
  EXPECT_EQ(numbered_paths("out.png", 3),
            (std::vector<std::string>{"out-0.png", "out-1.png", "out-2.png"}));
  EXPECT_EQ(numbered_paths("dir.v2/x.safetensors", 2),
            (std::vector<std::string>{"dir.v2/x-0.safetensors", "dir.v2/x-1.safetensors"}));
  EXPECT_EQ(numbered_paths("dir.v2/noext", 2),
            (std::vector<std::string>{"dir.v2/noext-0", "dir.v2/noext-1"}));
  EXPECT_EQ(numbered_paths("a/.png", 2), (std::vector<std::string>{"a/.png-0", "a/.png-1"}));
  EXPECT_TRUE(numbered_paths("out.png", 0).empty());
  EXPECT_THROW(numbered_paths("out.png", -1), gd::Error);
}
