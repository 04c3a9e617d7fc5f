// A small on-disk cache of what loading a model measures about this machine's software stack:
// the kernel check's verdicts (models/conv_guard.h) and the network memory probe's fits
// (core/memory_estimate.h). Both take seconds and depend only on the stack and the architecture,
// so a second start reads them instead.
//
//   LoadCache cache = LoadCache::open("conv");   // this stack's "conv" records, if any
//   if (auto v = cache.find(key)) use(*v); else { cache.put(key, compute()); }
//   cache.save();                                // atomically, only when something changed
//
// The folder: $GIMP_DIFFUSION_CACHE_DIR, else $XDG_CACHE_HOME/gimp-diffusion, else
// $HOME/.cache/gimp-diffusion; GIMP_DIFFUSION_CACHE_DIR=off (or a folder that cannot be made or
// written) disables it, silently: loading then measures everything, as without a cache.
// One file per kind and stack key ("conv-<hex>.txt"); a missing, corrupt, truncated or foreign
// file is ignored and rewritten, never an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gd::models {

// 64-bit FNV-1a: simple and stable across builds and machines (std::hash is neither).
std::uint64_t fnv1a(std::string_view text, std::uint64_t hash = 0xcbf29ce484222325ULL);
std::string hex64(std::uint64_t value);  // 16 lower-case hex digits

// The cache folder, or "" when disabled (read from the environment on every call).
std::string load_cache_folder();

// "<size> <mtime>" of a file, "" when it cannot be read: part of a key that must change when the
// file is replaced.
std::string file_identity(const std::string& path);

// The file the code at `address` was loaded from (dladdr), with its file_identity: "" when
// unknown. A library or program rebuilt or swapped under the same name changes it.
std::string library_identity(const void* address);

// Everything a verdict or a fit depends on besides the model: LibTorch's version and build
// configuration (at::show_config(): oneDNN's version, the CPU capability), the CPU (model name
// and flags from /proc/cpuinfo) and `device` ("cpu", "cuda:0", with the GPU's name where known).
// Hashed, in hex; computed once a process per device. "" when the device cannot be identified
// (then nothing is cached for it).
std::string stack_key(const std::string& device);

class LoadCache {
 public:
  // The records of `kind` for `stack` (stack_key()); an empty, disabled cache when the folder is
  // off or `stack` is empty.
  static LoadCache open(const std::string& kind, const std::string& stack);

  bool enabled() const { return !path_.empty(); }
  std::optional<std::string> find(const std::string& key) const;
  // Keys and values are one line each, without tabs (anything else is not stored).
  void put(const std::string& key, const std::string& value);
  // Writes the records (newest kMaxRecords) to a temporary file in the folder and renames it over
  // the old one; failures are silent. Does nothing when nothing was put.
  void save();

  static constexpr std::size_t kMaxRecords = 2048;
  static constexpr std::size_t kMaxFileBytes = 1 << 20;

 private:
  std::string path_;    // the records' file, "" when disabled
  std::string header_;  // its first line: format, kind and stack key
  std::vector<std::pair<std::string, std::string>> records_;  // oldest first
  bool changed_ = false;
};

}  // namespace gd::models
