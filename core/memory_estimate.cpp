#include "core/memory_estimate.h"

#include <dlfcn.h>

#include <ATen/ATen.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <optional>
#include <regex>
#include <vector>

#include "core/error.h"

namespace gd::core {

// LibTorch's allocators call this for every allocation (positive size) and free (negative) made
// while it is the thread's PROFILER_STATE debug info.
struct MemoryMeter::Reporter : c10::MemoryReportingInfoBase {
  std::atomic<std::int64_t> current{0};
  std::atomic<std::int64_t> peak{0};

  bool memoryProfilingEnabled() const override { return true; }
  void reportMemoryUsage(void* /*ptr*/, std::int64_t size, std::size_t /*total_allocated*/,
                         std::size_t /*total_reserved*/, c10::Device /*device*/) override {
    const std::int64_t now = current.fetch_add(size) + size;
    std::int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  void reportOutOfMemory(std::int64_t, std::size_t, std::size_t, c10::Device) override {}
};

struct MemoryMeter::Guard {
  explicit Guard(std::shared_ptr<c10::DebugInfoBase> info)
      : guard(c10::DebugInfoKind::PROFILER_STATE, std::move(info)) {}
  c10::DebugInfoGuard guard;
};

MemoryMeter::MemoryMeter()
    : reporter_(std::make_shared<Reporter>()), guard_(std::make_unique<Guard>(reporter_)) {}

MemoryMeter::~MemoryMeter() = default;

std::int64_t MemoryMeter::peak() const { return reporter_->peak.load(); }

std::int64_t MemoryMeter::current() const { return reporter_->current.load(); }

double NetworkMemory::bytes(std::int64_t images, std::int64_t pixels) const {
  const double p = static_cast<double>(pixels);
  return fixed + static_cast<double>(images) * (per_pixel * p + per_pixel_squared * p * p);
}

namespace {

// The peak of one call on a height x width image.
double call_peak(const NetworkFn& network, const at::TensorOptions& options, int channels,
                 std::int64_t height, std::int64_t width, std::int64_t num_classes) {
  const at::Tensor x = at::randn({1, channels, height, width}, options.dtype(at::kFloat))
                           .to(options.dtype());  // [1, C, H, W]
  const at::Tensor t = at::zeros({1}, options.dtype(at::kLong));
  Conditioning cond;
  if (num_classes > 0) cond.class_labels = at::zeros({1}, at::kLong);
  MemoryMeter meter;
  network(x, t, cond);
  return static_cast<double>(meter.peak());
}

}  // namespace

namespace {

NetworkMemory fit_three_sizes(const NetworkFn& network, const at::TensorOptions& options,
                              int channels, int factor, std::int64_t num_classes, bool attention) {
  const std::int64_t f = std::max(1, factor);
  const std::int64_t unit = f * std::max<std::int64_t>(1, (32 + f - 1) / f);  // >= 32 pixels
  call_peak(network, options, channels, unit, unit, num_classes);  // first-call caches stay out
  std::vector<double> p, m;  // pixels and peaks at sides unit, 2 unit, 3 unit
  for (std::int64_t k = 1; k <= 3; ++k) {
    p.push_back(static_cast<double>(unit * k * unit * k));
    m.push_back(call_peak(network, options, channels, unit * k, unit * k, num_classes));
  }
  NetworkMemory fit;
  if (attention) {  // m = a + b p + c p^2 through the three points (divided differences)
    const double d01 = (m[1] - m[0]) / (p[1] - p[0]), d12 = (m[2] - m[1]) / (p[2] - p[1]);
    fit.per_pixel_squared = std::max(0.0, (d12 - d01) / (p[2] - p[0]));
  }
  // The rest through the two largest sizes.
  const double q1 = m[1] - fit.per_pixel_squared * p[1] * p[1];
  const double q2 = m[2] - fit.per_pixel_squared * p[2] * p[2];
  fit.per_pixel = std::max(0.0, (q2 - q1) / (p[2] - p[1]));
  fit.fixed = std::max(0.0, q1 - fit.per_pixel * p[1]);
  return fit;
}

}  // namespace

NetworkMemory measure_network_memory(const NetworkFn& network, const at::TensorOptions& options,
                                     int channels, int factor, std::int64_t num_classes,
                                     bool attention, int native_height, int native_width) {
  try {
    return fit_three_sizes(network, options, channels, factor, num_classes, attention);
  } catch (const std::exception&) {
    NetworkMemory fit;
    if (native_height <= 0 || native_width <= 0) return fit;
    try {
      const double pixels = static_cast<double>(native_height) * native_width;
      fit.per_pixel =
          call_peak(network, options, channels, native_height, native_width, num_classes) / pixels;
    } catch (const std::exception&) {
    }
    return fit;
  }
}

namespace {

// A "Key:   123 kB" line of /proc/meminfo, in bytes.
std::optional<std::int64_t> meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string name;
  std::int64_t kb = 0;
  std::string unit;
  while (in >> name >> kb) {
    std::getline(in, unit);
    if (name == key + ":") return kb * 1024;
  }
  return std::nullopt;
}

// What the process's cgroup (v2) still allows: memory.max - memory.current; none when unlimited.
std::optional<std::int64_t> cgroup_room() {
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    const std::string dir = "/sys/fs/cgroup" + line.substr(3);
    std::ifstream max_file(dir + "/memory.max"), current_file(dir + "/memory.current");
    std::string max_text;
    std::int64_t current = 0;
    if (!(max_file >> max_text) || max_text == "max" || !(current_file >> current)) return {};
    try {
      return std::max<std::int64_t>(0, std::stoll(max_text) - current);
    } catch (const std::exception&) {
      return {};
    }
  }
  return {};
}

}  // namespace

