// What the engine sees of a denoising network: one forward call.
//
// Samplers never see this class; pipelines wrap forward() into the sampler's callback.
//
// A network is immutable once its weights are loaded: everything a call depends on (the input,
// the timesteps, the classes, the padding, the self-conditioning input) is an argument of
// forward(), and forward() is const. So one loaded network may serve any number of threads at
// once, and calls with different classes or padding may share a batch. params() is for loading
// and training only.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "core/conditioning.h"
#include "models/conv_guard.h"
#include "models/param_store.h"

namespace gd::models {

class Network {
 public:
  virtual ~Network() = default;

  // x: [N, C_in, H, W] float; t: [N] int64 timesteps (float for fractional ones);
  // cond: this call's class labels, padding and self-conditioning input (core/conditioning.h).
  // Returns [N, C_out, H, W]: the prediction (and, with learned variance, the variance
  // channels after it). Throws gd::Error for labels out of range or a network without classes
  // given some, and for circular padding on a network that cannot (supports_circular_padding).
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                             const core::Conditioning& cond) const = 0;

  // Whether forward() honours the circular paddings (TorchScript modules own their padding).
  virtual bool supports_circular_padding() const { return false; }

  // Class-conditional networks (diffusers' num_class_embeds): the number of classes, 0 for an
  // unconditional network.
  virtual std::int64_t num_classes() const { return 0; }

  // Parameters by checkpoint name (empty for TorchScript networks, which own theirs).
  virtual ParamStore* params() { return nullptr; }

  // The convolutions that run on LibTorch's own kernel (models/conv_guard.h); set once by the
  // loader, before the network is shared.
  void set_conv_routes(ConvRoutes routes) { conv_routes_ = std::move(routes); }

 protected:
  ConvRoutes conv_routes_;
};

// Checks the labels against num_classes (shared by the implementations); kMeanClassLabel only
// where allow_mean says the network implements it. An undefined tensor is fine (no classes).
void check_class_labels(const at::Tensor& labels, std::int64_t num_classes,
                        bool allow_mean = false);

// The checks every forward() starts with: labels (as check_class_labels; a class-conditional
// network needs them) and circular padding where the network cannot do it. `what` names the
// network in messages.
void check_conditioning(const core::Conditioning& cond, std::int64_t num_classes, bool allow_mean,
                        bool circular_ok, const char* what);

}  // namespace gd::models
