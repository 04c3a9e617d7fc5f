// Bad-input and fixture tests for the LibTorch-free safetensors reader.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/mapped_file.h"
#include "models/safetensors_reader.h"
#include "tests/test_files.h"

using gd::models::DType;
using gd::models::parse_safetensors;
using gd::models::read_safetensors;
using gd::models::TensorMap;

namespace {

using gd::test::data_dir;
using gd::test::read_all;

std::string model_path() {
  return data_dir() + "/diffusers-tiny/model/diffusion_pytorch_model.safetensors";
}

// header JSON + data bytes -> safetensors bytes.
std::vector<std::uint8_t> make_file(const std::string& header,
                                    const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> out(8);
  std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::uint8_t>(len >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

TensorMap parse(const std::vector<std::uint8_t>& bytes,
                const std::string& label = "model.safetensors") {
  // A private copy keeps ASan watching the exact end of the buffer.
  auto copy = std::make_shared<std::vector<std::uint8_t>>(bytes);
  return parse_safetensors(copy, copy->data(), copy->size(), label);
}

// Runs parse() and returns the gd::Error message ("" when nothing was thrown).
std::string parse_error(const std::vector<std::uint8_t>& bytes) {
  try {
    parse(bytes);
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "";
}

float read_f32(const gd::models::RawTensor& t, std::size_t i) {
  float v;
  std::memcpy(&v, t.data + 4 * i, 4);
  return v;
}

class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/gd-safetensors-XXXXXX";
    path_ = mkdtemp(templ);
  }
  ~TempDir() {
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(path_.c_str());
  }
  std::string write(const std::string& name, const std::vector<std::uint8_t>& bytes) {
    std::string p = path_ + "/" + name;
    std::ofstream out(p, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    files_.push_back(p);
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

}  // namespace

TEST(SafetensorsReader, ReadsDiffusersModel) {
  TensorMap tensors = read_safetensors(model_path());
  ASSERT_EQ(tensors.size(), 144u);
  std::int64_t params = 0;
  for (const auto& [name, t] : tensors) {
    EXPECT_EQ(t.dtype, DType::F32) << name;
    EXPECT_TRUE(t.is_contiguous()) << name;
    params += t.numel();
  }
  EXPECT_EQ(params, 177427);
  EXPECT_EQ(tensors.begin()->first, "conv_in.bias");
  EXPECT_EQ(tensors.rbegin()->first, "up_blocks.1.resnets.1.time_emb_proj.weight");

  const auto& conv_in = tensors.at("conv_in.weight");
  EXPECT_EQ(conv_in.shape, (std::vector<std::int64_t>{16, 3, 3, 3}));
  EXPECT_EQ(conv_in.strides, (std::vector<std::int64_t>{27, 9, 3, 1}));
  EXPECT_FLOAT_EQ(read_f32(conv_in, 0), -0.031036993488669395f);
  EXPECT_FLOAT_EQ(read_f32(conv_in, 1), 0.11298473924398422f);
  EXPECT_FLOAT_EQ(read_f32(conv_in, 2), -0.21865098178386688f);

  const auto& conv_out_bias = tensors.at("conv_out.bias");
  EXPECT_EQ(conv_out_bias.shape, (std::vector<std::int64_t>{3}));
  EXPECT_FLOAT_EQ(read_f32(conv_out_bias, 0), 0.074733205139637f);
  EXPECT_FLOAT_EQ(read_f32(conv_out_bias, 2), -0.073033407330513f);

  const auto& lin = tensors.at("time_embedding.linear_1.weight");
  EXPECT_EQ(lin.shape, (std::vector<std::int64_t>{64, 16}));
  EXPECT_FLOAT_EQ(read_f32(lin, 1), -0.23532384634017944f);
  // The header is 14288 bytes; conv_in.weight's data starts at data offset 64.
  EXPECT_NE(conv_in.owner, nullptr);
}

TEST(SafetensorsReader, TensorsKeepTheMappingAlive) {
  gd::models::RawTensor kept;
  {
    TensorMap tensors = read_safetensors(model_path());
    kept = tensors.at("conv_out.bias");
  }
  EXPECT_FLOAT_EQ(read_f32(kept, 1), 0.02247278392314911f);
}

TEST(SafetensorsReader, ParsesEveryDtypeAndEmptyAndScalarTensors) {
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                       R"("f32":{"dtype":"F32","shape":[],"data_offsets":[8,12]},)"
                       R"("f16":{"dtype":"F16","shape":[2],"data_offsets":[12,16]},)"
                       R"("bf16":{"dtype":"BF16","shape":[1,2],"data_offsets":[16,20]},)"
                       R"("i64":{"dtype":"I64","shape":[1],"data_offsets":[20,28]},)"
                       R"("i32":{"dtype":"I32","shape":[1],"data_offsets":[28,32]},)"
                       R"("i16":{"dtype":"I16","shape":[1],"data_offsets":[32,34]},)"
                       R"("i8":{"dtype":"I8","shape":[1],"data_offsets":[34,35]},)"
                       R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[35,36]},)"
                       R"("bool":{"dtype":"BOOL","shape":[1],"data_offsets":[36,37]},)"
                       R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[37,37]}})";
  TensorMap t = parse(make_file(header, std::vector<std::uint8_t>(37, 1)));
  ASSERT_EQ(t.size(), 11u);
  EXPECT_EQ(t.at("f64").dtype, DType::F64);
  EXPECT_EQ(t.at("bf16").dtype, DType::BF16);
  EXPECT_EQ(t.at("bool").dtype, DType::Bool);
  EXPECT_EQ(t.at("f32").shape.size(), 0u);
  EXPECT_EQ(t.at("f32").numel(), 1);
  EXPECT_EQ(t.at("empty").numel(), 0);
  EXPECT_EQ(t.at("i8").data, t.at("f64").data + 34);
}