MemoryBudget machine_budget() {
  std::int64_t available = meminfo("MemAvailable").value_or(0);
  if (const auto room = cgroup_room()) available = std::min(available, *room);
  MemoryBudget budget;
  budget.bytes = static_cast<std::int64_t>(kDefaultBudgetShare * static_cast<double>(available));
  budget.source = std::to_string(static_cast<int>(std::lround(kDefaultBudgetShare * 100))) +
                  "% of the " + format_bytes(static_cast<double>(available)) + " available";
  return budget;
}

namespace {

// Free and total memory of the current CUDA device, through the CUDA runtime LibTorch's CUDA
// library has loaded; nullopt in a CPU-only process. Looked up at run time so that this file
// needs no CUDA headers and builds against the CPU LibTorch too.
std::optional<std::int64_t> cuda_free_bytes() {
  using MemGetInfo = int (*)(std::size_t*, std::size_t*);
  const auto get = reinterpret_cast<MemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  if (get == nullptr) return std::nullopt;
  std::size_t free = 0, total = 0;
  if (get(&free, &total) != 0) return std::nullopt;  // cudaSuccess is 0
  return static_cast<std::int64_t>(free);
}

}  // namespace

MemoryBudget device_budget(const c10::Device& device) {
  if (!device.is_cuda()) return machine_budget();
  const std::optional<std::int64_t> free = cuda_free_bytes();
  if (!free) {
    MemoryBudget host = machine_budget();
    host.source += " on the host (the CUDA device's free memory could not be read)";
    return host;
  }
  MemoryBudget budget;
  budget.bytes = static_cast<std::int64_t>(kDefaultBudgetShare * static_cast<double>(*free));
  budget.source = std::to_string(static_cast<int>(std::lround(kDefaultBudgetShare * 100))) +
                  "% of the " + format_bytes(static_cast<double>(*free)) + " free on " +
                  device.str();
  return budget;
}

std::int64_t parse_memory_size(const std::string& text) {
  static const std::regex pattern(R"(\s*([0-9]+(\.[0-9]*)?)\s*([kKmMgGtT]?)(i?[bB])?\s*)");
  std::smatch m;
  if (!std::regex_match(text, m, pattern)) {
    throw Error("'" + text + "' is not a memory size (write it like 4G, 512M or 1.5G)");
  }
  const char unit = m[3].str().empty() ? 'B' : static_cast<char>(std::toupper(m[3].str()[0]));
  const int shift = unit == 'K' ? 10 : unit == 'M' ? 20 : unit == 'G' ? 30 : unit == 'T' ? 40 : 0;
  const double bytes = std::stod(m[1].str()) * std::ldexp(1.0, shift);
  if (!(bytes >= 1.0 && bytes < 9.0e18)) {
    throw Error("'" + text + "' is not a usable memory size");
  }
  return static_cast<std::int64_t>(bytes);
}

std::string format_bytes(double bytes) {
  char text[64];
  if (bytes >= std::ldexp(1.0, 30)) {
    std::snprintf(text, sizeof text, "%.1f GiB", bytes / std::ldexp(1.0, 30));
  } else {
    std::snprintf(text, sizeof text, "%.0f MiB", bytes / std::ldexp(1.0, 20));
  }
  return text;
}

}  // namespace gd::core
