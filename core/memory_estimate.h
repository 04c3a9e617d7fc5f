// Peak memory of a run, estimated before it starts, and the memory a run may use.
//
// The estimates are measured, not guessed: LibTorch's allocators report every allocation and
// free to a thread's memory-profiling hook (c10::MemoryReportingInfoBase), so MemoryMeter sees
// the exact bytes of tensors a piece of code holds at once. A network's peak is measured at a
// few small sizes at load and fitted (linear in the pixels for convolutions, quadratic for
// attention); the sampler's own canvas tensors are measured by running the real pipeline with a
// stand-in network on small canvases. Memory that bypasses LibTorch's allocator (oneDNN's
// scratchpads, OpenBLAS buffers, the weights, the program) is not in them: kMemoryMargin covers
// the first two, the budget is what the run may add to what the process already holds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/conditioning.h"

namespace gd::core {

// Counts the bytes LibTorch allocates and frees on this thread while it lives (on every device);
// peak() is the most held at once above what was held when it started. Not nestable.
class MemoryMeter {
 public:
  MemoryMeter();
  ~MemoryMeter();
  MemoryMeter(const MemoryMeter&) = delete;
  MemoryMeter& operator=(const MemoryMeter&) = delete;
  std::int64_t peak() const;
  std::int64_t current() const;  // held now, above what was held when it started

 private:
  struct Reporter;
  std::shared_ptr<Reporter> reporter_;
  struct Guard;
  std::unique_ptr<Guard> guard_;
};

// Peak bytes of one network call on `images` images of `pixels` pixels each:
// fixed + images * (per_pixel * pixels + per_pixel_squared * pixels^2).
struct NetworkMemory {
  double fixed = 0.0;
  double per_pixel = 0.0;
  double per_pixel_squared = 0.0;  // attention's score matrices

  double bytes(std::int64_t images, std::int64_t pixels) const;
};

// Measures `network`'s peak at three small square sizes (multiples of factor) on one image of
// `channels` channels in `options` (device, dtype), with class 0 for class-conditional networks
// (num_classes > 0) and timestep 0, and fits NetworkMemory (the squared term only when
// `attention`). A network that refuses those sizes (a TorchScript module made for one size) is
// measured once at its native size (when known, else not at all: zeros), proportionally.
NetworkMemory measure_network_memory(const NetworkFn& network, const at::TensorOptions& options,
                                     int channels, int factor, std::int64_t num_classes,
                                     bool attention, int native_height = 0, int native_width = 0);

// Estimates are multiplied by these: allocator slack for the sampler's tensors, and for a
// network call also the memory LibTorch does not see (oneDNN's reordered activations and
// scratchpads, OpenBLAS buffers). Calibrated against measured peak RSS (docs/benchmarks.md).
inline constexpr double kMemoryMargin = 1.25;
inline constexpr double kNetworkMemoryMargin = 1.6;

// The memory a run may use.
struct MemoryBudget {
  std::int64_t bytes = 0;
  std::string source;  // "given", "80% of the 18.3 GiB available"
};

// The default budget on the CPU: kDefaultBudgetShare of the memory available to this process now
// (the kernel's MemAvailable, or less under a cgroup limit).
MemoryBudget machine_budget();
inline constexpr double kDefaultBudgetShare = 0.8;

// The default budget of a run on `device`: machine_budget() on the CPU; on CUDA
// kDefaultBudgetShare of the device's free memory (cudaMemGetInfo, found in the CUDA runtime
// that LibTorch's CUDA library loaded), or the host's budget, said so, where that is not found.
MemoryBudget device_budget(const c10::Device& device);

// "4G", "512M", "1.5G", "2048K", "3000000000" (bytes) -> bytes, binary units (G = 2^30, as
// systemd's MemoryMax and docker's --memory); throws gd::Error naming the value.
std::int64_t parse_memory_size(const std::string& text);

// "3.2 GiB", "850 MiB": binary units, as parse_memory_size reads them.
std::string format_bytes(double bytes);

}  // namespace gd::core
