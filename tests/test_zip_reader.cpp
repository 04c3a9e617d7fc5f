// Bad-input and fixture tests for the zip reader used for torch.save archives.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/zip_reader.h"
#include "tests/test_files.h"

using gd::models::ZipArchive;

namespace {

using gd::test::data_dir;
using gd::test::read_all;

std::string model1_path() { return data_dir() + "/lucidrains-tiny/model-1.pt"; }

// --- a tiny zip writer, enough to build the archives the tests need ---

struct ZipSpec {
  std::string name;
  std::string data;
  std::uint16_t method = 0;
  bool descriptor =
      false;           // bit 3: zero sizes in the local header, a data descriptor after the data
  bool zip64 = false;  // sizes and offset through ZIP64 extra fields
};

void put16(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  put16(out, v & 0xffff);
  put16(out, v >> 16);
}
void put64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  put32(out, static_cast<std::uint32_t>(v));
  put32(out, static_cast<std::uint32_t>(v >> 32));
}

std::vector<std::uint8_t> make_zip(const std::vector<ZipSpec>& specs, bool zip64_end = false) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint64_t> offsets;
  for (const ZipSpec& s : specs) {
    offsets.push_back(out.size());
    put32(out, 0x04034b50);
    put16(out, 45);
    put16(out, s.descriptor ? 0x808 : 0x800);
    put16(out, s.method);
    put32(out, 0);  // time, date
    put32(out, 0);  // crc (not checked)
    std::uint32_t size32 =
        s.descriptor ? 0 : (s.zip64 ? 0xFFFFFFFF : static_cast<std::uint32_t>(s.data.size()));
    put32(out, size32);
    put32(out, size32);
    put16(out, static_cast<std::uint32_t>(s.name.size()));
    put16(out, s.zip64 && !s.descriptor ? 20 : 0);
    out.insert(out.end(), s.name.begin(), s.name.end());
    if (s.zip64 && !s.descriptor) {
      put16(out, 1);
      put16(out, 16);
      put64(out, s.data.size());
      put64(out, s.data.size());
    }
    out.insert(out.end(), s.data.begin(), s.data.end());
    if (s.descriptor) {
      put32(out, 0x08074b50);
      put32(out, 0);
      put32(out, static_cast<std::uint32_t>(s.data.size()));
      put32(out, static_cast<std::uint32_t>(s.data.size()));
    }
  }
  std::uint64_t dir_offset = out.size();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const ZipSpec& s = specs[i];
    put32(out, 0x02014b50);
    put16(out, 45);
    put16(out, 45);
    put16(out, s.descriptor ? 0x808 : 0x800);
    put16(out, s.method);
    put32(out, 0);
    put32(out, 0);
    std::uint32_t size32 = s.zip64 ? 0xFFFFFFFF : static_cast<std::uint32_t>(s.data.size());
    put32(out, size32);
    put32(out, size32);
    put16(out, static_cast<std::uint32_t>(s.name.size()));
    put16(out, s.zip64 ? 28 : 0);
    put16(out, 0);  // comment
    put16(out, 0);  // disk
    put16(out, 0);  // internal attributes
    put32(out, 0);  // external attributes
    put32(out, s.zip64 ? 0xFFFFFFFF : static_cast<std::uint32_t>(offsets[i]));
    out.insert(out.end(), s.name.begin(), s.name.end());
    if (s.zip64) {
      put16(out, 1);
      put16(out, 24);
      put64(out, s.data.size());
      put64(out, s.data.size());
      put64(out, offsets[i]);
    }
  }
  std::uint64_t dir_size = out.size() - dir_offset;
  if (zip64_end) {
    std::uint64_t end64 = out.size();
    put32(out, 0x06064b50);
    put64(out, 44);
    put16(out, 45);
    put16(out, 45);
    put32(out, 0);
    put32(out, 0);
    put64(out, specs.size());
    put64(out, specs.size());
    put64(out, dir_size);
    put64(out, dir_offset);
    put32(out, 0x07064b50);
    put32(out, 0);
    put64(out, end64);
    put32(out, 1);
  }
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, zip64_end ? 0xFFFF : static_cast<std::uint32_t>(specs.size()));
  put16(out, zip64_end ? 0xFFFF : static_cast<std::uint32_t>(specs.size()));
  put32(out, zip64_end ? 0xFFFFFFFF : static_cast<std::uint32_t>(dir_size));
  put32(out, zip64_end ? 0xFFFFFFFF : static_cast<std::uint32_t>(dir_offset));
  put16(out, 0);
  return out;
}