TEST(SafetensorsReader, MissingFile) {
  try {
    read_safetensors(data_dir() + "/does-not-exist.safetensors");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("does-not-exist.safetensors: no such file"),
              std::string::npos)
        << e.what();
  }
}

TEST(SafetensorsReader, Directory) {
  try {
    read_safetensors(data_dir());
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("directory"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsReader, EmptyFile) {
  TempDir dir;
  std::string path = dir.write("empty.safetensors", {});
  try {
    read_safetensors(path);
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsReader, UnreadableFile) {
  TempDir dir;
  // A FIFO must be refused at once, not block the reader.
  std::string fifo = dir.path() + "/pipe.safetensors";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  try {
    read_safetensors(fifo);
    ADD_FAILURE();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
  }
  unlink(fifo.c_str());
  if (geteuid() == 0) return;  // root can read any file; the permission check needs a normal user
  std::string path = dir.write("locked.safetensors", {1, 2, 3});
  chmod(path.c_str(), 0);
  EXPECT_THROW(read_safetensors(path), gd::Error);
}

TEST(SafetensorsReader, TooShortForHeaderLength) {
  EXPECT_NE(parse_error({1, 2, 3}).find("shorter than the 8-byte header length"),
            std::string::npos);
}

TEST(SafetensorsReader, TruncatedAtManyLengths) {
  std::vector<std::uint8_t> bytes = read_all(model_path());
  ASSERT_EQ(bytes.size(), 724004u);
  std::size_t tried = 0;
  // Every length through the header and a little beyond, then a spread through the data.
  for (std::size_t len = 0; len < bytes.size(); len += (len < 14400 ? 1 : 1009)) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(parse(cut), gd::Error) << "length " << len;
    ++tried;
  }
  std::vector<std::uint8_t> cut(bytes.begin(), bytes.end() - 1);
  EXPECT_THROW(parse(cut), gd::Error);
  EXPECT_GT(tried, 14000u);
}

TEST(SafetensorsReader, HeaderLengthPastEnd) {
  std::vector<std::uint8_t> bytes = make_file("{}", {});
  bytes[0] = 200;
  EXPECT_NE(parse_error(bytes).find("header length 200 runs past the end of the 10-byte file"),
            std::string::npos)
      << parse_error(bytes);
  bytes[0] = 0xff;
  bytes[7] = 0xff;  // a huge length must not overflow the comparison
  EXPECT_NE(parse_error(bytes).find("runs past the end"), std::string::npos);
}

TEST(SafetensorsReader, HeaderLengthOverLimit) {
  // 101 MB of untouched anonymous pages: cheap, and enough to state a header past the limit.
  const std::size_t size = 101u * 1000u * 1000u;
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  auto* bytes = static_cast<std::uint8_t*>(mem);
  std::uint64_t len = 100u * 1000u * 1000u + 1;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(len >> (8 * i));
  try {
    parse_safetensors(nullptr, bytes, size, "big.safetensors");
    ADD_FAILURE();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds"), std::string::npos) << e.what();
  }
  munmap(mem, size);
}

TEST(SafetensorsReader, InvalidJson) {
  EXPECT_NE(
      parse_error(make_file("{\"a\": ", {})).find("model.safetensors: header is not valid JSON"),
      std::string::npos);
  EXPECT_NE(parse_error(make_file(std::string("{\"a\"\0:1}", 8), {})).find("not valid JSON"),
            std::string::npos);
}

TEST(SafetensorsReader, HeaderNotAnObject) {
  EXPECT_NE(parse_error(make_file("[1,2]", {})).find("not a JSON object"), std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"x": 5})", {}))
                .find("tensor 'x' is not described by a JSON object"),
            std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"__metadata__": 5})", {}))
                .find("__metadata__ is not a JSON object"),
            std::string::npos);
}

