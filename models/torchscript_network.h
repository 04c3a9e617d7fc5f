// A TorchScript module as a Network: the way to run any architecture we do not port.
//
// The module must have forward(x: Tensor[N, C, H, W] float32, t: Tensor[N] int64) -> Tensor
// returning the prediction with the same shape as x. README shows the export in Python.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/network.h"

namespace gd::models {

class TorchScriptNetwork : public Network {
 public:
  // Loads the module onto `device` (weights stay in the module's own dtype).
  TorchScriptNetwork(const std::string& module_path, c10::Device device);
  ~TorchScriptNetwork() override;

  // No classes, no self-conditioning and the module's own padding: cond must ask for none.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                     const core::Conditioning& cond) const override;

  std::int64_t parameter_count() const;

  // The module's 4-D parameters (its convolution weights, as far as shapes tell), by name, for
  // the convolution check (models/conv_guard.h).
  std::vector<std::pair<std::string, at::Tensor>> four_d_parameters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gd::models
