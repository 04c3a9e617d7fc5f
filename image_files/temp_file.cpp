// TempFile (image_io_internal.h): how the image writers avoid partial files.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>

#include "core/error.h"
#include "image_files/image_io_internal.h"

namespace gd::image_files::internal {

TempFile::TempFile(const std::string& path) : path_(path) {
  static std::atomic<unsigned> counter{0};
  std::string folder = folder_of(path);
  std::size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty()) throw Error(path + ": not a file name (ends with '/')");
  // Hidden and unique per process and call; O_EXCL never reuses someone else's file.
  // Mode 0666 lets the umask decide, as for any file the user creates.
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string candidate =
        (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + "." + name +
        ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
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

TempFile::~TempFile() {
  if (file_ != nullptr) std::fclose(file_);
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

void TempFile::commit() {
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

}  // namespace gd::image_files::internal
