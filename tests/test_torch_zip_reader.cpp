// Tests for reading torch.save zip checkpoints with the restricted unpickler.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/torch_zip_reader.h"
#include "tests/test_files.h"

using gd::models::dict_get;
using gd::models::DType;
using gd::models::parse_torch_checkpoint;
using gd::models::PickleValue;
using gd::models::read_torch_checkpoint;
using gd::models::state_dict_tensors;
using gd::models::TensorMap;
using Kind = gd::models::PickleValue::Kind;
using namespace std::string_literals;

namespace {

using gd::test::data_dir;
using gd::test::read_all;

std::string model1_path() { return data_dir() + "/lucidrains-tiny/model-1.pt"; }

PickleValue parse_bytes(const std::vector<std::uint8_t>& bytes) {
  auto copy = std::make_shared<std::vector<std::uint8_t>>(bytes);
  return parse_torch_checkpoint(copy, copy->data(), copy->size(), "test.pt");
}

std::string parse_error(const std::vector<std::uint8_t>& bytes) {
  try {
    parse_bytes(bytes);
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "";
}

float f32_at(const gd::models::RawTensor& t, std::int64_t element) {
  float v;
  std::memcpy(&v, t.data + 4 * element, 4);
  return v;
}

// --- a minimal stored-entry zip writer (data descriptor flag like PyTorch's writer) ---

void put16(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  put16(out, v & 0xffff);
  put16(out, v >> 16);
}

std::vector<std::uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& entries,
                                   std::uint16_t method = 0) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint32_t> offsets;
  for (const auto& [name, data] : entries) {
    offsets.push_back(static_cast<std::uint32_t>(out.size()));
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, 0x808);
    put16(out, method);
    put32(out, 0);
    put32(out, 0);
    put32(out, 0);
    put32(out, 0);
    put16(out, static_cast<std::uint32_t>(name.size()));
    put16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put32(out, 0x08074b50);
    put32(out, 0);
    put32(out, static_cast<std::uint32_t>(data.size()));
    put32(out, static_cast<std::uint32_t>(data.size()));
  }
  std::uint32_t dir_offset = static_cast<std::uint32_t>(out.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& [name, data] = entries[i];
    put32(out, 0x02014b50);
    put16(out, 20);
    put16(out, 20);
    put16(out, 0x808);
    put16(out, method);
    put32(out, 0);
    put32(out, 0);
    put32(out, static_cast<std::uint32_t>(data.size()));
    put32(out, static_cast<std::uint32_t>(data.size()));
    put16(out, static_cast<std::uint32_t>(name.size()));
    put32(out, 0);  // extra, comment lengths
    put32(out, 0);  // disk, internal attributes
    put32(out, 0);  // external attributes
    put32(out, offsets[i]);
    out.insert(out.end(), name.begin(), name.end());
  }
  std::uint32_t dir_size = static_cast<std::uint32_t>(out.size()) - dir_offset;
  put32(out, 0x06054b50);
  put32(out, 0);
  put16(out, static_cast<std::uint32_t>(entries.size()));
  put16(out, static_cast<std::uint32_t>(entries.size()));
  put32(out, dir_size);
  put32(out, dir_offset);
  put16(out, 0);
  return out;
}

// --- pickle pieces ---

std::string le32(std::uint32_t v) {
  std::string out;
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}
std::string str(const std::string& s) {
  return "X" + le32(static_cast<std::uint32_t>(s.size())) + s;
}
std::string global(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }

// {"w": tensor of `numel` floats on storage key "0"} as torch.save would pickle it.
std::string state_dict_pickle(int numel) {
  return "\x80\x02}("s + str("w") + global("torch._utils", "_rebuild_tensor_v2") + "((" +
         str("storage") + global("torch", "FloatStorage") + str("0") + str("cpu") + "K" +
         static_cast<char>(numel) + "tQK\x00"s + "K" + static_cast<char>(numel) +
         "\x85K\x01\x85\x89" + global("collections", "OrderedDict") + ")RtR" + "u.";
}

std::string floats(const std::vector<float>& v) {
  std::string out(v.size() * 4, '\0');
  std::memcpy(&out[0], v.data(), out.size());
  return out;
}

std::size_t find_bytes(const std::vector<std::uint8_t>& hay, const std::string& needle,
                       std::size_t from = 0) {
  for (std::size_t i = from; i + needle.size() <= hay.size(); ++i) {
    if (std::memcmp(&hay[i], needle.data(), needle.size()) == 0) return i;
  }
  ADD_FAILURE() << "not found: " << needle;
  return 0;
}

}  // namespace

