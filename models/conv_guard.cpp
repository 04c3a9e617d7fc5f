#include "models/conv_guard.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

namespace gd::models {

namespace {

// Everything about a convolution call that decides which kernel LibTorch runs, except the input's
// batch and size (the probes cover those).
struct ConvConfig {
  std::int64_t out, in, kernel, stride, padding;
  bool channels_last;
  at::ScalarType dtype;
  std::string device;
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

ConvRoutes check_convolutions(const ParamStore& params, bool channels_last,
                              ConvCheckReport* report) {
  const auto start = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  ConvRoutes routes;
  ConvCheckReport r;
  r.ran = true;
  std::set<ConvConfig> seen;
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
        auto known = g_known.find(c);
        if (known == g_known.end()) {
          known = g_known.emplace(c, config_is_right(c)).first;
          ++r.checked;
        }
        right = right && known->second;
      }
    }
    if (!right) {
      routes.add(w);
      ++r.rerouted;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (report) *report = r;
  return routes;
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
