#include "core/pipeline.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "core/class_errors.h"
#include "core/class_fit.h"
#include "core/error.h"
#include "core/noise_draw.h"
#include "core/noise_estimate.h"
#include "core/samplers.h"

namespace gd::core {

namespace {

std::int64_t round_up(std::int64_t value, std::int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

void check_image(const at::Tensor& image) {
  if (image.dim() != 4) throw Error("an image must be [N, C, H, W]");
  check_run_size(image.size(3), image.size(2), image.size(0));
}

struct Prepared {
  std::unique_ptr<Sampler> sampler;
  at::Generator generator;
  int steps = 0;
};

Prepared prepare(const PipelineModel& model, const RunOptions& options) {
  Prepared p;
  const std::string name =
      options.sampler.empty() ? default_sampler(model.schedule) : options.sampler;
  p.steps = options.steps > 0 ? options.steps : default_steps(name, model.schedule);
  if (options.steps < 0) throw Error("steps must be at least 1");
  SamplerOptions sampler_options;
  sampler_options.eta = options.eta;
  p.sampler = make_sampler(name, model.schedule, sampler_options);
  p.sampler->set_timesteps(p.steps);
  p.generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  return p;
}

// The network in float32 model space, whatever device and dtype it runs in; the output comes
// back to the device of the sample (the sampler's maths runs where the canvas is: the model's
// device, so on CUDA nothing crosses to the host between steps).
NetworkFn network_in_float(const PipelineModel& model) {
  return [&model](const at::Tensor& x, const at::Tensor& t, const Conditioning& cond) {
    Conditioning on_device = cond;
    if (cond.self_cond) on_device.self_cond = cond.self_cond->to(model.device, model.dtype);
    return model.network(x.to(model.device, model.dtype), t.to(model.device), on_device)
        .to(x.device(), at::kFloat);
  };
}

// Pads [N, C, H, W] on the right and bottom to multiples of the downsampling factor by
// reflection (replication for 1-pixel images), so edges see plausible content.
at::Tensor pad_to_multiple(const at::Tensor& x, int factor) {
  const std::int64_t h = x.size(2), w = x.size(3);
  const std::int64_t pad_h = round_up(h, factor) - h, pad_w = round_up(w, factor) - w;
  if (pad_h == 0 && pad_w == 0) return x;
  if (pad_h < h && pad_w < w) return at::reflection_pad2d(x, {0, pad_w, 0, pad_h});
  return at::replication_pad2d(x, {0, pad_w, 0, pad_h});
}

at::Tensor crop(const at::Tensor& x, std::int64_t height, std::int64_t width) {
  return x.narrow(2, 0, height).narrow(3, 0, width);
}

// The classes of a run that starts from an image (x: [N, C, H, W] in model space): the given
// class, or the best fit for each image. Checks the option first, so a bad class costs nothing.
std::vector<std::int64_t> classes_for_images(const PipelineModel& model, const RunOptions& options,
                                             const at::Tensor& x, int min_timestep) {
  std::vector<std::int64_t> classes = run_classes(model.num_classes, options, x.size(0));
  if (classes.empty() || options.class_label >= 0) return classes;
  return best_fitting_classes(model, x, min_timestep, options.on_class_fit);
}

// The callback the sampler runs on a canvas x: the network in float32, fused from windows where
// the options tile, under the run's classes (reported through options.on_classes) and padding,
// guided where the run asks for it.
ModelFn run_network(const PipelineModel& model, const std::vector<std::int64_t>& classes,
                    Padding padding, const Guidance& guidance, const RunOptions& options,
                    const at::Tensor& x) {
  Conditioning cond;
  cond.padding = padding;
  if (!classes.empty()) {
    cond.class_labels = at::tensor(classes, at::kLong);  // [N], on the CPU
    if (options.on_classes) options.on_classes(classes);
  }
  // x is the canvas: already a multiple of the downsampling factor.
  const TileLayout layout = tile_layout(
      x.size(2), x.size(3), options.tile_height, options.tile_width, options.tile_overlap,
      std::max(1, model.downsampling_factor), padding != Padding::Zeros);
  NetworkFn network =
      tiled_network(network_in_float(model), layout, options.windows_per_call, options.on_window);
  return conditioned_network(network, cond, guidance, model.channels,
                             options.max_batched_guidance_pixels);
}

at::Tensor to_unit_range(const at::Tensor& x) {  // model space [-1, 1] -> [0, 1]
  return (x / 2 + 0.5).clamp(0, 1);
}

// An input image [N, C, H, W] in [0, 1] as the canvas's start: float32 on the model's device,
// padded to the downsampling factor, in model space [-1, 1].
at::Tensor image_on_canvas(const PipelineModel& model, const at::Tensor& image) {
  const at::Tensor on_device = image.to(model.device, at::kFloat);
  return pad_to_multiple(on_device, std::max(1, model.downsampling_factor)) * 2 - 1;
}

// The finished canvas back on the host: [N, C, height, width] float32 in [0, 1].
at::Tensor canvas_result(const at::Tensor& x, std::int64_t height, std::int64_t width) {
  return crop(to_unit_range(x), height, width).to(at::kCPU, at::kFloat);
}

}  // namespace

void check_run_size(std::int64_t width, std::int64_t height, std::int64_t batch) {
  if (width < 1 || height < 1) throw Error("width and height must be at least 1");
  if (batch < 1) throw Error("batch must be at least 1");
  if (width > 65536 || height > 65536 || width * height * batch > kMaxPixels) {
    throw Error(std::to_string(width) + "x" + std::to_string(height) + " x " +
                std::to_string(batch) + " images are too large: the limit is " +
                std::to_string(kMaxPixels) + " pixels per run");
  }
}

std::int64_t canvas_side(const PipelineModel& model, std::int64_t side) {
  return round_up(side, std::max(1, model.downsampling_factor));
}

Padding run_padding(const PipelineModel& model, bool seamless, std::int64_t height,
                    std::int64_t width) {
  if (!seamless) return Padding::Zeros;
  const int factor = std::max(1, model.downsampling_factor);
  if (height % factor != 0 || width % factor != 0) {
    throw Error("seamless output needs a width and height that are multiples of " +
                std::to_string(factor) + " (got " + std::to_string(width) + "x" +
                std::to_string(height) + ")");
  }
  if (!model.circular_padding) {
    throw Error("this model cannot make seamless textures (its padding is not ours to change)");
  }
  return Padding::Circular;
}

Guidance run_guidance(const PipelineModel& model, const RunOptions& options, bool generating) {
  Guidance g = generating ? model.generate_guidance : Guidance{};
  if (options.guidance != 0.0) g.scale = options.guidance;
  if (options.guidance_below != 0) g.below_timestep = options.guidance_below;
  check_guidance(g, model.num_classes, model.schedule.num_train_timesteps);
  if (options.guidance_below != 0 && !g.active()) {
    throw Error("a guidance limit needs guidance: this run is unguided (give a scale above 1)");
  }
  return g;
}

std::vector<std::int64_t> run_classes(int num_classes, const RunOptions& options,
                                      std::int64_t batch) {
  if (num_classes <= 0) {
    if (options.class_label >= 0) throw not_class_conditional();
    return {};
  }
  if (options.class_label >= num_classes || options.class_label < -1) {
    throw class_out_of_range(std::to_string(options.class_label), num_classes);
  }
  if (options.class_label >= 0)
    return std::vector<std::int64_t>(static_cast<std::size_t>(batch), options.class_label);
  std::mt19937_64 rng(options.seed);
  std::vector<std::int64_t> classes;
  for (std::int64_t i = 0; i < batch; ++i) {
    classes.push_back(static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(num_classes)));
  }
  return classes;
}

std::string default_sampler(const ScheduleConfig& schedule) {
  if (schedule.family == ScheduleConfig::Family::DdpmPytorch) return "ddpm";
  const std::string& c = schedule.scheduler_class;
  if (c == "DDIMScheduler") return "ddim";
  if (c == "DPMSolverMultistepScheduler") return "dpmpp_2m";
  if (c == "EulerDiscreteScheduler") return "euler";
  if (c == "EulerAncestralDiscreteScheduler") return "euler_a";
  return "ddpm";
}

int default_steps(const std::string& sampler, const ScheduleConfig& schedule) {
  if (sampler == "ddpm") return schedule.num_train_timesteps;
  if (sampler == "ddim") return std::min(50, schedule.num_train_timesteps);
  return std::min(20, schedule.num_train_timesteps);
}

at::Tensor to_model_channels(const at::Tensor& image, int model_channels, std::string* note) {
  const std::int64_t c = image.size(1);
  if (c == model_channels) return image;
  if (c == 1) {
    if (note)
      *note =
          "gray image replicated into the model's " + std::to_string(model_channels) + " channels";
    return image.expand({image.size(0), model_channels, image.size(2), image.size(3)}).contiguous();
  }
  if (model_channels == 1) {
    if (note) *note = "colour image averaged into the model's single channel";
    return image.mean(1, /*keepdim=*/true);
  }
  throw Error("the image has " + std::to_string(c) + " colour channels but the model works on " +
              std::to_string(model_channels));
}

at::Tensor from_model_channels(const at::Tensor& image, int image_channels) {
  const std::int64_t c = image.size(1);
  if (c == image_channels) return image;
  if (image_channels == 1) return image.mean(1, true);
  if (c == 1)
    return image.expand({image.size(0), image_channels, image.size(2), image.size(3)}).contiguous();
  return image.narrow(1, 0, image_channels);
}

at::Tensor generate(const PipelineModel& model, const GenerateOptions& options) {
  const int factor = std::max(1, model.downsampling_factor);
  const std::int64_t width = options.width > 0 ? options.width : model.native_width;
  const std::int64_t height = options.height > 0 ? options.height : model.native_height;
  if (width <= 0 || height <= 0) {
    throw Error("the model does not record its image size: give the width and height");
  }
  check_run_size(width, height, options.batch);
  const Padding padding = run_padding(model, options.seamless, height, width);
  const Guidance guidance = run_guidance(model, options, true);
  const std::vector<std::int64_t> labels = run_classes(model.num_classes, options, options.batch);
  Prepared p = prepare(model, options);
  // Work at the next multiple of the factor and crop the top-left corner: for sizes that are
  // multiples nothing changes and the result is the reference's exactly.
  const std::int64_t work_h = round_up(height, factor), work_w = round_up(width, factor);
  // [N, C, H, W] drawn first, from the run's own generator, like randn_tensor in diffusers.
  at::Tensor noise = draw_noise({options.batch, model.channels, work_h, work_w}, p.generator,
                                at::TensorOptions().device(model.device));
  at::Tensor x = noise * p.sampler->init_noise_sigma();
  x = p.sampler->run(x, 0, run_network(model, labels, padding, guidance, options, x), p.generator,
                     options.on_step);
  return canvas_result(x, height, width);
}

at::Tensor img2img(const PipelineModel& model, const at::Tensor& image, double strength,
                   const RunOptions& options) {
  check_image(image);
  if (!(strength > 0.0 && strength <= 1.0)) throw Error("strength must be in (0, 1]");
  const Guidance guidance = run_guidance(model, options, false);
  Prepared p = prepare(model, options);
  // diffusers: init_timestep = min(int(steps * strength), steps); the chain starts at
  // steps - init_timestep.
  const int init_timestep = std::min(static_cast<int>(p.steps * strength), p.steps);
  const int first = std::max(p.steps - init_timestep, 0);
  if (first >= p.steps) {
    throw Error("strength " + std::to_string(strength) + " with " + std::to_string(p.steps) +
                " steps leaves no step to run; raise the strength or the steps");
  }
  const std::int64_t height = image.size(2), width = image.size(3);
  const Padding padding = run_padding(model, options.seamless, height, width);
  const at::Tensor init = image_on_canvas(model, image);
  const std::vector<std::int64_t> labels = classes_for_images(model, options, init, 0);
  at::Tensor noise = draw_noise(init.sizes(), p.generator, init.options());
  at::Tensor x = p.sampler->add_noise(init, noise, first);
  x = p.sampler->run(x, first, run_network(model, labels, padding, guidance, options, x),
                     p.generator, options.on_step);
  return canvas_result(x, height, width);
}

DenoiseResult denoise(const PipelineModel& model, const at::Tensor& image,
                      std::optional<double> sigma, const RunOptions& options) {
  check_image(image);
  const Guidance guidance = run_guidance(model, options, false);
  DenoiseResult result;
  if (sigma) {
    if (!(*sigma >= 0.0 && *sigma <= 1.0)) throw Error("sigma must be in [0, 1]");
    result.sigma = *sigma;
  } else {
    result.sigma = estimate_noise_sigma(image.to(at::kFloat));
    result.estimated = true;
  }
  const std::int64_t height = image.size(2), width = image.size(3);

  // The noise level of each training timestep, as a noise-to-signal ratio in model space:
  // x_t / alpha_t = x0 + (sigma_t / alpha_t) eps.
  const at::Tensor alphas_cumprod = model_alphas_cumprod(model.schedule, at::kDouble);  // [T]
  const at::Tensor ratio = ((1 - alphas_cumprod) / alphas_cumprod).sqrt();  // [T], increasing
  const double target = 2.0 * result.sigma;
  const int T = model.schedule.num_train_timesteps;
  run_classes(model.num_classes, options, image.size(0));  // a bad class fails before any work
  if (target <= ratio[0].item<double>()) {
    result.image = image.to(at::kFloat).clone();  // below the model's finest noise level
    return result;
  }
  // t*: the last timestep whose noise level does not exceed the image's.
  const int t_star =
      std::max(0, static_cast<int>((ratio <= target).sum().item<std::int64_t>()) - 1);

  // Spread the requested steps over [0, t*] by asking for proportionally more over [0, T).
  const std::string name =
      options.sampler.empty() ? default_sampler(model.schedule) : options.sampler;
  const int want =
      options.steps > 0 ? options.steps : std::min(default_steps(name, model.schedule), t_star + 1);
  RunOptions run = options;
  run.sampler = name;
  run.steps = std::clamp(static_cast<int>(std::ceil(double(want) * T / (t_star + 1))), 1, T);
  Prepared p = prepare(model, run);

  // First index whose timestep is at or below t*.
  const at::Tensor ts = p.sampler->timesteps().to(at::kDouble);
  int first = 0;
  while (first < ts.size(0) && ts[first].item<double>() > t_star) ++first;
  if (first >= ts.size(0)) first = static_cast<int>(ts.size(0)) - 1;
  result.start_timestep = ts[first].item<double>();
  result.steps_run = static_cast<int>(ts.size(0)) - first;

  // The noisy image already carries noise of the right level relative to the signal: scaling
  // it to the chosen timestep's sample is add_noise with zero extra noise (alpha_t * x for
  // variance-preserving samplers, x itself for sigma-space ones).
  const at::Tensor x0_noisy = image_on_canvas(model, image);
  // The class is fitted on noise added above the image's own level (t*).
  const std::vector<std::int64_t> labels = classes_for_images(model, options, x0_noisy, t_star);
  at::Tensor x = p.sampler->add_noise(x0_noisy, at::zeros_like(x0_noisy), first);
  x = p.sampler->run(x, first, run_network(model, labels, Padding::Zeros, guidance, options, x),
                     p.generator, options.on_step);
  result.image = canvas_result(x, height, width);
  return result;
}

}  // namespace gd::core