TEST(SafetensorsReader, OffsetsOutsideData) {
  std::string msg = parse_error(
      make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", {0, 0, 0, 0}));
  EXPECT_NE(msg.find("tensor 'x' has data_offsets [0, 8] but the data section has only 4 bytes"),
            std::string::npos)
      << msg;
  msg = parse_error(make_file(
      R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,0]}})", {}));
  EXPECT_NE(msg.find("tensor 'x'"), std::string::npos) << msg;
}

TEST(SafetensorsReader, BeginAfterEnd) {
  std::string msg = parse_error(
      make_file(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", {0, 0, 0, 0}));
  EXPECT_NE(msg.find("begin after end"), std::string::npos) << msg;
}

TEST(SafetensorsReader, OverlappingOffsets) {
  std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            std::vector<std::uint8_t>(12)));
  EXPECT_NE(msg.find("tensor 'b' (bytes 4..12) overlaps tensor 'a' (bytes 0..8)"),
            std::string::npos)
      << msg;
  // Identical ranges overlap too.
  msg = parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                              std::vector<std::uint8_t>(8)));
  EXPECT_NE(msg.find("overlaps"), std::string::npos) << msg;
}

TEST(SafetensorsReader, ShapeInconsistentWithByteRange) {
  std::string msg =
      parse_error(make_file(R"({"x":{"dtype":"F32","shape":[2,3],"data_offsets":[0,96]}})",
                            std::vector<std::uint8_t>(96)));
  EXPECT_NE(msg.find("model.safetensors: tensor 'x' has data_offsets [0, 96] but shape [2, 3] of "
                     "F32 needs 24 bytes"),
            std::string::npos)
      << msg;
}

TEST(SafetensorsReader, DtypeInconsistentWithByteRange) {
  std::string msg =
      parse_error(make_file(R"({"x":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}})",
                            std::vector<std::uint8_t>(24)));
  EXPECT_NE(msg.find("shape [2, 3] of F16 needs 12 bytes"), std::string::npos) << msg;
}

TEST(SafetensorsReader, UnknownOrMissingDtype) {
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", {0}))
                .find("tensor 'x' has unsupported dtype 'F8'"),
            std::string::npos);
  EXPECT_NE(
      parse_error(make_file(R"({"x":{"shape":[1],"data_offsets":[0,1]}})", {0})).find("no dtype"),
      std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":3,"shape":[1],"data_offsets":[0,1]}})", {0}))
                .find("no dtype"),
            std::string::npos);
}

TEST(SafetensorsReader, BadShapes) {
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", {0}))
                .find("not a non-negative integer"),
            std::string::npos);
  EXPECT_NE(
      parse_error(make_file(R"({"x":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", {0}))
          .find("not a non-negative integer"),
      std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"U8","shape":"1","data_offsets":[0,1]}})", {0}))
                .find("no shape"),
            std::string::npos);
  std::string msg = parse_error(make_file(
      R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})",
      {0, 0, 0, 0}));
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
  // Products that wrap to a small number exactly must still be refused.
  msg = parse_error(make_file(
      R"({"x":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", {}));
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
}

TEST(SafetensorsReader, BadDataOffsets) {
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", {0}))
                .find("data_offsets"),
            std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,-1]}})", {0}))
                .find("data_offsets"),
            std::string::npos);
  EXPECT_NE(parse_error(make_file(R"({"x":{"dtype":"U8","shape":[1]}})", {0})).find("data_offsets"),
            std::string::npos);
}

