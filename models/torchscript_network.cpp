#include "models/torchscript_network.h"

#include <torch/csrc/jit/passes/tensorexpr_fuser.h>
#include <torch/script.h>

#include <mutex>

#include "core/error.h"

namespace gd::models {

namespace {

// LibTorch's messages carry a C++ backtrace after the first line; the boundary wants one line.
std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// The TensorExpr fuser groups a scripted module's ops into prim::TensorExprGroup kernels it
// compiles on the second call; on our CPUs that compilation was seen to spin forever (issue 16:
// the second no-grad call never returned in Python on the same LibTorch). Our modules are
// convolution-bound, so fusion buys little: it is switched off for the whole process, once,
// before the first module runs.
void make_torchscript_safe() {
  static std::once_flag once;
  std::call_once(once, [] { torch::jit::setTensorExprFuserEnabled(false); });
}

}  // namespace

struct TorchScriptNetwork::Impl {
  // forward() is logically const but torch::jit::Module::forward is not.
  mutable torch::jit::Module module;
};

TorchScriptNetwork::TorchScriptNetwork(const std::string& module_path, c10::Device device)
    : impl_(std::make_unique<Impl>()) {
  make_torchscript_safe();
  try {
    impl_->module = torch::jit::load(module_path, device);
  } catch (const std::exception& e) {
    throw Error(module_path + ": not a loadable TorchScript module: " + first_line(e.what()));
  }
  impl_->module.eval();
}

TorchScriptNetwork::~TorchScriptNetwork() = default;

at::Tensor TorchScriptNetwork::forward(const at::Tensor& x, const at::Tensor& t,
                                       const core::Conditioning& cond) const {
  check_conditioning(cond, /*num_classes=*/0, /*allow_mean=*/false, /*circular_ok=*/false,
                     "TorchScript model");
  if (cond.self_cond) throw Error("TorchScript networks do not take a self-conditioning input");
  at::Tensor out;
  try {
    const c10::IValue result = impl_->module.forward({x, t});
    if (!result.isTensor()) {
      throw Error("TorchScript forward(x, t) must return a Tensor, it returned " +
                  result.tagKind());
    }
    out = result.toTensor();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("TorchScript forward(x, t) failed: " + first_line(e.what()));
  }
  if (out.dim() != 4 || out.size(0) != x.size(0) || out.size(2) != x.size(2) ||
      out.size(3) != x.size(3)) {
    throw Error("TorchScript forward(x, t) returned shape " + c10::str(out.sizes()) +
                " for input " + c10::str(x.sizes()));
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> TorchScriptNetwork::four_d_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : impl_->module.named_parameters()) {
    if (p.value.dim() == 4) out.emplace_back(p.name, p.value);
  }
  return out;
}

std::int64_t TorchScriptNetwork::parameter_count() const {
  std::int64_t total = 0;
  for (const auto& p : impl_->module.parameters()) total += p.numel();
  return total;
}

}  // namespace gd::models
