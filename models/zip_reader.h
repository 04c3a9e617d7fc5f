// A read-only view of a zip archive held in memory (normally a mapped file), as written by
// torch.save: stored (uncompressed) entries, ZIP64 records, data descriptors.
//
// The constructor validates the whole directory: every offset and size lies inside the
// archive, every local header matches its central directory entry, names are unique.
// Entries are then handed out as pointers into the bytes, without copying.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gd::models {

struct ZipEntryData {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

class ZipArchive {
 public:
  // `owner` keeps `bytes` alive; `label` (usually the path) names the archive in errors.
  ZipArchive(std::shared_ptr<const void> owner, const std::uint8_t* bytes, std::size_t size,
             std::string label);

  // Maps the file at `path` and parses it.
  static ZipArchive open(const std::string& path);

  // Entry names in central directory order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }

  // The bytes of a stored entry. Throws gd::Error for a missing, compressed or encrypted entry.
  ZipEntryData entry(const std::string& name) const;

  const std::shared_ptr<const void>& owner() const { return owner_; }
  const std::string& label() const { return label_; }

 private:
  struct Entry {
    std::uint16_t flags = 0;
    std::uint16_t method = 0;
    std::uint64_t data_offset = 0;  // first byte of the entry's data
    std::uint64_t compressed_size = 0;
    std::uint64_t uncompressed_size = 0;
  };

  std::shared_ptr<const void> owner_;
  const std::uint8_t* bytes_;
  std::size_t size_;
  std::string label_;
  std::vector<std::string> names_;
  std::map<std::string, Entry> entries_;
};

}  // namespace gd::models
