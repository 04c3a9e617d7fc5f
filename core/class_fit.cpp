#include "core/class_fit.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

#include "core/class_errors.h"
#include "core/error.h"
#include "core/prediction.h"
#include "core/schedule.h"

namespace gd::core {

namespace {

// A centred crop of side at most kClassFitCrop, kept a multiple of the downsampling factor.
at::Tensor centre_crop(const at::Tensor& x, int factor) {
  auto side = [factor](std::int64_t n) {
    const std::int64_t s = std::min<std::int64_t>(n, kClassFitCrop);
    return std::max<std::int64_t>(s / factor * factor, std::min<std::int64_t>(n, factor));
  };
  const std::int64_t h = side(x.size(2)), w = side(x.size(3));
  return x.narrow(2, (x.size(2) - h) / 2, h).narrow(3, (x.size(3) - w) / 2, w);
}

}  // namespace

std::vector<std::int64_t> best_fitting_classes(const PipelineModel& model, const at::Tensor& x,
                                               int min_timestep, const StepFn& on_call) {
  if (model.num_classes <= 0) {
    throw not_class_conditional();
  }
  const int T = model.schedule.num_train_timesteps;
  const at::Tensor alphas_cumprod = model_alphas_cumprod(model.schedule);  // [T] float32
  const int lo = std::clamp(min_timestep, 0, T - 1);
  const std::int64_t classes = model.num_classes;

  if (x.size(0) == 0) return {};
  // The search's own maths stays on the CPU (small crops, once per run); the network runs on
  // the model's device.
  const at::Tensor crops = centre_crop(x.to(at::kCPU, at::kFloat),
                                       std::max(1, model.downsampling_factor));  // [N, C, h, w]
  // Classes per network call: about 256K pixels, like one 512x512 image.
  const std::int64_t chunk = std::max<std::int64_t>(1, (1 << 18) / (crops.size(2) * crops.size(3)));
  const int total_calls =
      static_cast<int>(crops.size(0) * kClassFitTimesteps * ((classes + chunk - 1) / chunk));
  int calls = 0;

  std::vector<std::int64_t> chosen;
  for (std::int64_t n = 0; n < crops.size(0); ++n) {
    const at::Tensor x0 = crops.narrow(0, n, 1);           // [1, C, h, w]
    at::Tensor error = at::zeros({classes}, at::kDouble);  // [classes] summed over timesteps
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(20230816);
    for (int k = 1; k <= kClassFitTimesteps; ++k) {
      const int t = lo + (T - 1 - lo) * k / (kClassFitTimesteps + 1);
      const at::Tensor alpha = alphas_cumprod[t].sqrt();        // 0-d
      const at::Tensor sigma = (1 - alphas_cumprod[t]).sqrt();  // 0-d
      const at::Tensor eps = at::randn(x0.sizes(), gen);  // [1, C, h, w], the same for every class
      const at::Tensor x_t = alpha * x0 + sigma * eps;    // [1, C, h, w]
      for (std::int64_t first = 0; first < classes; first += chunk) {
        const std::int64_t count = std::min(chunk, classes - first);
        Conditioning cond;
        cond.class_labels = at::arange(first, first + count, at::kLong);        // [count]
        const at::Tensor batch = x_t.expand({count, -1, -1, -1}).contiguous();  // [count, C, h, w]
        const at::Tensor out = model
                                   .network(batch.to(model.device, model.dtype),
                                            at::full({count}, t, at::kLong).to(model.device), cond)
                                   .to(at::kCPU, at::kFloat);
        const at::Tensor x0_pred =
            interpret_output(model.schedule.prediction_type, batch, out, alpha, sigma).x0;
        error.narrow(0, first, count) += (x0_pred - x0).pow(2).mean({1, 2, 3}).to(at::kDouble);
        if (on_call && !on_call(++calls, total_calls)) throw Cancelled();
      }
    }
    chosen.push_back(error.argmin().item<std::int64_t>());
  }
  return chosen;
}

}  // namespace gd::core
