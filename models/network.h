// What the engine sees of a denoising network: one forward call.
//
// Samplers never see this class; pipelines wrap forward() into the sampler's callback.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>

#include "models/param_store.h"

namespace gd::models {

class Network {
 public:
  virtual ~Network() = default;

  // x: [N, C_in, H, W] float; t: [N] int64 timesteps (float for fractional ones);
  // self_cond: [N, C, H, W] previous x0 estimate, only for self-conditioned models.
  // Returns [N, C_out, H, W]: the prediction (and, with learned variance, the variance
  // channels after it).
  virtual at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                             const std::optional<at::Tensor>& self_cond) const = 0;

  // Wrap-around (circular) padding in every convolution instead of zeros: the network sees the
  // image as a torus, so what it makes tiles seamlessly. Returns false when the network cannot
  // (TorchScript modules own their padding).
  virtual bool set_seamless(bool on) { return !on; }

  // Class-conditional networks (diffusers' num_class_embeds): the number of classes, 0 for an
  // unconditional network.
  virtual std::int64_t num_classes() const { return 0; }
  // The class labels of the following forward calls: [N] or [1] int64, each in
  // [0, num_classes()) or, for networks that implement it (DiffusersUNet), core::kMeanClassLabel
  // (-1), the mean of all class embeddings (what guidance steers away from); an undefined tensor
  // clears them. Like set_seamless, this is state the
  // pipelines set around a run, so the samplers' callback keeps its (x, t) shape. Throws
  // gd::Error for labels out of range or for a network without classes.
  virtual void set_class_labels(const at::Tensor& labels);

  // Parameters by checkpoint name (empty for TorchScript networks, which own theirs).
  virtual ParamStore* params() { return nullptr; }
};

// Checks the labels against num_classes (shared by the implementations); kMeanClassLabel only
// where allow_mean says the network implements it.
void check_class_labels(const at::Tensor& labels, std::int64_t num_classes, bool allow_mean = false);

}  // namespace gd::models