// Parses a private copy so ASan sees the exact end of the buffer.
std::unique_ptr<ZipArchive> open_bytes(const std::vector<std::uint8_t>& bytes) {
  auto copy = std::make_shared<std::vector<std::uint8_t>>(bytes);
  return std::make_unique<ZipArchive>(copy, copy->data(), copy->size(), "test.zip");
}

std::string open_error(const std::vector<std::uint8_t>& bytes) {
  try {
    open_bytes(bytes);
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "";
}

std::string entry_text(const ZipArchive& zip, const std::string& name) {
  gd::models::ZipEntryData d = zip.entry(name);
  return std::string(reinterpret_cast<const char*>(d.data), d.size);
}

// Offset of the central directory entry for `name` in a zip image (for patching).
std::size_t central_entry_offset(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  for (std::size_t i = 0; i + 46 + name.size() <= bytes.size(); ++i) {
    if (bytes[i] == 'P' && bytes[i + 1] == 'K' && bytes[i + 2] == 1 && bytes[i + 3] == 2 &&
        (bytes[i + 28] | (bytes[i + 29] << 8)) == static_cast<int>(name.size()) &&
        std::memcmp(&bytes[i + 46], name.data(), name.size()) == 0) {
      return i;
    }
  }
  ADD_FAILURE() << "no central entry " << name;
  return 0;
}

void patch32(std::vector<std::uint8_t>& bytes, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

}  // namespace

TEST(ZipReader, ReadsTorchSaveArchive) {
  ZipArchive zip = ZipArchive::open(model1_path());
  ASSERT_EQ(zip.names().size(), 737u);
  EXPECT_EQ(zip.names()[0], "model-1/data.pkl");
  EXPECT_EQ(zip.names()[1], "model-1/byteorder");
  EXPECT_EQ(entry_text(zip, "model-1/byteorder"), "little");
  EXPECT_EQ(entry_text(zip, "model-1/version"), "3\n");
  EXPECT_EQ(zip.entry("model-1/data.pkl").size, 126307u);
  EXPECT_EQ(zip.entry("model-1/data/0").size, 400u);
  // torch aligns record data to 64 bytes.
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(zip.entry("model-1/data/0").data) % 64, 0u);
  EXPECT_EQ(zip.entry("model-1/data.pkl").data[0], 0x80);  // pickle PROTO
  EXPECT_TRUE(zip.contains("model-1/.data/serialization_id"));
  EXPECT_FALSE(zip.contains("model-1/data/733"));
}

TEST(ZipReader, StoredEntriesRoundTrip) {
  auto zip =
      open_bytes(make_zip({{"a.txt", "hello"}, {"dir/b", ""}, {"c", std::string(1000, 'x')}}));
  ASSERT_EQ(zip->names().size(), 3u);
  EXPECT_EQ(entry_text(*zip, "a.txt"), "hello");
  EXPECT_EQ(entry_text(*zip, "dir/b"), "");
  EXPECT_EQ(entry_text(*zip, "c"), std::string(1000, 'x'));
}

TEST(ZipReader, DataDescriptorEntries) {
  ZipSpec a{"a", "descriptor data"};
  a.descriptor = true;
  auto zip = open_bytes(make_zip({a, {"b", "plain"}}));
  EXPECT_EQ(entry_text(*zip, "a"), "descriptor data");
  EXPECT_EQ(entry_text(*zip, "b"), "plain");
}

