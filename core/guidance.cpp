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

void check_guidance_values(const Guidance& guidance, int num_train_timesteps) {
  if (!(guidance.scale >= 1.0 && guidance.scale <= kMaxGuidanceScale)) {
    throw Error("guidance " + scale_text(guidance.scale) +
                " is out of range (guidance must be from 1 (off) to " +
                std::to_string(static_cast<int>(kMaxGuidanceScale)) + ")");
  }
  if (guidance.limited() &&
      (guidance.below_timestep < 1 || guidance.below_timestep > num_train_timesteps)) {
    throw Error("the guidance limit " + std::to_string(guidance.below_timestep) +
                " is out of range: it must be a timestep from 1 to " +
                std::to_string(num_train_timesteps));
  }
}

void check_guidance(const Guidance& guidance, int num_classes, int num_train_timesteps) {
  check_guidance_values(guidance, num_train_timesteps);
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

namespace {

// u + scale (c - u) on the prediction channels; learned variance channels stay the class's.
at::Tensor combine(const at::Tensor& c, const at::Tensor& u, double scale,
                   std::int64_t prediction_channels) {
  const std::int64_t p = std::min(prediction_channels, c.size(1));
  at::Tensor guided =
      u.narrow(1, 0, p) + scale * (c.narrow(1, 0, p) - u.narrow(1, 0, p));  // [N, p, H, W]
  if (p == c.size(1)) return guided;
  return at::cat({guided, c.narrow(1, p, c.size(1) - p)}, 1);  // [N, C_out, H, W]
}

// [N] labels for a batch of n: a [1] label is repeated.
at::Tensor labels_for(const at::Tensor& labels, std::int64_t n) {
  const at::Tensor flat = labels.reshape({-1});
  return flat.size(0) == 1 ? flat.expand({n}) : flat;
}

}  // namespace

ModelFn conditioned_network(const NetworkFn& network, const Conditioning& cond,
                            const Guidance& guidance, std::int64_t prediction_channels,
                            std::int64_t max_batched_pixels) {
  auto with_self_cond = [](Conditioning c, const std::optional<at::Tensor>& self_cond) {
    c.self_cond = self_cond;
    return c;
  };
  if (!guidance.active()) {
    return [network, cond, with_self_cond](const at::Tensor& x, const at::Tensor& t,
                                           const std::optional<at::Tensor>& self_cond) {
      return network(x, t, with_self_cond(cond, self_cond));
    };
  }
  if (!cond.class_labels.defined()) throw Error("guidance needs the images' classes");
  return [network, cond, guidance, prediction_channels, max_batched_pixels, with_self_cond](
             const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>& self_cond) {
    const Conditioning own = with_self_cond(cond, self_cond);
    if (t.reshape({-1})[0].item<double>() >= guidance.below_timestep) return network(x, t, own);
    const std::int64_t n = x.size(0);
    Conditioning mean = own;
    mean.class_labels = at::full({n}, kMeanClassLabel, at::kLong);
    if (n * x.size(2) * x.size(3) > max_batched_pixels) {  // two calls of N
      const at::Tensor c = network(x, t, own);   // [N, C_out, H, W] for the images' classes
      const at::Tensor u = network(x, t, mean);  // [N, C_out, H, W] for the mean class
      return combine(c, u, guidance.scale, prediction_channels);
    }
    // One call of 2N: the images under their classes, then under the mean class.
    Conditioning both = own;
    both.class_labels = at::cat({labels_for(own.class_labels, n), mean.class_labels});  // [2N]
    if (self_cond) both.self_cond = at::cat({*self_cond, *self_cond});  // [2N, C, H, W]
    const at::Tensor t2 =
        t.reshape({-1}).size(0) == 1 ? t : at::cat({t.reshape({-1}), t.reshape({-1})});
    const at::Tensor out = network(at::cat({x, x}), t2, both);  // [2N, C_out, H, W]
    return combine(out.narrow(0, 0, n), out.narrow(0, n, n), guidance.scale, prediction_channels);
  };
}

}  // namespace gd::core
