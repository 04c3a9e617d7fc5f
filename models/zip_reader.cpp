#include "models/zip_reader.h"

#include <cstring>
#include <utility>

#include "core/error.h"
#include "models/mapped_file.h"

namespace gd::models {

namespace {

constexpr std::uint32_t kLocalHeaderSig = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr std::uint32_t kEnd64Sig = 0x06064b50;
constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kEndSize = 22;
constexpr std::size_t kEnd64LocatorSize = 20;
constexpr std::size_t kEnd64Size = 56;
// The end record is 22 bytes followed by a comment of at most 65535 bytes.
constexpr std::size_t kMaxEndSearch = kEndSize + 65535;

std::uint16_t le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t le64(const std::uint8_t* p) {
  return static_cast<std::uint64_t>(le32(p)) | (static_cast<std::uint64_t>(le32(p + 4)) << 32);
}

// Values a ZIP64 extra field may replace: those whose 32-bit field is all ones.
struct Zip64Fields {
  std::uint64_t uncompressed;
  std::uint64_t compressed;
  std::uint64_t offset;
  bool need_uncompressed;
  bool need_compressed;
  bool need_offset;
};

// Reads the ZIP64 extra field (id 1) of a header's extra block into `fields`. Returns an error
// text, or an empty string on success.
std::string read_zip64_extra(const std::uint8_t* extra, std::size_t extra_len,
                             Zip64Fields* fields) {
  std::size_t pos = 0;
  while (pos + 4 <= extra_len) {
    std::uint16_t id = le16(extra + pos);
    std::uint16_t len = le16(extra + pos + 2);
    pos += 4;
    if (len > extra_len - pos) return "has an extra field that runs past its header";
    if (id == 1) {
      const std::uint8_t* p = extra + pos;
      std::size_t left = len;
      // The fields appear in this fixed order, each only when its 32-bit value is 0xFFFFFFFF.
      auto take = [&](bool needed, std::uint64_t* value) {
        if (!needed) return true;
        if (left < 8) return false;
        *value = le64(p);
        p += 8;
        left -= 8;
        return true;
      };
      if (!take(fields->need_uncompressed, &fields->uncompressed) ||
          !take(fields->need_compressed, &fields->compressed) ||
          !take(fields->need_offset, &fields->offset)) {
        return "has a ZIP64 extra field that is too short";
      }
      fields->need_uncompressed = fields->need_compressed = fields->need_offset = false;
      return "";
    }
    pos += len;
  }
  if (fields->need_uncompressed || fields->need_compressed || fields->need_offset) {
    return "has 32-bit sizes marked as ZIP64 but no ZIP64 extra field";
  }
  return "";
}

}  // namespace

ZipArchive::ZipArchive(std::shared_ptr<const void> owner, const std::uint8_t* bytes,
                       std::size_t size, std::string label)
    : owner_(std::move(owner)), bytes_(bytes), size_(size), label_(std::move(label)) {
  const std::string& f = label_;
  if (size_ < kEndSize) throw Error(f + ": not a zip archive (too short)");

  // Find the end-of-central-directory record, scanning back over a possible comment.
  std::size_t end_pos = size_;  // size_ = not found
  std::size_t lowest = size_ > kMaxEndSearch ? size_ - kMaxEndSearch : 0;
  for (std::size_t pos = size_ - kEndSize + 1; pos-- > lowest;) {
    if (le32(bytes_ + pos) == kEndSig && pos + kEndSize + le16(bytes_ + pos + 20) <= size_) {
      end_pos = pos;
      break;
    }
  }
  if (end_pos == size_) throw Error(f + ": not a zip archive (no end of central directory record)");

  const std::uint8_t* end = bytes_ + end_pos;
  std::uint64_t entry_count = le16(end + 10);
  std::uint64_t dir_size = le32(end + 12);
  std::uint64_t dir_offset = le32(end + 16);
  if (le16(end + 4) != 0 || le16(end + 6) != 0 || le16(end + 8) != le16(end + 10)) {
    throw Error(f + ": multi-disk zip archives are not supported");
  }
  // The byte where the central directory must end: the start of the ZIP64 records if present.
  std::uint64_t dir_limit = end_pos;

  // ZIP64: a locator right before the end record points at the 64-bit end record.
  if (end_pos >= kEnd64LocatorSize && le32(end - kEnd64LocatorSize) == kEnd64LocatorSig) {
    const std::uint8_t* locator = end - kEnd64LocatorSize;
    std::uint64_t end64_pos = le64(locator + 8);
    if (end64_pos > end_pos - kEnd64LocatorSize ||
        end_pos - kEnd64LocatorSize - end64_pos < kEnd64Size) {
      throw Error(f + ": ZIP64 end record offset " + std::to_string(end64_pos) +
                  " is outside the archive");
    }
    const std::uint8_t* end64 = bytes_ + end64_pos;
    if (le32(end64) != kEnd64Sig) throw Error(f + ": ZIP64 end record has a bad signature");
    if (le32(end64 + 16) != 0 || le32(end64 + 20) != 0 || le64(end64 + 24) != le64(end64 + 32)) {
      throw Error(f + ": multi-disk zip archives are not supported");
    }
    entry_count = le64(end64 + 32);
    dir_size = le64(end64 + 40);
    dir_offset = le64(end64 + 48);
    dir_limit = end64_pos;
  } else if (entry_count == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) {
    throw Error(f + ": zip archive needs ZIP64 records but has none");
  }

  if (dir_offset > dir_limit || dir_size > dir_limit - dir_offset) {
    throw Error(f + ": central directory (" + std::to_string(dir_size) + " bytes at byte " +
                std::to_string(dir_offset) + ") lies outside the archive");
  }
  if (entry_count > dir_size / kCentralHeaderSize) {
    throw Error(f + ": zip archive claims " + std::to_string(entry_count) +
                " entries but its central directory has only " + std::to_string(dir_size) +
                " bytes");
  }

  std::uint64_t pos = dir_offset;
  const std::uint64_t dir_end = dir_offset + dir_size;
  names_.reserve(entry_count);
  for (std::uint64_t i = 0; i < entry_count; ++i) {
    const std::string which = f + ": zip central directory entry " + std::to_string(i);
    if (dir_end - pos < kCentralHeaderSize) throw Error(which + " runs past the central directory");
    const std::uint8_t* h = bytes_ + pos;
    if (le32(h) != kCentralHeaderSig) throw Error(which + " has a bad signature");
    Entry entry;
    entry.flags = le16(h + 8);
    entry.method = le16(h + 10);
    std::uint32_t compressed32 = le32(h + 20);
    std::uint32_t uncompressed32 = le32(h + 24);
    std::size_t name_len = le16(h + 28);
    std::size_t extra_len = le16(h + 30);
    std::size_t comment_len = le16(h + 32);
    std::uint32_t offset32 = le32(h + 42);
    if (dir_end - pos - kCentralHeaderSize < name_len + extra_len + comment_len) {
      throw Error(which + " runs past the central directory");
    }
    std::string name(reinterpret_cast<const char*>(h + kCentralHeaderSize), name_len);
    const std::string where = f + ": zip entry '" + name + "'";
    Zip64Fields z64{uncompressed32,
                    compressed32,
                    offset32,
                    uncompressed32 == 0xFFFFFFFF,
                    compressed32 == 0xFFFFFFFF,
                    offset32 == 0xFFFFFFFF};
    std::string problem = read_zip64_extra(h + kCentralHeaderSize + name_len, extra_len, &z64);
    if (!problem.empty()) throw Error(where + " " + problem);
    entry.compressed_size = z64.compressed;
    entry.uncompressed_size = z64.uncompressed;
    const std::uint64_t local = z64.offset;
    pos += kCentralHeaderSize + name_len + extra_len + comment_len;

    // Local header: must lie before the central directory and agree with the central entry.
    if (local > dir_offset || dir_offset - local < kLocalHeaderSize) {
      throw Error(where + " has its local header at byte " + std::to_string(local) +
                  ", outside the archive's data (which ends at byte " + std::to_string(dir_offset) +
                  ")");
    }
    const std::uint8_t* lh = bytes_ + local;
    if (le32(lh) != kLocalHeaderSig) throw Error(where + " has a bad local header signature");
    std::size_t local_name_len = le16(lh + 26);
    std::size_t local_extra_len = le16(lh + 28);
    if (dir_offset - local - kLocalHeaderSize < local_name_len + local_extra_len) {
      throw Error(where + " has a local header that runs past the archive's data");
    }
    if (local_name_len != name_len ||
        std::memcmp(lh + kLocalHeaderSize, h + kCentralHeaderSize, name_len) != 0) {
      throw Error(where + " has a different name in its local header");
    }
    if (le16(lh + 8) != entry.method) {
      throw Error(where + " has a different compression method in its local header");
    }
    // With the data-descriptor flag (bit 3, which PyTorch's miniz-based writer always sets)
    // the local sizes are placeholders (zero) and the real ones follow the data; the central
    // entry is authoritative. Without the flag the local sizes must agree with it.
    std::uint32_t local_compressed32 = le32(lh + 18);
    std::uint32_t local_uncompressed32 = le32(lh + 22);
    if ((le16(lh + 6) & 0x8) == 0) {
      Zip64Fields lz{local_uncompressed32,
                     local_compressed32,
                     0,
                     local_uncompressed32 == 0xFFFFFFFF,
                     local_compressed32 == 0xFFFFFFFF,
                     false};
      problem = read_zip64_extra(lh + kLocalHeaderSize + name_len, local_extra_len, &lz);
      if (!problem.empty()) throw Error(where + " local header " + problem);
      if (lz.compressed != entry.compressed_size || lz.uncompressed != entry.uncompressed_size) {
        throw Error(where + " has sizes " + std::to_string(lz.compressed) + "/" +
                    std::to_string(lz.uncompressed) + " in its local header but " +
                    std::to_string(entry.compressed_size) + "/" +
                    std::to_string(entry.uncompressed_size) + " in the central directory");
      }
    }
    entry.data_offset = local + kLocalHeaderSize + local_name_len + local_extra_len;
    if (entry.compressed_size > dir_offset - entry.data_offset) {
      throw Error(where + " claims " + std::to_string(entry.compressed_size) + " bytes at byte " +
                  std::to_string(entry.data_offset) + " but the archive's data ends at byte " +
                  std::to_string(dir_offset));
    }
    if (entry.method == 0 && entry.compressed_size != entry.uncompressed_size) {
      throw Error(where + " is stored but its compressed size " +
                  std::to_string(entry.compressed_size) + " differs from its size " +
                  std::to_string(entry.uncompressed_size));
    }
    if (!entries_.emplace(name, entry).second) throw Error(where + " appears twice");
    names_.push_back(std::move(name));
  }
}

ZipArchive ZipArchive::open(const std::string& path) {
  std::shared_ptr<const MappedFile> file = map_file(path);
  const std::uint8_t* data = file->data();
  std::size_t size = file->size();
  return ZipArchive(std::move(file), data, size, path);
}

ZipEntryData ZipArchive::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw Error(label_ + ": zip entry '" + name + "' is missing");
  const Entry& e = it->second;
  if (e.flags & 0x1) throw Error(label_ + ": zip entry '" + name + "' is encrypted");
  if (e.method != 0) {
    throw Error(label_ + ": zip entry '" + name + "' is compressed (method " +
                std::to_string(e.method) + "); only stored entries are supported");
  }
  return ZipEntryData{bytes_ + e.data_offset, static_cast<std::size_t>(e.compressed_size)};
}

}  // namespace gd::models