TEST(ZipReader, Zip64RecordsAndExtraFields) {
  ZipSpec a{"big/a", "zip64 sized"};
  a.zip64 = true;
  ZipSpec b{"big/b", "zip64 with descriptor"};
  b.zip64 = true;
  b.descriptor = true;
  auto zip = open_bytes(make_zip({a, b, {"small", "s"}}, /*zip64_end=*/true));
  ASSERT_EQ(zip->names().size(), 3u);
  EXPECT_EQ(entry_text(*zip, "big/a"), "zip64 sized");
  EXPECT_EQ(entry_text(*zip, "big/b"), "zip64 with descriptor");
  EXPECT_EQ(entry_text(*zip, "small"), "s");
}

TEST(ZipReader, ArchiveWithComment) {
  std::vector<std::uint8_t> bytes = make_zip({{"a", "x"}});
  std::string comment(300, 'c');
  bytes[bytes.size() - 2] = static_cast<std::uint8_t>(comment.size());
  bytes[bytes.size() - 1] = static_cast<std::uint8_t>(comment.size() >> 8);
  bytes.insert(bytes.end(), comment.begin(), comment.end());
  EXPECT_EQ(entry_text(*open_bytes(bytes), "a"), "x");
}

TEST(ZipReader, MissingFile) {
  try {
    ZipArchive::open(data_dir() + "/nope.pt");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.pt: no such file"), std::string::npos) << e.what();
  }
}

TEST(ZipReader, NotAZip) {
  EXPECT_NE(open_error({}).find("not a zip archive"), std::string::npos);
  EXPECT_NE(open_error(std::vector<std::uint8_t>(5000, 'a')).find("no end of central directory"),
            std::string::npos);
}

TEST(ZipReader, MissingEntry) {
  auto zip = open_bytes(make_zip({{"a", "x"}}));
  try {
    zip->entry("b");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("zip entry 'b' is missing"), std::string::npos)
        << e.what();
  }
}

TEST(ZipReader, CompressedEntry) {
  ZipSpec deflated{"data.bin", "not really deflate"};
  deflated.method = 8;
  auto zip = open_bytes(make_zip({{"ok", "1"}, deflated}));
  EXPECT_EQ(zip->names().size(), 2u);
  EXPECT_EQ(entry_text(*zip, "ok"), "1");
  try {
    zip->entry("data.bin");
    FAIL();
  } catch (const gd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("zip entry 'data.bin' is compressed (method 8)"),
              std::string::npos)
        << e.what();
  }
}

TEST(ZipReader, DuplicateNames) {
  std::string msg = open_error(make_zip({{"a", "1"}, {"a", "2"}}));
  EXPECT_NE(msg.find("zip entry 'a' appears twice"), std::string::npos) << msg;
}

TEST(ZipReader, CentralSizeLiesInTorchArchive) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  std::size_t at = central_entry_offset(bytes, "model-1/data.pkl");
  patch32(bytes, at + 20, 5000000);
  patch32(bytes, at + 24, 5000000);
  std::string msg = open_error(bytes);
  EXPECT_NE(msg.find("zip entry 'model-1/data.pkl' claims 5000000 bytes"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("but the archive's data ends at byte"), std::string::npos) << msg;
}

TEST(ZipReader, CompressedAndStoredSizesDisagree) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  std::size_t at = central_entry_offset(bytes, "model-1/data/0");
  patch32(bytes, at + 24, 401);
  std::string msg = open_error(bytes);
  EXPECT_NE(msg.find("zip entry 'model-1/data/0' is stored but its compressed size 400 differs"),
            std::string::npos)
      << msg;
}

TEST(ZipReader, LocalSizeDisagreesWithCentral) {
  std::vector<std::uint8_t> bytes = make_zip({{"a", "hello"}});
  patch32(bytes, 18, 4);  // local compressed size
  patch32(bytes, 22, 4);
  std::string msg = open_error(bytes);
  EXPECT_NE(
      msg.find("zip entry 'a' has sizes 4/4 in its local header but 5/5 in the central directory"),
      std::string::npos)
      << msg;
}