TEST(TorchZipReader, ReadsLucidrainsTrainerCheckpoint) {
  PickleValue ckpt = read_torch_checkpoint(model1_path());
  ASSERT_EQ(ckpt.kind, Kind::Dict);
  EXPECT_FALSE(ckpt.ordered);
  ASSERT_EQ(ckpt.entries.size(), 6u);
  const char* keys[] = {"step", "model", "opt", "ema", "scaler", "version"};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(ckpt.entries[i].first->text, keys[i]);
  EXPECT_EQ(dict_get(ckpt, "step", "ckpt")->integer, 2);
  EXPECT_EQ(dict_get(ckpt, "version", "ckpt")->text, "2.3.1");
  EXPECT_EQ(dict_get(ckpt, "scaler", "ckpt")->kind, Kind::None);

  const PickleValue& model = *dict_get(ckpt, "model", "ckpt");
  EXPECT_TRUE(model.ordered);
  ASSERT_NE(model.state, nullptr);  // the OrderedDict's _metadata, from BUILD
  EXPECT_EQ(dict_get(*model.state, "_metadata", "state")->entries.size(), 218u);
  TensorMap weights = state_dict_tensors(model, "model");
  ASSERT_EQ(weights.size(), 154u);
  std::int64_t unet_params = 0;
  int unet_tensors = 0;
  for (const auto& [name, t] : weights) {
    EXPECT_EQ(t.dtype, DType::F32) << name;
    EXPECT_TRUE(t.is_contiguous()) << name;
    if (name.rfind("model.", 0) == 0) {
      unet_params += t.numel();
      ++unet_tensors;
    }
  }
  EXPECT_EQ(unet_tensors, 141);
  EXPECT_EQ(unet_params, 242003);
  const auto& betas = weights.at("betas");
  EXPECT_EQ(betas.shape, (std::vector<std::int64_t>{100}));
  EXPECT_FLOAT_EQ(f32_at(betas, 0), 0.0030772858299314976f);
  EXPECT_FLOAT_EQ(f32_at(betas, 2), 0.003448652336373925f);
  EXPECT_FLOAT_EQ(f32_at(betas, 99), 0.9990000128746033f);
  const auto& conv = weights.at("model.init_conv.weight");
  EXPECT_EQ(conv.shape, (std::vector<std::int64_t>{16, 3, 7, 7}));
  EXPECT_EQ(conv.strides, (std::vector<std::int64_t>{147, 49, 7, 1}));
  EXPECT_FLOAT_EQ(f32_at(conv, 0), 0.011334997601807117f);
  EXPECT_FLOAT_EQ(f32_at(conv, 2), 0.04502397030591965f);

  const PickleValue& ema = *dict_get(ckpt, "ema", "ckpt");
  TensorMap ema_tensors = state_dict_tensors(ema, "ema");
  EXPECT_EQ(ema_tensors.size(), 310u);
  EXPECT_EQ(ema.entries[0].first->text, "initted");
  const auto& initted = ema_tensors.at("initted");
  EXPECT_EQ(initted.dtype, DType::Bool);
  EXPECT_TRUE(initted.shape.empty());
  EXPECT_EQ(initted.data[0], 1);
  const auto& ema_step = ema_tensors.at("step");
  EXPECT_EQ(ema_step.dtype, DType::I64);
  std::int64_t step_value;
  std::memcpy(&step_value, ema_step.data, 8);
  EXPECT_EQ(step_value, 2);
  int ema_unet = 0;
  for (const auto& entry : ema_tensors) ema_unet += entry.first.rfind("ema_model.model.", 0) == 0;
  EXPECT_EQ(ema_unet, 141);
  EXPECT_FLOAT_EQ(f32_at(ema_tensors.at("ema_model.model.init_conv.weight"), 0),
                  0.010421575047075748f);
  // torch.save de-duplicates storages: the online copy views the very same bytes as `model`.
  EXPECT_EQ(ema_tensors.at("online_model.betas").data, betas.data);
  EXPECT_EQ(ema_tensors.at("online_model.model.init_conv.weight").data, conv.data);

  const PickleValue& opt = *dict_get(ckpt, "opt", "ckpt");
  const PickleValue& opt_state = *dict_get(opt, "state", "opt");
  EXPECT_EQ(opt_state.entries.size(), 141u);
  EXPECT_EQ(opt_state.entries[0].first->kind, Kind::Int);  // Adam keys are param indices
  const PickleValue& groups = *dict_get(opt, "param_groups", "opt");
  ASSERT_EQ(groups.kind, Kind::List);
  ASSERT_EQ(groups.items.size(), 1u);
  EXPECT_DOUBLE_EQ(dict_get(*groups.items[0], "lr", "group")->real, 0.001);
  const PickleValue& adam_betas = *dict_get(*groups.items[0], "betas", "group");
  ASSERT_EQ(adam_betas.kind, Kind::Tuple);
  EXPECT_DOUBLE_EQ(adam_betas.items[1]->real, 0.99);
  EXPECT_EQ(dict_get(*groups.items[0], "params", "group")->items.size(), 141u);
}