TEST(SafetensorsReader, ByteFlipFuzz) {
  std::vector<std::uint8_t> original = read_all(model_path());
  const std::size_t header_end = 8 + 14288;
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  auto next = [&state]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  auto copy = std::make_shared<std::vector<std::uint8_t>>(original);
  int ok = 0, errors = 0;
  for (int i = 0; i < 3000; ++i) {
    // Mostly the header (where structure lives), sometimes anywhere; 1-3 bytes at a time.
    int flips = 1 + static_cast<int>(next() % 3);
    std::vector<std::size_t> where;
    for (int k = 0; k < flips; ++k) {
      std::size_t pos = (next() % 4 != 0) ? next() % header_end : next() % original.size();
      where.push_back(pos);
      (*copy)[pos] = static_cast<std::uint8_t>(next());
    }
    try {
      TensorMap t = parse_safetensors(copy, copy->data(), copy->size(), "fuzz.safetensors");
      for (const auto& [name, tensor] : t) {
        // Touch the first and last byte of every tensor: ASan flags anything out of bounds.
        std::size_t bytes =
            static_cast<std::size_t>(tensor.numel()) * gd::models::dtype_size(tensor.dtype);
        if (bytes > 0) {
          volatile std::uint8_t sink = tensor.data[0];
          sink = tensor.data[bytes - 1];
          (void)sink;
        }
      }
      ++ok;
    } catch (const gd::Error&) {
      ++errors;
    }
    for (std::size_t pos : where) (*copy)[pos] = original[pos];
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(ok, 0);
}

// ---- header-only reads ------------------------------------------------------------------------

TEST(SafetensorsHeader, ReadsShapesAndOffsetsOfTheDiffusersModel) {
  const gd::models::SafetensorsHeader header = gd::models::read_safetensors_header(model_path());
  const TensorMap tensors = read_safetensors(model_path());
  ASSERT_EQ(header.tensors.size(), tensors.size());
  EXPECT_EQ(header.data_start, 8u + 14288u);
  for (const auto& [name, t] : tensors) {
    const gd::models::SafetensorsEntry& e = header.tensors.at(name);
    EXPECT_EQ(e.dtype, t.dtype) << name;
    EXPECT_EQ(e.shape, t.shape) << name;
    EXPECT_EQ(e.end - e.begin,
              static_cast<std::uint64_t>(t.numel()) * gd::models::dtype_size(t.dtype))
        << name;
  }
}

TEST(SafetensorsHeader, ReadsATruncatedFileThatFullParsingRefuses) {
  std::vector<std::uint8_t> bytes = read_all(model_path());
  // Every length from the end of the header to the end of the file.
  for (std::size_t len = 8 + 14288; len < bytes.size(); len += 7919) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(parse(cut), gd::Error) << "length " << len;
    auto copy = std::make_shared<std::vector<std::uint8_t>>(cut);
    EXPECT_EQ(
        gd::models::parse_safetensors_header(copy->data(), copy->size(), "cut").tensors.size(),
        144u)
        << "length " << len;
  }
}

TEST(SafetensorsHeader, ValidatesTheHeaderAsFullParsingDoes) {
  auto header_error = [](const std::vector<std::uint8_t>& bytes) -> std::string {
    auto copy = std::make_shared<std::vector<std::uint8_t>>(bytes);  // exact end for ASan
    try {
      gd::models::parse_safetensors_header(copy->data(), copy->size(), "model.safetensors");
    } catch (const gd::Error& e) {
      return e.what();
    }
    return "";
  };
  const std::vector<std::vector<std::uint8_t>> bad = {
      {1, 2, 3},
      make_file("{", {}),
      make_file("[]", {}),
      make_file(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", {}),
      make_file(R"({"x":{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}})",
                std::vector<std::uint8_t>(24)),
      make_file(R"({"x":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", {}),
      make_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", {}),
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::vector<std::uint8_t>(12)),
  };
  for (const auto& bytes : bad) {
    const std::string full = parse_error(bytes);
    EXPECT_FALSE(full.empty());
    EXPECT_EQ(header_error(bytes), full);
  }
  // Only the data section's size is not checked.
  const auto outside =
      make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", {0, 0, 0, 0});
  EXPECT_NE(parse_error(outside).find("data section has only 4 bytes"), std::string::npos);
  EXPECT_EQ(header_error(outside), "");
}
