// A whole file mapped into memory, private and copy-on-write (the file is never written).
//
// Checkpoints are read through a mapping rather than copied, so a 4 GB model costs no extra
// RAM until its tensors are converted, and tensors can point straight into the file
// (RawTensor::owner keeps the mapping alive) while it is read. A loaded model's parameters are
// copies (models/param_store.cpp says why): once loading ends nothing refers to the mapping, so
// a file truncated in place later cannot fault a running model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace gd::models {

class MappedFile {
 public:
  // Use map_file(); the constructor takes an already mapped region and unmaps it on destruction.
  MappedFile(std::string path, const std::uint8_t* data, std::size_t size);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops this process's resident copies of the pages (madvise MADV_DONTNEED); later reads fault
  // them back in from the file. For after loading, once the parameters that were copied out of
  // the mapping no longer need it: the pages they were read from stop counting as the process's
  // memory. A page written to in this process would lose the write, so only call it while
  // nothing has written to the mapping (loading never does).
  void release_pages() const;

  // Maps every page of the file into this process now, read-only (madvise MADV_POPULATE_READ,
  // else MADV_WILLNEED's read-ahead): one call instead of a page fault per 4 KiB while the
  // weights are copied out. For loading, which reads the whole file; advice only, never fails.
  void prefetch() const;

 private:
  std::string path_;
  const std::uint8_t* data_;
  std::size_t size_;
};

// Maps `path` read-only. Throws gd::Error with one line for a missing file ("<path>: no such
// file"), a directory, an unreadable file or an empty file.
std::shared_ptr<const MappedFile> map_file(const std::string& path);

}  // namespace gd::models