TEST(TorchZipReader, TensorsOutliveTheCheckpointTree) {
  gd::models::RawTensor betas;
  {
    PickleValue ckpt = read_torch_checkpoint(model1_path());
    betas = state_dict_tensors(*dict_get(ckpt, "model", "ckpt"), "model").at("betas");
  }
  EXPECT_FLOAT_EQ(f32_at(betas, 99), 0.9990000128746033f);
}

TEST(TorchZipReader, ArbitraryFolderNameAndNoByteorder) {
  PickleValue v = parse_bytes(make_zip({{"archive/data.pkl", state_dict_pickle(3)},
                                        {"archive/data/0", floats({1.5f, 2.5f, 3.5f})},
                                        {"archive/version", "3\n"}}));
  TensorMap t = state_dict_tensors(v, "sd");
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.at("w").shape, (std::vector<std::int64_t>{3}));
  EXPECT_FLOAT_EQ(f32_at(t.at("w"), 2), 3.5f);
}

TEST(TorchZipReader, MissingFile) {
  try {
    read_torch_checkpoint(data_dir() + "/absent.pt");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("absent.pt: no such file"), std::string::npos) << e.what();
  }
}

TEST(TorchZipReader, LegacyFormatOrGarbage) {
  // The legacy format starts with a pickled magic number.
  std::string msg = parse_error(
      {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19});
  EXPECT_EQ(msg, "test.pt: not a torch.save zip archive (legacy pre-1.6 format is not supported)");
  EXPECT_NE(parse_error({'a'}).find("not a torch.save zip archive"), std::string::npos);
  std::string safetensors =
      data_dir() + "/diffusers-tiny/model/diffusion_pytorch_model.safetensors";
  try {
    read_torch_checkpoint(safetensors);
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a torch.save zip archive"), std::string::npos)
        << e.what();
  }
}

TEST(TorchZipReader, ZipWithoutDataPkl) {
  EXPECT_NE(parse_error(make_zip({{"x/other", "1"}})).find("no <folder>/data.pkl"),
            std::string::npos);
  EXPECT_NE(parse_error(make_zip({{"a/data.pkl", "N."}, {"b/data.pkl", "N."}})).find("several"),
            std::string::npos);
}

TEST(TorchZipReader, StorageRecordMissing) {
  std::string msg = parse_error(make_zip({{"m/data.pkl", state_dict_pickle(3)}}));
  EXPECT_NE(msg.find("storage record 'm/data/0' is missing"), std::string::npos) << msg;
}

TEST(TorchZipReader, StorageRecordTooSmall) {
  std::string msg =
      parse_error(make_zip({{"m/data.pkl", state_dict_pickle(3)}, {"m/data/0", floats({1, 2})}}));
  EXPECT_NE(msg.find("storage record 'm/data/0' has 8 bytes but 3 x F32 needs 12"),
            std::string::npos)
      << msg;
}

TEST(TorchZipReader, BigEndianRefused) {
  std::string msg = parse_error(make_zip(
      {{"m/data.pkl", state_dict_pickle(1)}, {"m/byteorder", "big"}, {"m/data/0", floats({1})}}));
  EXPECT_NE(msg.find("byte order is 'big'"), std::string::npos) << msg;
}

TEST(TorchZipReader, ForbiddenGlobalInDataPkl) {
  std::string evil =
      "\x80\x02"
      "cos\nsystem\n"s +
      str("rm -rf /") + "\x85R.";
  std::string msg = parse_error(make_zip({{"m/data.pkl", evil}}));
  EXPECT_NE(msg.find("test.pt: m/data.pkl: pickle: forbidden global 'os.system'"),
            std::string::npos)
      << msg;
}

TEST(TorchZipReader, TorchScriptArchiveIsRefusedSafely) {
  // A TorchScript file is also a zip with data.pkl, but its pickle names __torch__ classes.
  std::string path = data_dir() + "/torchscript-tiny/model.pt";
  if (access(path.c_str(), R_OK) != 0) GTEST_SKIP() << "no TorchScript fixture";
  try {
    read_torch_checkpoint(path);
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("forbidden global '__torch__."), std::string::npos)
        << e.what();
  }
}

