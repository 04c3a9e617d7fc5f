#include "core/guidance.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdio>
#include <optional>

#include "core/error.h"

namespace gd::core {

namespace {

std::string scale_text(double scale) {  // "2", "2.5": as short as the value
  char text[64];
  std::snprintf(text, sizeof text, "%g", scale);
  return text;
}

}  // namespace

void check_guidance(const Guidance& guidance, int num_classes, int num_train_timesteps) {
  if (!(guidance.scale >= 1.0 && guidance.scale <= kMaxGuidanceScale)) {
    throw Error("guidance " + scale_text(guidance.scale) + " is out of range: it must be from 1 (off) to " +
                std::to_string(static_cast<int>(kMaxGuidanceScale)));
  }
  if (guidance.limited() && (guidance.below_timestep < 1 || guidance.below_timestep > num_train_timesteps)) {
    throw Error("the guidance limit " + std::to_string(guidance.below_timestep) +
                " is out of range: it must be a timestep from 1 to " + std::to_string(num_train_timesteps));
  }
  if (guidance.active() && num_classes <= 0) {
    throw Error("guidance needs a class-conditional model: this one takes no class");
  }
}

std::string describe_guidance(const Guidance& guidance) {
  if (!guidance.active()) return "";
  std::string s = "guidance " + scale_text(guidance.scale);
  if (guidance.limited()) s += " below timestep " + std::to_string(guidance.below_timestep);
  return s;
}

ModelFn guided_network(const ModelFn& network, const std::function<void(const at::Tensor&)>& set_class_labels,
                       const at::Tensor& labels, const Guidance& guidance, std::int64_t prediction_channels) {
  if (!guidance.active()) return network;
  if (!set_class_labels) throw Error("guidance needs a model whose classes can be set");
  return [network, set_class_labels, labels, guidance, prediction_channels](
             const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>& self_cond) {
    at::Tensor c = network(x, t, self_cond);  // [N, C_out, H, W] for the images' classes
    if (t.reshape({-1})[0].item<double>() >= guidance.below_timestep) return c;
    set_class_labels(at::full({x.size(0)}, kMeanClassLabel, at::kLong));
    at::Tensor u;
    try {
      u = network(x, t, self_cond);  // [N, C_out, H, W] for the mean class
    } catch (...) {
      set_class_labels(labels);
      throw;
    }
    set_class_labels(labels);
    const std::int64_t p = std::min(prediction_channels, c.size(1));
    at::Tensor guided = u.narrow(1, 0, p) + guidance.scale * (c.narrow(1, 0, p) - u.narrow(1, 0, p));
    if (p == c.size(1)) return guided;
    return at::cat({guided, c.narrow(1, p, c.size(1) - p)}, 1);  // learned variance: the class's own
  };
}

}  // namespace gd::core
