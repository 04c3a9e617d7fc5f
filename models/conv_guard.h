// A guard against wrong convolution kernels.
//
// Debian 13's oneDNN (libdnnl 3.7.2) computes whole families of fp32 and bf16 convolutions
// wrongly on AVX-512 CPUs (docs/numerics.md), and other builds on other CPUs may have faults of
// their own. So when a model is loaded, each distinct convolution its weights can make (shape,
// stride, padding, layout, dtype, device) is run once on small random inputs, at sizes that take
// each of LibTorch's routes, and compared with LibTorch's own kernel (_slow_conv2d_forward, im2col
// and BLAS, never oneDNN). Layers whose configuration disagrees run on that kernel from then on;
// the others keep the fast default. Verdicts are cached for the process, and on disk for this
// software stack and CPU (models/load_cache.h), so a second load, or a second start, costs
// almost nothing; the forward pass pays one hash look-up per convolution only when a layer was
// rerouted.
//
//   ConvCheckReport report;
//   network->set_conv_routes(check_convolutions(*network->params(), true, &report));
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <unordered_set>

#include "models/param_store.h"

namespace gd::models {

// Which convolution weights run on LibTorch's own kernel instead of the default one.
class ConvRoutes {
 public:
  bool empty() const { return slow_.empty(); }
  std::size_t size() const { return slow_.size(); }
  bool slow(const at::Tensor& weight) const {
    return !slow_.empty() && slow_.count(weight.unsafeGetTensorImpl()) > 0;
  }
  void add(const at::Tensor& weight) { slow_.insert(weight.unsafeGetTensorImpl()); }

 private:
  std::unordered_set<const c10::TensorImpl*> slow_;  // the weights' TensorImpls
};

struct ConvCheckReport {
  bool ran = false;
  int layers = 0;          // convolution weights (4-D parameters)
  int configurations = 0;  // distinct configurations they make
  int checked = 0;         // of those, checked now
  int from_disk = 0;       // known from the disk cache (the rest: from an earlier load)
  int rerouted = 0;        // layers that run on LibTorch's own kernel
  // TorchScript modules own their convolutions, which cannot be rerouted one by one: when any
  // of their configurations disagrees, oneDNN is turned off for the whole process instead.
  bool onednn_disabled = false;
  double seconds = 0.0;
};

// Checks every 4-D weight of `params` as a convolution at the strides (1, 2) and paddings
// (kernel / 2, and 0 for circular padding done beforehand) networks call it with, on
// activations in the layout the network runs in (channels_last: the loader's choice).
ConvRoutes check_convolutions(const ParamStore& params, bool channels_last,
                              ConvCheckReport* report);

// Forgets this process's verdicts, so that the next check reads the disk cache again (tests).
void forget_known_convolutions();

// at::conv2d, or LibTorch's own kernel for a rerouted weight (groups 1, no dilation).
at::Tensor conv2d(const ConvRoutes& routes, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias, std::int64_t stride, std::int64_t padding);

// Whether `got` equals the reference `want` to the precision of `dtype` (relative to the
// reference's scale; NaN or Inf never agree).
bool outputs_agree(const at::Tensor& got, const at::Tensor& want, at::ScalarType dtype);

// True unless GD_NO_KERNEL_CHECK is set to a non-empty value other than 0 (for those who
// measured their stack; the CLI's --no-kernel-check sets the same).
bool kernel_check_wanted();

}  // namespace gd::models