TEST(ZipReader, LocalHeaderProblems) {
  std::vector<std::uint8_t> bytes = make_zip({{"abc", "hello"}});
  std::vector<std::uint8_t> bad_sig = bytes;
  bad_sig[0] = 'X';
  EXPECT_NE(open_error(bad_sig).find("bad local header signature"), std::string::npos);
  std::vector<std::uint8_t> bad_name = bytes;
  bad_name[30] = 'x';
  EXPECT_NE(open_error(bad_name).find("different name in its local header"), std::string::npos);
  std::vector<std::uint8_t> bad_method = bytes;
  bad_method[8] = 8;
  EXPECT_NE(open_error(bad_method).find("different compression method"), std::string::npos);
  std::vector<std::uint8_t> far_offset = bytes;
  patch32(far_offset, central_entry_offset(bytes, "abc") + 42, 1000000);
  EXPECT_NE(open_error(far_offset).find("local header at byte 1000000"), std::string::npos)
      << open_error(far_offset);
}

TEST(ZipReader, CentralDirectoryOutsideArchive) {
  std::vector<std::uint8_t> bytes = make_zip({{"a", "x"}});
  std::vector<std::uint8_t> bad_offset = bytes;
  patch32(bad_offset, bytes.size() - 6, 0x7fffffff);
  EXPECT_NE(open_error(bad_offset).find("central directory"), std::string::npos);
  std::vector<std::uint8_t> bad_count = bytes;
  bad_count[bytes.size() - 12] = 200;
  bad_count[bytes.size() - 14] = 200;
  EXPECT_NE(open_error(bad_count).find("claims 200 entries"), std::string::npos)
      << open_error(bad_count);
}

TEST(ZipReader, Zip64RecordsOutsideArchive) {
  std::vector<std::uint8_t> bytes = read_all(model1_path());
  // The locator (20 bytes) sits right before the 22-byte end record; patch its record offset.
  std::size_t locator = bytes.size() - 22 - 20;
  ASSERT_EQ(bytes[locator], 'P');
  patch32(bytes, locator + 8, 0x7ffffff0);
  EXPECT_NE(open_error(bytes).find("ZIP64 end record offset"), std::string::npos)
      << open_error(bytes);
}

TEST(ZipReader, TruncatedAtManyLengths) {
  std::vector<std::uint8_t> bytes =
      make_zip({{"a", "hello"}, {"b/c", std::string(100, 'z')}}, true);
  for (std::size_t len = 0; len < bytes.size(); ++len) {
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(open_bytes(cut), gd::Error) << len;
  }
  std::vector<std::uint8_t> big = read_all(model1_path());
  for (std::size_t len = 0; len < big.size(); len += 49999) {
    std::vector<std::uint8_t> cut(big.begin(), big.begin() + static_cast<std::ptrdiff_t>(len));
    EXPECT_THROW(open_bytes(cut), gd::Error) << len;
  }
  // Cuts through the end record, the ZIP64 locator and record, and the directory tail.
  for (std::size_t cut_off = 1; cut_off < 200; cut_off += 5) {
    std::vector<std::uint8_t> cut(big.begin(), big.end() - static_cast<std::ptrdiff_t>(cut_off));
    EXPECT_THROW(open_bytes(cut), gd::Error) << cut_off;
  }
}

TEST(ZipReader, ByteFlipFuzzOfDirectory) {
  std::vector<std::uint8_t> original = read_all(model1_path());
  // The central directory and end records are the last ~46 kB; local headers are spread out.
  const std::size_t dir_start = original.size() - 45598 - 98;
  auto copy = std::make_shared<std::vector<std::uint8_t>>(original);
  std::uint64_t state = 12345;
  auto next = [&state]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int errors = 0;
  for (int i = 0; i < 2000; ++i) {
    std::size_t pos =
        (i % 2 == 0) ? dir_start + next() % (original.size() - dir_start) : next() % 130000;
    (*copy)[pos] ^= static_cast<std::uint8_t>(1 + next() % 255);
    try {
      ZipArchive zip(copy, copy->data(), copy->size(), "fuzz.pt");
      for (const std::string& name : zip.names()) {
        try {
          gd::models::ZipEntryData d = zip.entry(name);
          if (d.size > 0) {
            volatile std::uint8_t sink = d.data[0];
            sink = d.data[d.size - 1];
            (void)sink;
          }
        } catch (const gd::Error&) {
        }
      }
    } catch (const gd::Error&) {
      ++errors;
    }
    (*copy)[pos] = original[pos];
  }
  EXPECT_GT(errors, 0);
}
