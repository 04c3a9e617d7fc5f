#include "models/param_store.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <sys/mman.h>

#include <set>

#include "core/error.h"
#include "models/tensor_convert.h"

namespace gd::models {

namespace {

// Zeros that cost nothing until written: large CPU parameters live in their own anonymous
// mapping, whose pages the kernel supplies zero-filled on first touch. A loaded network replaces
// most parameters with the checkpoint's bytes (fill below) before touching them, so their zeros
// never take time or memory; at::zeros would write every byte first (for a 143 MB model,
// seconds on a busy machine, and 143 MB of resident memory).
at::Tensor zero_tensor(const std::vector<std::int64_t>& shape, const c10::TensorOptions& options,
                       bool channels_last) {
  std::size_t bytes = options.dtype().itemsize();
  for (std::int64_t d : shape) bytes *= static_cast<std::size_t>(d);
  const at::TensorOptions zeros_options = options.memory_format(
      channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  constexpr std::size_t kOwnMappingFrom = 64 * 1024;
  if (!options.device().is_cpu() || bytes < kOwnMappingFrom) return at::zeros(shape, zeros_options);
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) return at::zeros(shape, zeros_options);  // LibTorch reports the failure
  auto unmap = [bytes](void* p) { munmap(p, bytes); };
  if (!channels_last) return at::from_blob(data, shape, unmap, options);
  return at::from_blob(data, shape, c10::get_channels_last_strides_2d(shape), unmap, options);
}

}  // namespace

ParamStore::ParamStore(c10::TensorOptions options)
    : options_(options.memory_format(std::nullopt)),
      channels_last_(options.memory_format_opt() == at::MemoryFormat::ChannelsLast) {}

at::Tensor ParamStore::add(const std::string& name, const std::vector<std::int64_t>& shape) {
  for (const auto& [existing, tensor] : params_) {
    if (existing == name) throw Error("internal: parameter '" + name + "' registered twice");
  }
  at::Tensor tensor = zero_tensor(shape, options_, channels_last_ && shape.size() == 4);
  params_.emplace_back(name, tensor);
  return tensor;
}

namespace {

// One converting copy straight from the mapping (no intermediate clone). The parameter does not
// keep the checkpoint's pages, though it could where dtype and layout match: a file truncated in
// place (`cp` over it) while the model lives would then kill the process with SIGBUS on the next
// read of those pages, and a loaded model must never crash on what happens to its file. The
// bytes copy at memory speed; the time goes to page faults on the fresh parameter pages (about
// 10 us per 4 KiB page on our test VM: 0.3 s for 143 MB on one thread). Every handle from add()
// sees the weights, since copy_ acts on the tensor the handles share.
void fill(at::Tensor& param, const RawTensor& raw) {
  c10::NoGradGuard no_grad;
  param.copy_(borrow_tensor(raw));
}

// Every parameter from its checked source, after all were validated (a bad file fills nothing).
// Parameters are spread over the intra-op threads: much of a copy's time is page faults, on the
// fresh parameter pages and on the mapping, which the threads take in parallel. Inside the
// parallel region each copy_ runs on its own thread.
void fill_all(std::vector<std::pair<std::string, at::Tensor>>& params,
              const std::vector<const RawTensor*>& sources) {
  const auto fill_range = [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) fill(params[i].second, *sources[i]);
  };
  const auto count = static_cast<std::int64_t>(params.size());
  if (count > 0 && params.front().second.device().is_cpu()) {
    at::parallel_for(0, count, 1, fill_range);
  } else {
    fill_range(0, count);
  }
}

}  // namespace

void ParamStore::load(const TensorMap& tensors, const std::string& prefix,
                      const std::string& source, const std::vector<std::string>& ignored_suffixes) {
  std::set<std::string> expected;
  std::vector<const RawTensor*> sources;  // params_[i]'s tensor in the checkpoint
  for (auto& [name, param] : params_) {
    const std::string key = prefix + name;
    expected.insert(key);
    auto it = tensors.find(key);
    if (it == tensors.end()) {
      throw Error(source + ": missing tensor '" + key + "' (expected shape " +
                  shape_string(param.sizes().vec()) + ")");
    }
    const RawTensor& raw = it->second;
    if (raw.shape != param.sizes().vec()) {
      throw Error(source + ": tensor '" + key + "' has shape " + shape_string(raw.shape) +
                  " but the configuration needs " + shape_string(param.sizes().vec()));
    }
    switch (raw.dtype) {
      case DType::F64:
      case DType::F32:
      case DType::F16:
      case DType::BF16: break;
      default:
        throw Error(source + ": tensor '" + key + "' has dtype " + dtype_name(raw.dtype) +
                    " but a floating-point weight is needed");
    }
    sources.push_back(&raw);
  }
  for (const auto& [key, raw] : tensors) {
    if (key.compare(0, prefix.size(), prefix) != 0 || expected.count(key)) continue;
    bool ignored = false;
    for (const auto& suffix : ignored_suffixes) {
      if (key.size() >= suffix.size() &&
          key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
        ignored = true;
      }
    }
    if (!ignored) {
      throw Error(source + ": unexpected tensor '" + key + "' " + shape_string(raw.shape) +
                  " (not part of the configured architecture)");
    }
  }
  fill_all(params_, sources);
}

void ParamStore::to_channels_last() {
  c10::NoGradGuard no_grad;  // a layout change, not an operation to differentiate
  for (auto& [name, tensor] : params_) {
    if (tensor.dim() == 4) tensor.set_(tensor.contiguous(at::MemoryFormat::ChannelsLast));
  }
}

std::int64_t ParamStore::count() const {
  std::int64_t total = 0;
  for (const auto& [name, tensor] : params_) total += tensor.numel();
  return total;
}

}  // namespace gd::models
