#include "training/sample_grid.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "core/pipeline.h"
#include "image_files/image_io.h"

namespace gd::training {

void write_sample_grid(const std::string& path, const TrainSettings& s,
                       models::DiffusersUNet& ema_net) {
  core::PipelineModel model;
  model.network = [&ema_net](const at::Tensor& x, const at::Tensor& t,
                             const core::Conditioning& cond) {
    return ema_net.forward(x, t, cond);
  };
  model.schedule = s.schedule;
  model.channels = 3;
  model.downsampling_factor = static_cast<int>(s.unet.downsampling_factor());
  model.native_width = model.native_height = s.size;
  model.device = s.device;
  model.num_classes = static_cast<int>(ema_net.num_classes());
  core::GenerateOptions
      options;  // class-conditional: classes drawn from the seed, every time the same
  options.sampler = "ddim";
  options.steps = s.sample_steps;
  options.seed = 1234;  // the same noise at every checkpoint: the grids show progress
  options.batch = s.sample_count;
  options.width = options.height = s.size;
  at::Tensor images;
  {
    at::NoGradGuard no_grad;
    images = core::generate(model, options);  // [N, 3, S, S] in [0, 1]
  }
  const int n = s.sample_count;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = (n + cols - 1) / cols;
  const int pad = 2, cell = s.size + pad;
  at::Tensor grid =
      at::ones({3, rows * cell + pad, cols * cell + pad}, at::kFloat);  // white gutters
  for (int i = 0; i < n; ++i) {
    const int r = i / cols, c = i % cols;
    grid.narrow(1, pad + r * cell, s.size).narrow(2, pad + c * cell, s.size).copy_(images[i]);
  }
  at::Tensor hwc = grid.permute({1, 2, 0}).contiguous();  // [H, W, 3], as image_io stores pixels
  image_files::Image image;
  image.width = static_cast<int>(hwc.size(1));
  image.height = static_cast<int>(hwc.size(0));
  image.channels = 3;
  image.pixels.assign(hwc.data_ptr<float>(), hwc.data_ptr<float>() + hwc.numel());
  image_files::write_png(path, image, 8);
}

}  // namespace gd::training
