#include "core/inpaint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/class_fit.h"
#include "core/error.h"
#include "core/noise_draw.h"
#include "core/prediction.h"
#include "core/samplers/ddpm_sampler.h"
#include "core/timesteps.h"

namespace gd::core {

namespace {

std::string size_text(std::int64_t w, std::int64_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

std::int64_t round_up(std::int64_t value, std::int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Grows [start, start + length) within [0, limit) to a multiple of factor where it can,
// keeping it centred on the same span.
void grow_to_multiple(std::int64_t& start, std::int64_t& length, std::int64_t factor,
                      std::int64_t limit) {
  const std::int64_t target = std::min(round_up(length, factor), limit);
  const std::int64_t extra = target - length;
  start = std::clamp(start - extra / 2, std::int64_t{0}, limit - target);
  length = target;
}

at::Tensor area_of(const at::Tensor& x, const Rect& r) {
  return x.narrow(2, r.y, r.height).narrow(3, r.x, r.width);
}

// The step's sampler parameters: DDIM's eta (1 for ddpm's posterior).
double sampler_eta(const std::string& sampler, double eta) { return sampler == "ddpm" ? 1.0 : eta; }

// What the RePaint loop works with.
struct Repaint {
  ModelFn network;
  const ScheduleConfig* schedule = nullptr;
  at::Tensor timesteps;        // [S] int64, descending
  std::vector<double> alphas;  // alpha_bar of each level 0..S (level S: 1, the clean image)
  double eta = 0.0;
  at::Tensor known;  // [N, C, h, w] the original in model space
  at::Tensor mask;   // [N or 1, 1, h, w] 1: regenerate
};

// The known part noised to `alpha` (alpha_bar) with `noise`, the rest `unknown`.
at::Tensor with_known(const Repaint& r, const at::Tensor& unknown, double alpha,
                      const at::Tensor& noise) {
  at::Tensor known_t = std::sqrt(alpha) * r.known + std::sqrt(1.0 - alpha) * noise;
  return r.mask * unknown + (1 - r.mask) * known_t;  // [N, C, h, w]
}

// One reverse step from level `level` to level + 1 (Song et al. 2021 eq. 12, RePaint's
// replacement of the known part), drawing one noise tensor from the run's generator.
at::Tensor reverse_step(const Repaint& r, const at::Tensor& x, int level, at::Generator& gen) {
  const std::size_t L = static_cast<std::size_t>(level);
  const double a_t = r.alphas[L], a_prev = r.alphas[L + 1];
  const bool last = L + 2 == r.alphas.size();
  at::Tensor t = r.timesteps.narrow(0, level, 1).repeat({x.size(0)});  // [N] int64
  at::Tensor out = prediction_channels(r.network(x, t, std::nullopt), x);
  at::Tensor alpha = at::scalar_tensor(std::sqrt(a_t), x.options());
  at::Tensor sigma = at::scalar_tensor(std::sqrt(1.0 - a_t), x.options());
  Prediction p = interpret_output(r.schedule->prediction_type, x, out, alpha, sigma);
  at::Tensor x0 = clip_or_threshold(p.x0, *r.schedule);
  const double variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
  const double std_dev = r.eta * std::sqrt(std::max(variance, 0.0));
  at::Tensor noise = draw_noise(x.sizes(), gen, x.options());  // [N, C, h, w]
  const double direction = std::sqrt(std::max(1.0 - a_prev - std_dev * std_dev, 0.0));
  at::Tensor unknown = std::sqrt(a_prev) * x0 + direction * p.eps;
  if (!last) unknown = unknown + std_dev * noise;
  return with_known(r, unknown, a_prev, noise);
}

// A jump back from level `level` to level - 1: q(x_t | x_t') with one noise draw.
at::Tensor jump_back(const Repaint& r, const at::Tensor& x, int level, at::Generator& gen) {
  const std::size_t L = static_cast<std::size_t>(level);
  const double ratio = r.alphas[L - 1] / r.alphas[L];
  at::Tensor noise = draw_noise(x.sizes(), gen, x.options());
  return std::sqrt(ratio) * x + std::sqrt(1.0 - ratio) * noise;
}

// The RePaint loop over `levels`, from the initial noise to the clean sample.
at::Tensor run_repaint(const Repaint& r, const std::vector<int>& levels, at::Generator& gen,
                       const StepFn& on_step) {
  int calls = 0, total = 0;
  for (std::size_t i = 1; i < levels.size(); ++i) total += levels[i] > levels[i - 1] ? 1 : 0;
  // [N, C, h, w] drawn first, like the other actions' initial noise.
  at::Tensor noise = draw_noise(r.known.sizes(), gen, r.known.options());
  at::Tensor x = with_known(r, noise, r.alphas[0], noise);
  for (std::size_t i = 1; i < levels.size(); ++i) {
    if (levels[i] > levels[i - 1]) {
      x = reverse_step(r, x, levels[i - 1], gen);
      if (on_step && !on_step(++calls, total)) throw Cancelled();
    } else {
      x = jump_back(r, x, levels[i - 1], gen);
    }
  }
  return x;
}

// A window of side kClassFitCrop (or less) of the work area with the least of the mask in it:
// the class is fitted on context, not on the hole. x: [N, C, h, w]; mask: [N or 1, 1, h, w].
at::Tensor context_crop(const at::Tensor& x, const at::Tensor& mask, int factor) {
  const std::int64_t h = x.size(2), w = x.size(3);
  auto side = [factor](std::int64_t n) {
    const std::int64_t s = std::min<std::int64_t>(n, kClassFitCrop);
    return std::max<std::int64_t>(s / factor * factor, std::min<std::int64_t>(n, factor));
  };
  const std::int64_t sh = side(h), sw = side(w);
  const std::int64_t stride = std::max<std::int64_t>(factor, 4);
  at::Tensor cover = at::avg_pool2d(mask.to(at::kFloat).mean(0, true), {sh, sw},
                                    {stride, stride});  // [1, 1, rows, cols]
  const std::int64_t best = cover.flatten().argmin().item<std::int64_t>();
  const std::int64_t y = (best / cover.size(3)) * stride, xx = (best % cover.size(3)) * stride;
  return x.narrow(2, y, sh).narrow(3, xx, sw);
}

// Resolved options of one inpainting run.
struct Settings {
  std::string sampler;
  int steps = 0;
  int resample = 0;
  Padding padding = Padding::Zeros;
  Guidance guidance;
};

Settings settings_of(const PipelineModel& model, const InpaintOptions& options, std::int64_t height,
                     std::int64_t width) {
  Settings s;
  s.sampler = inpaint_sampler(model, options.sampler);
  const int T = model.schedule.num_train_timesteps;
  if (options.steps < 0) throw Error("steps must be at least 1");
  s.steps = options.steps > 0 ? options.steps : std::min(kDefaultInpaintSteps, T);
  check_inference_steps(s.steps, T);
  if (!(options.eta >= 0.0 && options.eta <= 1.0)) throw Error("eta must be between 0 and 1");
  s.resample = options.resample > 0 ? options.resample : kDefaultResample;
  if (options.resample < 0 || s.resample > 20) {
    throw Error("resample must be from 1 (no jumps) to 20, got " +
                std::to_string(options.resample));
  }
  if (options.context_margin < -1) throw Error("the context margin must be 0 or more pixels");
  s.padding = run_padding(model, options.seamless, height, width);
  s.guidance = run_guidance(model, options, false);
  return s;
}

}  // namespace

std::vector<int> repaint_levels(int steps, int jump_length, int resample) {
  // diffusers' RePaintScheduler.set_timesteps counts t down from steps (t: the steps still to
  // run); jumps[j]: how many more times to go back jump_length levels after reaching j.
  std::map<int, int> jumps;
  for (int j = 0; j < steps - jump_length; j += jump_length) jumps[j] = resample - 1;
  std::vector<int> levels = {0};
  int t = steps;
  while (t >= 1) {
    --t;
    levels.push_back(steps - t);
    if (jumps[t] > 0) {
      --jumps[t];
      for (int k = 0; k < jump_length; ++k) levels.push_back(steps - ++t);
    }
  }
  return levels;
}

int repaint_network_calls(int steps, int jump_length, int resample) {
  const std::vector<int> levels = repaint_levels(steps, jump_length, resample);
  int calls = 0;
  for (std::size_t i = 1; i < levels.size(); ++i) calls += levels[i] > levels[i - 1] ? 1 : 0;
  return calls;
}

int default_context_margin(const PipelineModel& model) {
  const int factor = std::max(1, model.downsampling_factor);
  const int native = std::max(model.native_width, model.native_height);
  const int half = native > 0 ? native / 2 : 32;
  return std::max(factor, half / factor * factor);
}

void check_inpaint_sampler(const std::string& sampler) {
  if (sampler == "ddpm" || sampler == "ddim") return;
  if (sampler == "dpmpp_2m") {
    throw Error(
        "sampler dpmpp_2m cannot inpaint: its multistep history does not survive RePaint's jumps "
        "back; use ddpm or ddim");
  }
  throw Error("sampler " + sampler +
              " cannot inpaint: RePaint's jumps back need a timestep-to-timestep sampler; use "
              "ddpm or ddim");
}

std::string inpaint_sampler(const PipelineModel& model, const std::string& sampler) {
  if (!sampler.empty()) {
    check_inpaint_sampler(sampler);
    return sampler;
  }
  const std::string own = default_sampler(model.schedule);
  return own == "ddim" ? own : "ddpm";
}

Rect inpaint_work_area(const Rect& bounds, std::int64_t margin, std::int64_t factor,
                       std::int64_t height, std::int64_t width) {
  Rect r;
  r.y = std::max<std::int64_t>(0, bounds.y - margin);
  r.x = std::max<std::int64_t>(0, bounds.x - margin);
  r.height = std::min(height, bounds.y + bounds.height + margin) - r.y;
  r.width = std::min(width, bounds.x + bounds.width + margin) - r.x;
  grow_to_multiple(r.y, r.height, factor, height);
  grow_to_multiple(r.x, r.width, factor, width);
  return r;
}

Rect mask_bounds(const at::Tensor& mask) {
  at::Tensor any = (mask > 0).any(0).any(0);  // [H, W] bool
  at::Tensor rows = any.any(1).nonzero(), cols = any.any(0).nonzero();
  if (rows.numel() == 0) return {};
  Rect r;
  r.y = rows.min().item<std::int64_t>();
  r.x = cols.min().item<std::int64_t>();
  r.height = rows.max().item<std::int64_t>() + 1 - r.y;
  r.width = cols.max().item<std::int64_t>() + 1 - r.x;
  return r;
}

void check_inpaint_mask(const at::Tensor& image, const at::Tensor& mask) {
  if (!mask.defined()) throw Error("inpainting needs a mask (white: regenerate)");
  if (mask.dim() != 4 || mask.size(1) != 1) throw Error("a mask must be [N, 1, H, W]");
  if (mask.size(2) != image.size(2) || mask.size(3) != image.size(3)) {
    throw Error("the mask is " + size_text(mask.size(3), mask.size(2)) + " but the image is " +
                size_text(image.size(3), image.size(2)));
  }
  if (mask.size(0) != 1 && mask.size(0) != image.size(0)) {
    throw Error("the mask has " + std::to_string(mask.size(0)) + " images, the input " +
                std::to_string(image.size(0)));
  }
  if (!(mask.min().item<double>() >= 0.0 && mask.max().item<double>() <= 1.0)) {
    throw Error("mask values must be in [0, 1]");
  }
  if (mask.max().item<double>() == 0.0) {
    throw Error("the mask is empty: nothing to regenerate (select the pixels to fill)");
  }
  if (mask.min().item<double>() == 1.0) {
    throw Error("the mask covers the whole image: nothing is left to continue (use generate)");
  }
}

at::Tensor inpaint(const PipelineModel& model, const at::Tensor& image, const at::Tensor& mask,
                   const InpaintOptions& options) {
  if (image.dim() != 4) throw Error("an image must be [N, C, H, W]");
  check_run_size(image.size(3), image.size(2), image.size(0));
  check_inpaint_mask(image, mask);
  const std::int64_t H = image.size(2), W = image.size(3);
  const Settings s = settings_of(model, options, H, W);
  const int factor = std::max(1, model.downsampling_factor);
  const std::int64_t margin =
      options.context_margin >= 0 ? options.context_margin : default_context_margin(model);
  const Rect area = options.seamless ? Rect{0, 0, H, W}
                                     : inpaint_work_area(mask_bounds(mask), margin, factor, H, W);
  const std::int64_t h = area.height, w = area.width;
  const std::int64_t pad_h = round_up(h, factor) - h, pad_w = round_up(w, factor) - w;

  const at::Tensor original = area_of(image.to(at::kFloat), area);  // [N, C, h, w]
  const at::Tensor area_mask = area_of(mask.to(at::kFloat), area);  // [N or 1, 1, h, w]
  Repaint r;
  r.schedule = &model.schedule;
  // The canvas lives on the model's device. Padding to the downsampling grid is context (mask 0):
  // reflected, or replicated when small.
  const at::Tensor on_device = original.to(model.device);
  const bool reflect = pad_h < h && pad_w < w;
  r.known = (reflect ? at::reflection_pad2d(on_device, {0, pad_w, 0, pad_h})
                     : at::replication_pad2d(on_device, {0, pad_w, 0, pad_h})) *
                2 -
            1;
  r.mask = at::constant_pad_nd(area_mask.to(model.device), {0, pad_w, 0, pad_h}, 0.0);
  std::vector<std::int64_t> classes = run_classes(model.num_classes, options, image.size(0));
  if (!classes.empty() && options.class_label < 0) {
    classes =
        best_fitting_classes(model, context_crop(r.known, r.mask, factor), 0, options.on_class_fit);
  }
  r.network = run_network(model, classes, s.padding, s.guidance, options, r.known);
  r.timesteps = ddpm_timesteps(model.schedule, s.steps);
  const at::Tensor alphas_cumprod = model_alphas_cumprod(model.schedule, at::kDouble);  // [T]
  for (std::int64_t i = 0; i < r.timesteps.size(0); ++i) {
    r.alphas.push_back(alphas_cumprod[r.timesteps[i].item<std::int64_t>()].item<double>());
  }
  r.alphas.push_back(1.0);
  r.eta = sampler_eta(s.sampler, options.eta);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  const at::Tensor x =
      run_repaint(r, repaint_levels(s.steps, kJumpLength, s.resample), gen, options.on_step);
  // [N, C, h, w] in [0, 1]; where the mask is 0 the original values, bit for bit.
  const at::Tensor fill =
      (x.to(at::kCPU, at::kFloat) / 2 + 0.5).clamp(0, 1).narrow(2, 0, h).narrow(3, 0, w);
  at::Tensor result = image.to(at::kFloat).clone();
  area_of(result, area).copy_(at::where(area_mask > 0, fill, original));
  return result;
}

at::Tensor seamless_band_mask(std::int64_t height, std::int64_t width, std::int64_t band) {
  at::Tensor mask = at::zeros({1, 1, height, width}, at::kFloat);
  mask.narrow(2, height / 2 - band / 2, band).fill_(1.0);
  mask.narrow(3, width / 2 - band / 2, band).fill_(1.0);
  return mask;
}

std::int64_t default_seamless_band(std::int64_t height, std::int64_t width) {
  return std::max<std::int64_t>(2, std::min(height, width) / 4);
}

void check_seamless_band(std::int64_t band, std::int64_t height, std::int64_t width) {
  const std::int64_t half = std::min(height, width) / 2;
  if (band < 2) throw Error("the band must be at least 2 pixels wide");
  if (band > half) {
    throw Error("the band of " + std::to_string(band) + " pixels is wider than half the image (" +
                std::to_string(half) + " pixels of " + size_text(width, height) + ")");
  }
}

namespace {

// A periodic image [N, C, H, W] resampled to [N, C, height, width] as a torus: bilinear, pixel
// centres mapped proportionally, wrapping at the edges (so the result is periodic too).
at::Tensor resize_torus(const at::Tensor& x, std::int64_t height, std::int64_t width) {
  const std::int64_t H = x.size(2), W = x.size(3);
  const at::Tensor padded = at::pad(x, {1, 1, 1, 1}, "circular");  // [N, C, H + 2, W + 2]
  // Output centre i samples input coordinate (i + 0.5) * H / height - 0.5, index + 1 in the
  // padded image, normalised for align_corners = true.
  auto axis = [&](std::int64_t out, std::int64_t in) {
    at::Tensor u = (at::arange(out, x.options()) + 0.5) * (double(in) / double(out)) - 0.5;
    return 2 * (u + 1) / double(in + 1) - 1;  // [out]
  };
  const at::Tensor gy = axis(height, H).view({height, 1}).expand({height, width});
  const at::Tensor gx = axis(width, W).view({1, width}).expand({height, width});
  const at::Tensor grid =
      at::stack({gx, gy}, -1).unsqueeze(0).expand({x.size(0), height, width, 2});  // [N, h, w, 2]
  return at::grid_sampler_2d(padded, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners=*/true);
}

}  // namespace

at::Tensor make_seamless(const PipelineModel& model, const at::Tensor& image, std::int64_t band,
                         const InpaintOptions& options) {
  if (image.dim() != 4) throw Error("an image must be [N, C, H, W]");
  const std::int64_t H = image.size(2), W = image.size(3);
  check_seamless_band(band, H, W);
  // The original's edges meet in the middle of the offset image, where the band is.
  const at::Tensor offset = image.to(at::kFloat).roll({H / 2, W / 2}, {2, 3});
  const at::Tensor band_mask = seamless_band_mask(H, W, band);  // [1, 1, H, W]
  InpaintOptions o = options;
  o.seamless = true;
  const std::int64_t H2 = canvas_side(model, H), W2 = canvas_side(model, W);
  at::Tensor filled;
  if (H2 == H && W2 == W) {
    filled = inpaint(model, offset, band_mask, o);
  } else {
    // Circular padding needs multiples of the downsampling factor: the torus is stretched to
    // the next multiples, the band inpainted there, and the fill resampled back. Outside the
    // band the input's pixels are kept exactly, as always.
    const double scale = std::max(double(H2) / double(H), double(W2) / double(W));
    const std::int64_t band2 = std::min<std::int64_t>(
        static_cast<std::int64_t>(std::ceil(double(band) * scale)) + 2, std::min(H2, W2) / 2);
    const at::Tensor stretched = resize_torus(offset, H2, W2);
    const at::Tensor fill =
        resize_torus(inpaint(model, stretched, seamless_band_mask(H2, W2, band2), o), H, W);
    filled = at::where(band_mask > 0, fill.clamp(0, 1), offset);
  }
  return filled.roll({-(H / 2), -(W / 2)}, {2, 3});
}

}  // namespace gd::core
