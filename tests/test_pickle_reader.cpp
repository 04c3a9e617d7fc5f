// Tests for the restricted unpickler: hand-assembled pickles, good and hostile.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/pickle_reader.h"

using gd::models::DType;
using gd::models::parse_pickle;
using gd::models::PickleValue;
using gd::models::StorageBytes;
using Kind = gd::models::PickleValue::Kind;

using namespace std::string_literals;

namespace {

// --- a tiny pickle assembler ---

std::string le(std::uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  return out;
}
std::string str(const std::string& s) { return "X" + le(s.size(), 4) + s; }  // BINUNICODE
std::string short_str(const std::string& s) {
  return "\x8c" + le(s.size(), 1) + s;
}  // SHORT_BINUNICODE
std::string integer(std::int32_t v) {
  return "J" + le(static_cast<std::uint32_t>(v), 4);
}  // BININT
std::string global(const std::string& m, const std::string& n) { return "c" + m + "\n" + n + "\n"; }
std::string tuple_of(const std::vector<std::int32_t>& v) {
  std::string out = "(";
  for (std::int32_t x : v) out += integer(x);
  return out + "t";
}
const std::string kProto2 = std::string("\x80\x02", 2);
const std::string kFalse = "\x89";
const std::string kTrue = "\x88";

std::string storage(const std::string& type, const std::string& key, std::int32_t numel) {
  return "(" + str("storage") + global("torch", type) + str(key) + str("cpu") + integer(numel) +
         "tQ";
}
std::string tensor(const std::string& storage_pid, std::int32_t offset,
                   const std::vector<std::int32_t>& size, const std::vector<std::int32_t>& stride,
                   const std::string& requires_grad = kFalse) {
  return global("torch._utils", "_rebuild_tensor_v2") + "(" + storage_pid + integer(offset) +
         tuple_of(size) + tuple_of(stride) + requires_grad + global("collections", "OrderedDict") +
         ")Rt" + "R";
}

// A persistent loader over in-memory storages, counting its calls.
struct FakeStorages {
  std::map<std::string, std::shared_ptr<std::vector<std::uint8_t>>> records;
  int calls = 0;

