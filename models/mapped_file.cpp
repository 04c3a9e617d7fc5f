#include "models/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace gd::models {

MappedFile::MappedFile(std::string path, const std::uint8_t* data, std::size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() { munmap(const_cast<std::uint8_t*>(data_), size_); }

void MappedFile::release_pages() const {
  madvise(const_cast<std::uint8_t*>(data_), size_, MADV_DONTNEED);  // advice: failure is harmless
}

void MappedFile::prefetch() const {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older kernels refuse it (EINVAL)
#endif
  // Read faults only: the private mapping's pages stay the page cache's, nothing is copied.
  void* start = const_cast<std::uint8_t*>(data_);
  if (madvise(start, size_, MADV_POPULATE_READ) != 0) madvise(start, size_, MADV_WILLNEED);
}

namespace {

// Closes the descriptor on every path out of map_file(); the mapping stays valid without it.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

std::shared_ptr<const MappedFile> map_file(const std::string& path) {
  // O_NONBLOCK so that a FIFO given by mistake is refused below instead of blocking forever.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) throw Error(path + ": no such file");
    if (err == EACCES) throw Error(path + ": permission denied");
    throw Error(path + ": cannot open (" + std::strerror(err) + ")");
  }
  FdGuard guard{fd};

  struct stat st;
  if (fstat(fd, &st) != 0) throw Error(path + ": cannot stat (" + std::strerror(errno) + ")");
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, not a file");
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
  if (st.st_size == 0) throw Error(path + ": file is empty");

  std::size_t size = static_cast<std::size_t>(st.st_size);
  // Copy-on-write: parameters may share these pages (models/tensor_convert.h), and a write to
  // one then changes this process's copy, never the file, instead of faulting.
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (mem == MAP_FAILED) throw Error(path + ": cannot map (" + std::strerror(errno) + ")");
  return std::make_shared<const MappedFile>(path, static_cast<const std::uint8_t*>(mem), size);
}

}  // namespace gd::models