TEST(TorchZipReader, CompressedDataPkl) {
  std::string msg = parse_error(make_zip({{"m/data.pkl", state_dict_pickle(1)}}, 8));
  EXPECT_NE(msg.find("zip entry 'm/data.pkl' is compressed"), std::string::npos) << msg;
}

TEST(TorchZipReader, EntryLiesAboutItsSize) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  // Central directory entry of data.pkl: sizes at +20/+24. Make it claim more than the file.
  std::size_t at = find_bytes(bytes, "model-1/data.pkl", bytes.size() - 50000) - 46;
  ASSERT_EQ(bytes[at], 'P');
  for (int i = 0; i < 4; ++i)
    bytes[at + 20 + i] = bytes[at + 24 + i] = static_cast<std::uint8_t>(0x00500000u >> (8 * i));
  std::string msg = parse_error(bytes);
  EXPECT_NE(msg.find("zip entry 'model-1/data.pkl' claims 5242880 bytes"), std::string::npos)
      << msg;
}

TEST(TorchZipReader, StorageRecordShorterThanPickleClaims) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  // Storage 0 (betas, 100 floats = 400 bytes): shrink its record to 396 bytes in both headers.
  std::size_t at = find_bytes(bytes, "model-1/data/0", bytes.size() - 50000) - 46;
  ASSERT_EQ(bytes[at], 'P');
  bytes[at + 20] = bytes[at + 24] = static_cast<std::uint8_t>(396 & 0xff);
  bytes[at + 21] = bytes[at + 25] = static_cast<std::uint8_t>(396 >> 8);
  std::string msg = parse_error(bytes);
  EXPECT_NE(msg.find("storage record 'model-1/data/0' has 396 bytes but 100 x F32 needs 400"),
            std::string::npos)
      << msg;
}

TEST(TorchZipReader, StateDictTensorsNeedsADict) {
  PickleValue not_dict;
  not_dict.kind = Kind::List;
  try {
    state_dict_tensors(not_dict, "ckpt['model']");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_EQ(std::string(e.what()), "ckpt['model']: expected a state dict, found a list");
  }
  EXPECT_THROW(dict_get(not_dict, "x", "here"), gd::Error);
}

TEST(TorchZipReader, TruncatedCheckpoint) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  for (std::size_t len = 0; len < bytes.size(); len += 40009) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(parse_bytes(cut), gd::Error) << len;
  }
}

TEST(TorchZipReader, ByteFlipFuzz) {
  std::vector<std::uint8_t> original = read_all(model1_path());
  const std::size_t pickle_start = 64, pickle_end = 64 + 126307;
  const std::size_t dir_start = original.size() - 45700;
  auto copy = std::make_shared<std::vector<std::uint8_t>>(original);
  std::uint64_t state = 7;
  auto next = [&state]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  int ok = 0, errors = 0;
  // Each parse takes ~30 ms under ASan, so 600 mutations keep this test near 20 s; the
  // pickle reader's own fuzz test covers many more mutations of a smaller pickle.
  for (int i = 0; i < 600; ++i) {
    std::size_t pos;
    switch (next() % 4) {
      case 0:
      case 1: pos = pickle_start + next() % (pickle_end - pickle_start); break;  // the pickle
      case 2: pos = dir_start + next() % (original.size() - dir_start); break;  // central directory
      default: pos = next() % original.size(); break;                           // anywhere
    }
    (*copy)[pos] = static_cast<std::uint8_t>(next());
    try {
      PickleValue v = parse_torch_checkpoint(copy, copy->data(), copy->size(), "fuzz.pt");
      if (v.kind == Kind::Dict) {
        for (const auto& entry : v.entries) {
          if (entry.second->kind != Kind::Dict) continue;
          for (const auto& [name, t] : state_dict_tensors(*entry.second, "x")) {
            // Touch the last reachable element: ASan flags anything outside the file.
            std::int64_t last = 0;
            bool empty = false;
            for (std::size_t d = 0; d < t.shape.size(); ++d) {
              empty = empty || t.shape[d] == 0;
              last += (t.shape[d] - 1) * t.strides[d];
            }
            if (!empty) {
              volatile std::uint8_t sink =
                  t.data[static_cast<std::size_t>(last) * gd::models::dtype_size(t.dtype)];
              (void)sink;
            }
          }
        }
      }
      ++ok;
    } catch (const gd::Error&) {
      ++errors;
    }
    (*copy)[pos] = original[pos];
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(errors, 0);
}
