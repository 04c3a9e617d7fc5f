#include "models/conv_guard.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "models/load_cache.h"

namespace gd::models {

namespace {

// Everything about a convolution call that decides which kernel LibTorch runs, except the input's
// batch and size (the probes cover those).
struct ConvConfig {
  std::int64_t out, in, kernel, stride, padding;
  bool channels_last;
  at::ScalarType dtype;
  std::string device;
  // The configuration in full, as the disk cache keys it.
  std::string describe() const {
    return "conv out=" + std::to_string(out) + " in=" + std::to_string(in) +
           " kernel=" + std::to_string(kernel) + " stride=" + std::to_string(stride) +
           " padding=" + std::to_string(padding) +
           (channels_last ? " channels-last " : " contiguous ") + c10::toString(dtype) + " " +
           device;
  }
  bool operator<(const ConvConfig& o) const {
    return std::tie(out, in, kernel, stride, padding, channels_last, dtype, device) <
           std::tie(o.out, o.in, o.kernel, o.stride, o.padding, o.channels_last, o.dtype, o.device);
  }
};

// LibTorch's own kernel: im2col and BLAS, for any layout; in float32 for other dtypes.
at::Tensor own_kernel(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                      std::int64_t stride, std::int64_t padding) {
  const bool fp32 = x.scalar_type() == at::kFloat;
  const at::Tensor x32 = fp32 ? x : x.to(at::kFloat), w32 = fp32 ? w : w.to(at::kFloat);
  const at::Tensor b32 = !b.defined() || fp32 ? b : b.to(at::kFloat);
  const std::int64_t k = w.size(2);
  at::Tensor out =
      at::_slow_conv2d_forward(x32, w32, {k, k}, b32, {stride, stride}, {padding, padding});
  return fp32 ? out : out.to(x.scalar_type());
}

// Inputs of a batch that takes oneDNN wherever LibTorch would send the layer there: two images
// (fp32 3x3, and every bf16 convolution), or sixteen (fp32 1x1 on one thread). LibTorch's own
// kernel, the other route, is the reference itself.
bool config_is_right(const ConvConfig& c) {
  const auto memory =
      c.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const auto options = at::TensorOptions().dtype(c.dtype).device(c.device);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(20261204);
  const at::Tensor w = (at::randn({c.out, c.in, c.kernel, c.kernel}, gen) /
                        std::sqrt(static_cast<double>(c.in * c.kernel * c.kernel)))
                           .to(options)
                           .contiguous(memory);  // [out, in, k, k]
  const at::Tensor b = (0.1 * at::randn({c.out}, gen)).to(options);
  const std::int64_t side = c.kernel + 3;
  const std::vector<std::int64_t> batches =
      c.kernel == 1 ? std::vector<std::int64_t>{2, 16} : std::vector<std::int64_t>{2};
  for (const std::int64_t n : batches) {
    const at::Tensor x = at::randn({n, c.in, side, side}, gen).to(options).contiguous(memory);
    const at::Tensor got = at::conv2d(x, w, b, {c.stride, c.stride}, {c.padding, c.padding});
    if (!outputs_agree(got, own_kernel(x, w, b, c.stride, c.padding), c.dtype)) return false;
  }
  return true;
}

// What every load in this process has learned.
std::mutex g_mutex;
std::map<ConvConfig, bool> g_known;

}  // namespace

bool outputs_agree(const at::Tensor& got, const at::Tensor& want, at::ScalarType dtype) {
  const at::Tensor g = got.to(at::kCPU, at::kDouble), r = want.to(at::kCPU, at::kDouble);
  if (g.sizes() != r.sizes() || !at::isfinite(g).all().item<bool>()) return false;
  const double scale = r.abs().max().item<double>() + 1e-6;
  const double tolerance = dtype == at::kFloat ? 1e-3 : 5e-2;  // float32, or 8-bit mantissas
  return (g - r).abs().max().item<double>() <= tolerance * scale;
}

namespace {

// The verdict on `c`: known in this process, else known from the disk cache, else checked now
// (and remembered in both). Counts where it came from in `r`. Call with g_mutex held.
bool verdict(const ConvConfig& c, std::optional<LoadCache>& disk, ConvCheckReport& r) {
  if (const auto known = g_known.find(c); known != g_known.end()) return known->second;
  if (!disk) disk = LoadCache::open("conv", stack_key(c.device));
  bool right;
  const std::optional<std::string> stored = disk->find(c.describe());
  if (stored && (*stored == "agree" || *stored == "disagree")) {
    right = *stored == "agree";
    ++r.from_disk;
  } else {
    right = config_is_right(c);
    disk->put(c.describe(), right ? "agree" : "disagree");
    ++r.checked;
  }
  g_known.emplace(c, right);
  return right;
}

}  // namespace

ConvRoutes check_convolutions(const ParamStore& params, bool channels_last,
                              ConvCheckReport* report) {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  ConvRoutes routes;
  ConvCheckReport r;
  r.ran = true;
  std::set<ConvConfig> seen;
  std::optional<LoadCache> disk;  // opened at the first configuration this process does not know
  std::lock_guard<std::mutex> lock(g_mutex);
  for (const auto& [name, w] : params.all()) {
    if (w.dim() != 4 || w.size(2) != w.size(3)) continue;  // convolution weights only
    ++r.layers;
    bool right = true;
    const std::int64_t k = w.size(2);
    for (const std::int64_t stride : {1, 2}) {
      for (const std::int64_t padding : {k / 2, std::int64_t{0}}) {
        const ConvConfig c{w.size(0),       w.size(1),       k, stride, padding, channels_last,
                           w.scalar_type(), w.device().str()};
        if (seen.insert(c).second) ++r.configurations;
        right = verdict(c, disk, r) && right;
      }
    }
    if (!right) {
      routes.add(w);
      ++r.rerouted;
    }
  }
  if (disk) disk->save();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (report) *report = r;
  return routes;
}

void forget_known_convolutions() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_known.clear();
}

at::Tensor conv2d(const ConvRoutes& routes, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias, std::int64_t stride, std::int64_t padding) {
  if (routes.slow(weight)) return own_kernel(x, weight, bias, stride, padding);
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

bool kernel_check_wanted() {
  const char* off = std::getenv("GD_NO_KERNEL_CHECK");
  return !(off && *off && std::string(off) != "0");
}

}  // namespace gd::models