  void add_floats(const std::string& key, const std::vector<float>& values) {
    auto bytes = std::make_shared<std::vector<std::uint8_t>>(values.size() * 4);
    if (!values.empty()) std::memcpy(bytes->data(), values.data(), bytes->size());
    records[key] = bytes;
  }
  gd::models::PersistentLoader loader() {
    return [this](DType, const std::string& key, std::int64_t) {
      ++calls;
      auto it = records.find(key);
      if (it == records.end()) throw gd::Error("no storage " + key);
      return StorageBytes{it->second, it->second->data(), it->second->size()};
    };
  }
};

PickleValue run(const std::string& pickle, FakeStorages* storages = nullptr) {
  FakeStorages none;
  FakeStorages& s = storages ? *storages : none;
  // A private copy so ASan sees the exact end of the input.
  std::vector<std::uint8_t> bytes(pickle.begin(), pickle.end());
  return parse_pickle(bytes.data(), bytes.size(), s.loader(), "test.pkl");
}

std::string run_error(const std::string& pickle, FakeStorages* storages = nullptr) {
  try {
    run(pickle, storages);
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "";
}

float at(const gd::models::RawTensor& t, std::int64_t element) {
  float v;
  std::memcpy(&v, t.data + 4 * element, 4);
  return v;
}

}  // namespace

TEST(PickleReader, PlainValues) {
  std::string p = kProto2 + "}q\x00("s + str("int") + "K\x07" + str("neg") + integer(-5) +
                  str("i2") + "M\x34\x12" + str("long") + "\x8a\x05" + le(0xfffffffffeull, 5) +
                  str("zero_long") + "\x8a\x00"s + str("float") + "G" +
                  "\x3f\xf8\x00\x00\x00\x00\x00\x00"s + str("none") + "N" + str("yes") + kTrue +
                  str("no") + kFalse + str("bytes") + "C\x03" + "abc" + str("list") +
                  "](K\x01K\x02" + "e" + "K\x03" + "a" + str("tuple") + "K\x01K\x02\x86" +
                  str("empty") + ")" + "u.";
  PickleValue v = run(p);
  ASSERT_EQ(v.kind, Kind::Dict);
  EXPECT_FALSE(v.ordered);
  ASSERT_EQ(v.entries.size(), 13u);
  using gd::models::dict_lookup;
  EXPECT_EQ(dict_lookup(v, "int")->integer, 7);
  EXPECT_EQ(dict_lookup(v, "neg")->integer, -5);
  EXPECT_EQ(dict_lookup(v, "i2")->integer, 0x1234);
  EXPECT_EQ(dict_lookup(v, "long")->integer, -2);
  EXPECT_EQ(dict_lookup(v, "zero_long")->integer, 0);
  EXPECT_DOUBLE_EQ(dict_lookup(v, "float")->real, 1.5);
  EXPECT_EQ(dict_lookup(v, "none")->kind, Kind::None);
  EXPECT_TRUE(dict_lookup(v, "yes")->boolean);
  EXPECT_FALSE(dict_lookup(v, "no")->boolean);
  EXPECT_EQ(dict_lookup(v, "bytes")->kind, Kind::Bytes);
  EXPECT_EQ(dict_lookup(v, "bytes")->text, "abc");
  const PickleValue* list = dict_lookup(v, "list");
  ASSERT_EQ(list->kind, Kind::List);
  ASSERT_EQ(list->items.size(), 3u);
  EXPECT_EQ(list->items[2]->integer, 3);
  EXPECT_EQ(dict_lookup(v, "tuple")->items.size(), 2u);
  EXPECT_EQ(dict_lookup(v, "empty")->kind, Kind::Tuple);
  EXPECT_EQ(dict_lookup(v, "missing"), nullptr);
  EXPECT_EQ(v.entries[0].first->text, "int");  // insertion order is kept
}

TEST(PickleReader, Protocol4FramesStackGlobalAndMemoize) {
  std::string body = short_str("collections") + "\x94" + short_str("OrderedDict") + "\x94" +
                     "\x93" + "\x94" + ")R" + "\x94" + short_str("a") + "\x94" + "K\x01" + "s" +
                     "h\x02" + ")R" + "0" + "2" + "0" + ".";
  std::string p = std::string("\x80\x04", 2) + "\x95" + le(body.size(), 8) + body;
  PickleValue v = run(p);
  ASSERT_EQ(v.kind, Kind::Dict);
  EXPECT_TRUE(v.ordered);
  ASSERT_EQ(v.entries.size(), 1u);
  EXPECT_EQ(v.entries[0].first->text, "a");
}

TEST(PickleReader, OrderedDictWithMetadataBuild) {
  // What torch.save writes for a state dict: OrderedDict(), items, then BUILD {"_metadata": ...}.
  std::string metadata = global("collections", "OrderedDict") + ")R" + "(" + str("") + "}(" +
                         str("version") + "K\x01" + "u" + "u";
  std::string p = kProto2 + global("collections", "OrderedDict") + "q\x00)R("s + str("w") +
                  "K\x05" + "u" + "}" + str("_metadata") + metadata + "s" + "b" + ".";
  PickleValue v = run(p);
  ASSERT_EQ(v.kind, Kind::Dict);
  EXPECT_TRUE(v.ordered);
  EXPECT_EQ(gd::models::dict_lookup(v, "w")->integer, 5);
  ASSERT_NE(v.state, nullptr);
  const PickleValue* meta = gd::models::dict_lookup(*v.state, "_metadata");
  ASSERT_NE(meta, nullptr);
  EXPECT_EQ(meta->entries.size(), 1u);
}

TEST(PickleReader, NewObjOrderedDict) {
  PickleValue v = run(kProto2 + global("collections", "OrderedDict") + ")\x81" + ".");
  EXPECT_EQ(v.kind, Kind::Dict);
  EXPECT_TRUE(v.ordered);
}

TEST(PickleReader, RebuildsTensorsOnSharedStorage) {
  FakeStorages s;
  s.add_floats("0", {0, 1, 2, 3, 4, 5, 6, 7});
  // Memoise the storage so the second tensor reuses it, as torch does for shared storages.
  std::string pid = storage("FloatStorage", "0", 8);
  std::string p = kProto2 + "}(" + str("full") + tensor(pid + "q\x10", 0, {2, 4}, {4, 1}) +
                  str("view") + global("torch._utils", "_rebuild_tensor_v2") + "(h\x10" +
                  integer(1) + tuple_of({2, 2}) + tuple_of({1, 4}) + kTrue +
                  global("collections", "OrderedDict") + ")Rt" + "R" + str("scalar") +
                  tensor(pid, 7, {}, {}) + "u.";
  PickleValue v = run(p, &s);
  EXPECT_EQ(s.calls, 2);  // the memoised storage is not loaded again; the third reference is
  const auto& full = gd::models::dict_lookup(v, "full")->tensor;
  EXPECT_EQ(full.dtype, DType::F32);
  EXPECT_EQ(full.shape, (std::vector<std::int64_t>{2, 4}));
  EXPECT_TRUE(full.is_contiguous());
  EXPECT_EQ(at(full, 5), 5.0f);
  const PickleValue* view = gd::models::dict_lookup(v, "view");
  EXPECT_TRUE(view->requires_grad);
  EXPECT_FALSE(view->tensor.is_contiguous());
  EXPECT_EQ(view->tensor.strides, (std::vector<std::int64_t>{1, 4}));
  EXPECT_EQ(view->tensor.data, full.data + 4);
  EXPECT_EQ(at(view->tensor, 1 * 1 + 1 * 4), 6.0f);  // element [1][1] = storage[1 + 1 + 4]
  const auto& scalar = gd::models::dict_lookup(v, "scalar")->tensor;
  EXPECT_EQ(scalar.numel(), 1);
  EXPECT_EQ(at(scalar, 0), 7.0f);
}

TEST(PickleReader, RebuildParameter) {
  FakeStorages s;
  s.add_floats("k", {1, 2, 3});
  std::string p = kProto2 + global("torch._utils", "_rebuild_parameter") + "(" +
                  tensor(storage("FloatStorage", "k", 3), 0, {3}, {1}) + kTrue +
                  global("collections", "OrderedDict") + ")Rt" + "R.";
  PickleValue v = run(p, &s);
  ASSERT_EQ(v.kind, Kind::Tensor);
  EXPECT_TRUE(v.requires_grad);
  EXPECT_EQ(at(v.tensor, 2), 3.0f);
}

TEST(PickleReader, StorageDtypes) {
  const std::pair<const char*, DType> types[] = {
      {"HalfStorage", DType::F16}, {"BFloat16Storage", DType::BF16}, {"DoubleStorage", DType::F64},
      {"LongStorage", DType::I64}, {"IntStorage", DType::I32},       {"ShortStorage", DType::I16},
      {"CharStorage", DType::I8},  {"ByteStorage", DType::U8},       {"BoolStorage", DType::Bool}};
  for (const auto& [name, dtype] : types) {
    FakeStorages s;
    s.add_floats("0", {0, 0, 0, 0});
    PickleValue v = run(kProto2 + tensor(storage(name, "0", 2), 0, {2}, {1}) + ".", &s);
    EXPECT_EQ(v.tensor.dtype, dtype) << name;
  }
}

TEST(PickleReader, TorchDevice) {
  PickleValue v = run(kProto2 + global("torch", "device") + "(" + str("cuda") + "K\x01" + "tR.");
  EXPECT_EQ(v.kind, Kind::String);
  EXPECT_EQ(v.text, "cuda:1");
}

TEST(PickleReader, ForbiddenGlobalOsSystem) {
  FakeStorages s;
  std::string msg = run_error(kProto2 + "cos\nsystem\n" + str("echo pwned") + "\x85" + "R.", &s);
  EXPECT_NE(msg.find("forbidden global 'os.system'"), std::string::npos) << msg;
  EXPECT_EQ(s.calls, 0);
}

TEST(PickleReader, ForbiddenGlobalsOfEveryForm) {
  EXPECT_NE(run_error(kProto2 + "cbuiltins\neval\n" + str("1") + "\x85R.")
                .find("forbidden global 'builtins.eval'"),
            std::string::npos);
  EXPECT_NE(
      run_error(kProto2 + "c__builtin__\nexec\n.").find("forbidden global '__builtin__.exec'"),
      std::string::npos);
  std::string stack_global =
      std::string("\x80\x04", 2) + short_str("subprocess") + short_str("Popen") + "\x93.";
  EXPECT_NE(run_error(stack_global).find("forbidden global 'subprocess.Popen'"), std::string::npos);
  // Allowed modules with other names are still refused.
  EXPECT_NE(
      run_error(kProto2 + global("torch", "load") + ".").find("forbidden global 'torch.load'"),
      std::string::npos);
  EXPECT_NE(run_error(kProto2 + global("collections", "defaultdict") + ".").find("forbidden"),
            std::string::npos);
  // numpy is not needed for torch checkpoints and is refused.
  EXPECT_NE(
      run_error(kProto2 + global("numpy.core.multiarray", "_reconstruct") + ".").find("forbidden"),
      std::string::npos);
}

TEST(PickleReader, AllowedGlobalsCannotBeCalledWrongly) {
  EXPECT_NE(run_error(kProto2 + global("torch", "FloatStorage") + ")R.").find("cannot be called"),
            std::string::npos);
  EXPECT_NE(
      run_error(kProto2 + global("collections", "OrderedDict") + "(K\x01tR.").find("no arguments"),
      std::string::npos);
  EXPECT_NE(run_error(kProto2 + "K\x01)R.").find("cannot call a int"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + global("torch", "device") + ")\x81.").find("NEWOBJ"),
            std::string::npos);
}

TEST(PickleReader, UnknownOpcode) {
  std::string msg = run_error(kProto2 + "I42\n.");  // text INT: not used by protocol 2+
  EXPECT_NE(msg.find("unsupported opcode 0x49"), std::string::npos) << msg;
  EXPECT_NE(run_error("\xff").find("unsupported opcode 0xff"), std::string::npos);
  EXPECT_NE(run_error(std::string("\x80\x06", 2) + "N.").find("unsupported pickle protocol 6"),
            std::string::npos);
}

TEST(PickleReader, StackUnderflow) {
  EXPECT_NE(run_error(kProto2 + "0.").find("stack underflow"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "K\x01" + "a.").find("stack underflow"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "]" + "(" + "a.").find("stack underflow"),
            std::string::npos);  // not across a MARK
  EXPECT_NE(run_error(kProto2 + "R.").find("stack underflow"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + ".").find("STOP with 0 values"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "t.").find("no MARK"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "NN.").find("STOP with 2 values"), std::string::npos);
}

TEST(PickleReader, MemoMiss) {
  std::string msg = run_error(kProto2 + "h\x05.");
  EXPECT_NE(msg.find("memo key 5 is not defined"), std::string::npos) << msg;
  EXPECT_NE(run_error(kProto2 + "j" + le(70000, 4) + ".").find("memo key 70000"),
            std::string::npos);
  EXPECT_NE(run_error(kProto2 + "q\x01.").find("stack underflow"), std::string::npos);
}

TEST(PickleReader, TruncatedInput) {
  FakeStorages s;
  s.add_floats("0", {1, 2, 3, 4});
  std::string p = kProto2 + "}(" + str("t") +
                  tensor(storage("FloatStorage", "0", 4), 0, {2, 2}, {2, 1}) + str("f") + "G" +
                  std::string(8, '\0') + str("l") + "\x8a\x02\x01\x02" + "u.";
  ASSERT_NO_THROW(run(p, &s));
  for (std::size_t len = 0; len < p.size(); ++len) {
    EXPECT_THROW(run(p.substr(0, len), &s), gd::Error) << len;
  }
  EXPECT_NE(run_error(kProto2 + "ctorch\nFloat").find("no newline"), std::string::npos);
}

TEST(PickleReader, BadLengths) {
  EXPECT_NE(run_error(kProto2 + "X" + le(0x10000, 4) + "ab")
                .find("truncated input: string of 65536 bytes"),
            std::string::npos);
  EXPECT_NE(run_error(kProto2 + "\x8d" + le(~0ull, 8) + "ab").find("too long"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "B" + le(100, 4) + "ab").find("truncated"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "\x8b" + le(1000, 4) + "ab").find("does not fit in 64 bits"),
            std::string::npos);
  EXPECT_NE(run_error(kProto2 + "\x8a\x09" + std::string(9, '\1') + ".").find("does not fit"),
            std::string::npos);
  EXPECT_NE(run_error(kProto2 + "c" + std::string(1000, 'a') + "\nb\n.").find("too long"),
            std::string::npos);
}

TEST(PickleReader, NestingBomb) {
  std::string p = kProto2 + ")" + std::string(5000, '\x85') + ".";
  EXPECT_NE(run_error(p).find("nested deeper than"), std::string::npos);
  std::string lists = kProto2;
  for (int i = 0; i < 300; ++i) lists += "]";
  for (int i = 0; i < 299; ++i) lists += "a";
  EXPECT_NE(run_error(lists + ".").find("nested deeper than"), std::string::npos);
}

TEST(PickleReader, ValueAndElementCountBombs) {
  std::string many_values = kProto2;
  for (int i = 0; i < (1 << 20) + 10; ++i) many_values += "N0";
  EXPECT_NE(run_error(many_values + "N.").find("too many values"), std::string::npos);
  // One value referenced millions of times through the memo.
  std::string many_elements = kProto2 + "Nq\x00]("s;
  for (int i = 0; i < (1 << 22) + 10; ++i) many_elements += "h\x00"s;
  EXPECT_NE(run_error(many_elements + "e.").find("too many"), std::string::npos);
}

TEST(PickleReader, RecursiveAndSharedContainersAreRefused) {
  EXPECT_NE(run_error(kProto2 + "]q\x00h\x00"s + "a.").find("cannot contain itself"),
            std::string::npos);
  // list A inside list B, then B appended to A through the memo: would be a cycle.
  std::string cycle =
      kProto2 + "]q\x00"s + "]q\x01" + "h\x00"s + "a" + "0" + "h\x00"s + "h\x01" + "a.";
  EXPECT_NE(run_error(cycle).find("already inside another value"), std::string::npos)
      << run_error(cycle);
  std::string dict_cycle =
      kProto2 + "}q\x00"s + "(h\x00"s + "\x85" + "0" + "h\x00"s + str("k") + "K\x01" + "s.";
  EXPECT_NE(run_error(dict_cycle).find("already inside another value"), std::string::npos);
}

TEST(PickleReader, BuildOnlyOnOrderedDict) {
  EXPECT_NE(run_error(kProto2 + "}}b.").find("BUILD on a dict is not supported"),
            std::string::npos);
  EXPECT_NE(run_error(kProto2 + "]}b.").find("BUILD on a list"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + global("collections", "OrderedDict") + ")RK\x01" + "b.")
                .find("BUILD state is a int"),
            std::string::npos);
}

TEST(PickleReader, SetItemsNeedsPairs) {
  EXPECT_NE(run_error(kProto2 + "}(K\x01u.").find("odd number"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "K\x01(K\x01K\x02u.").find("SETITEM on a int"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + "}K\x01" + "a.").find("APPEND to a dict"), std::string::npos);
}

TEST(PickleReader, TensorOutsideStorage) {
  FakeStorages s;
  s.add_floats("0", {0, 1, 2, 3, 4, 5});
  std::string pid = storage("FloatStorage", "0", 6);
  std::string msg = run_error(kProto2 + tensor(pid, 0, {2, 4}, {4, 1}) + ".", &s);
  EXPECT_NE(msg.find("reaches element 7 but the storage has 6"), std::string::npos) << msg;
  msg = run_error(kProto2 + tensor(pid, 3, {2, 2}, {1, 2}) + ".",
                  &s);  // 3 + 1 + 2 = 6: one past the end
  EXPECT_NE(msg.find("reaches element 6"), std::string::npos) << msg;
  EXPECT_NO_THROW(run(kProto2 + tensor(pid, 3, {3}, {1}) + ".", &s));
  msg = run_error(kProto2 + tensor(pid, 7, {0}, {1}) + ".", &s);
  EXPECT_NE(msg.find("offset 7 outside"), std::string::npos) << msg;
  msg = run_error(kProto2 + tensor(pid, -1, {1}, {1}) + ".", &s);
  EXPECT_NE(msg.find("offset -1"), std::string::npos) << msg;
  msg = run_error(kProto2 + tensor(pid, 0, {2}, {-1}) + ".", &s);
  EXPECT_NE(msg.find("tensor stride has a negative entry -1"), std::string::npos) << msg;
  msg = run_error(kProto2 + tensor(pid, 0, {2, 2}, {1}) + ".", &s);
  EXPECT_NE(msg.find("different lengths"), std::string::npos) << msg;
  // Element-count and index overflow must be caught, not wrapped.
  msg = run_error(kProto2 + tensor(pid, 0, {0x7fffffff, 0x7fffffff, 0x7fffffff}, {1, 1, 1}) + ".",
                  &s);
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
  std::string huge_stride = kProto2 + global("torch._utils", "_rebuild_tensor_v2") + "(" + pid +
                            integer(0) + "(K\x03t" + "(\x8a\x08" + le(0x7fffffffffffffffull, 8) +
                            "t" + kFalse + global("collections", "OrderedDict") + ")RtR.";
  msg = run_error(huge_stride, &s);
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
  // Empty tensors need no bytes.
  PickleValue empty = run(kProto2 + tensor(pid, 6, {0, 3}, {3, 1}) + ".", &s);
  EXPECT_EQ(empty.tensor.numel(), 0);
}

TEST(PickleReader, BadPersistentIds) {
  FakeStorages s;
  s.add_floats("0", {0, 1});
  EXPECT_NE(run_error(kProto2 + "K\x01Q.", &s).find("persistent id is not"), std::string::npos);
  std::string wrong_type =
      "(" + str("storage") + global("torch", "device") + str("0") + str("cpu") + "K\x02tQ.";
  EXPECT_NE(run_error(kProto2 + wrong_type, &s).find("unknown storage type"), std::string::npos);
  EXPECT_NE(run_error(kProto2 + storage("FloatStorage", "0", -2) + ".", &s).find("negative"),
            std::string::npos);
  // The loader finds 8 bytes but the record claims 3 floats.
  std::string msg = run_error(kProto2 + storage("FloatStorage", "0", 3) + ".", &s);
  EXPECT_NE(msg.find("storage '0' has 8 bytes but 3 x F32 needs 12"), std::string::npos) << msg;
  msg = run_error(kProto2 + storage("FloatStorage", "missing", 1) + ".", &s);
  EXPECT_NE(msg.find("no storage missing"), std::string::npos) << msg;
  EXPECT_NE(
      run_error(kProto2 + tensor("K\x01", 0, {1}, {1}) + ".", &s).find("not a storage record"),
      std::string::npos);
}

TEST(PickleReader, ByteFlipFuzz) {
  FakeStorages s;
  s.add_floats("0", std::vector<float>(64, 1.0f));
  s.add_floats("1", std::vector<float>(8, 2.0f));
  std::string p = kProto2 + "}q\x00("s + str("model") + global("collections", "OrderedDict") +
                  "q\x01)Rq\x02(" + str("a") +
                  tensor(storage("FloatStorage", "0", 64) + "q\x03", 0, {4, 16}, {16, 1}) +
                  str("b") + global("torch._utils", "_rebuild_tensor_v2") + "(h\x03" + integer(8) +
                  tuple_of({4, 4}) + tuple_of({1, 4}) + kFalse + "h\x01)RtR" + str("c") +
                  tensor(storage("FloatStorage", "1", 8), 2, {3}, {2}) + "u}" + str("_metadata") +
                  "h\x01)R" + "sb" + str("step") + "K\x02" + str("list") + "](K\x01G" +
                  std::string(8, '\x40') + "\x88\x89Ne" + "u.";
  ASSERT_NO_THROW(run(p, &s));
  std::uint64_t state = 42;
  int ok = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string m = p;
    int flips = 1 + static_cast<int>(i % 3);
    for (int k = 0; k < flips; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      m[(state >> 33) % m.size()] = static_cast<char>(state >> 17);
    }
    try {
      PickleValue v = run(m, &s);
      ++ok;
    } catch (const gd::Error&) {
    }
  }
  EXPECT_GT(ok, 0);
}
