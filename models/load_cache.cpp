#include "models/load_cache.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/Context.h>
#include <ATen/Version.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

namespace gd::models {

namespace fs = std::filesystem;

std::uint64_t fnv1a(std::string_view text, std::uint64_t hash) {
  for (const unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::string hex64(std::uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string file_identity(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

// Our build root swaps in another oneDNN under the same version: the file's identity keys it.
std::string library_identity(const void* address) {
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return "";
  return std::string(info.dli_fname) + " " + file_identity(info.dli_fname);
}

std::string load_cache_folder() {
  const char* given = std::getenv("GIMP_DIFFUSION_CACHE_DIR");
  if (given && *given) return std::string(given) == "off" ? "" : given;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/gimp-diffusion";  // the spec: absolute only
  const char* home = std::getenv("HOME");
  if (home && *home) return std::string(home) + "/.cache/gimp-diffusion";
  return "";
}

namespace {

// The first processor's identifying lines of /proc/cpuinfo (x86's model name and flags, ARM's
// implementer, part and features).
std::string cpu_description() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, text;
  while (std::getline(in, line) && !line.empty()) {
    for (const char* key :
         {"vendor_id", "model name", "flags", "CPU implementer", "CPU part", "Features"}) {
      if (line.rfind(key, 0) == 0) text += line + "\n";
    }
  }
  return text;
}

// The GPU's name (CUDA's driver API, present once LibTorch's CUDA library initialised it), or ""
// when unknown.
std::string cuda_device_name(int index) {
  using GetName = int (*)(char*, int, int);
  const auto get = reinterpret_cast<GetName>(dlsym(RTLD_DEFAULT, "cuDeviceGetName"));
  char name[256] = {};
  if (get == nullptr || get(name, sizeof name - 1, index) != 0) return "";
  return name;
}

std::string compute_stack_key(const std::string& device) {
  std::string text = at::show_config();
  text += "\nlibtorch_cpu: " + library_identity(reinterpret_cast<const void*>(&at::show_config));
  text += "\noneDNN: " + library_identity(dlsym(RTLD_DEFAULT, "dnnl_version"));
  text += "\n" + cpu_description() + "device: " + device;
  if (device.rfind("cuda", 0) == 0) {
    const std::size_t colon = device.find(':');
    const int index = colon == std::string::npos ? 0 : std::atoi(device.c_str() + colon + 1);
    const std::string name = cuda_device_name(index);
    if (name.empty()) return "";  // an unknown GPU: nothing to key its verdicts by
    text += " " + name;
  } else if (device != "cpu") {
    return "";
  }
  return hex64(fnv1a(text));
}

bool one_line(const std::string& text) {
  return !text.empty() && text.find_first_of("\t\n\r") == std::string::npos;
}

}  // namespace

std::string stack_key(const std::string& device) {
  static std::mutex mutex;
  static std::map<std::string, std::string> keys;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = keys.find(device);
  if (it == keys.end()) it = keys.emplace(device, compute_stack_key(device)).first;
  return it->second;
}

namespace {

// The records of a file that is whole: the expected header, "key\tvalue" lines, and "end N" with
// N the number of records. Anything else (another stack's file, a truncated write, garbage)
// gives none.
std::vector<std::pair<std::string, std::string>> read_records(const std::string& path,
                                                              const std::string& header) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec || size > LoadCache::kMaxFileBytes) return {};
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line) || line != header) return {};
  std::vector<std::pair<std::string, std::string>> records;
  while (std::getline(in, line)) {
    if (line.rfind("end ", 0) == 0) {
      const bool whole = line == "end " + std::to_string(records.size()) && in.peek() == EOF;
      return whole ? records : decltype(records){};
    }
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos || tab == 0 || tab + 1 == line.size()) return {};
    records.emplace_back(line.substr(0, tab), line.substr(tab + 1));
    if (records.size() > LoadCache::kMaxRecords) return {};
  }
  return {};  // no end line: truncated
}

}  // namespace

LoadCache LoadCache::open(const std::string& kind, const std::string& stack) {
  LoadCache cache;
  const std::string folder = load_cache_folder();
  if (folder.empty() || stack.empty()) return cache;
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec || !fs::is_directory(folder, ec)) return cache;
  cache.path_ = folder + "/" + kind + "-" + stack + ".txt";
  cache.header_ = "gimp-diffusion load cache 1 " + kind + " " + stack;
  cache.records_ = read_records(cache.path_, cache.header_);
  return cache;
}

std::optional<std::string> LoadCache::find(const std::string& key) const {
  for (const auto& [k, v] : records_) {
    if (k == key) return v;
  }
  return std::nullopt;
}

void LoadCache::put(const std::string& key, const std::string& value) {
  if (!enabled() || !one_line(key) || !one_line(value)) return;
  for (auto it = records_.begin(); it != records_.end(); ++it) {
    if (it->first == key) {
      records_.erase(it);
      break;
    }
  }
  records_.emplace_back(key, value);  // newest last
  if (records_.size() > kMaxRecords) records_.erase(records_.begin());
  changed_ = true;
}

void LoadCache::save() {
  if (!enabled() || !changed_) return;
  changed_ = false;
  static std::atomic<int> counter{0};
  const std::string temp =
      path_ + ".tmp." + std::to_string(getpid()) + "." + std::to_string(counter++);
  std::ostringstream text;
  text << header_ << "\n";
  for (const auto& [k, v] : records_) text << k << "\t" << v << "\n";
  text << "end " << records_.size() << "\n";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << text.str();
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(temp, ec);
      return;
    }
  }
  // rename() is atomic within a folder: a reader sees the old file or the new one, never half.
  if (std::rename(temp.c_str(), path_.c_str()) != 0) {
    std::error_code ec;
    fs::remove(temp, ec);
  }
}

}  // namespace gd::models
