// The plug-in's bridge to the engine: the only plug-in file that includes LibTorch and engine
// headers. Mirrors tools/cli/cli_sample.cpp: same device rules, same option checks, same
// channel adaptation, alpha kept aside and put back untouched.
#include "plugin/engine_bridge.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "core/memory_policy.h"
#include "core/pipeline.h"
#include "core/samplers.h"
#include "models/class_names.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"

namespace gd::plugin {

namespace {

c10::Device parse_device(const std::string& text) {
  if (text == "cpu") return c10::Device(c10::kCPU);
  if (text == "cuda") {
    if (!at::hasCUDA()) {
      throw Error("device cuda: no CUDA device is available (this build or machine has none); "
                  "choose cpu or auto");
    }
    return c10::Device(c10::kCUDA, 0);
  }
  if (text == "auto" || text.empty()) {
    return at::hasCUDA() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  throw Error("device must be auto, cpu or cuda, not '" + text + "'");
}

void check_size(int width, int height) {
  if (width < 1 || height < 1) throw Error("the area to process is empty");
  if (static_cast<std::int64_t>(width) * height > core::kMaxPixels) {
    throw Error("the area to process (" + std::to_string(width) + "x" + std::to_string(height) +
                ") is too large: the limit is " + std::to_string(core::kMaxPixels) +
                " pixels per run; select a smaller area");
  }
}

// Colour [1, C, H, W] and alpha [1, 1, H, W] (undefined without alpha) of an interleaved buffer.
struct Split {
  at::Tensor colour, alpha;
};

Split split(const PixelBuffer& image) {
  if (image.channels < 1 || image.channels > 4 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw Error("internal error: malformed pixel buffer");
  }
  check_size(image.width, image.height);
  at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kFloat);
  at::Tensor nchw = hwc.permute({2, 0, 1}).unsqueeze(0).clone();
  Split s;
  const int colour_channels = image.has_alpha ? image.channels - 1 : image.channels;
  s.colour = nchw.narrow(1, 0, colour_channels).contiguous();
  if (image.has_alpha) s.alpha = nchw.narrow(1, colour_channels, 1).contiguous();
  return s;
}

PixelBuffer join(const at::Tensor& colour, const at::Tensor& alpha) {
  at::Tensor x = alpha.defined() ? at::cat({colour.to(at::kCPU, at::kFloat), alpha}, 1)
                                 : colour.to(at::kCPU, at::kFloat);
  x = x.clamp(0, 1);
  if (!at::isfinite(x).all().item<bool>()) {
    throw Error("the model produced non-finite values (it diverged); nothing was changed");
  }
  at::Tensor hwc = x[0].permute({1, 2, 0}).contiguous();
  PixelBuffer out;
  out.height = static_cast<int>(hwc.size(0));
  out.width = static_cast<int>(hwc.size(1));
  out.channels = static_cast<int>(hwc.size(2));
  out.has_alpha = alpha.defined();
  out.pixels.assign(hwc.data_ptr<float>(), hwc.data_ptr<float>() + hwc.numel());
  return out;
}

std::string device_name(const c10::Device& device) { return device.str(); }

}  // namespace

std::string ModelSummary::text() const {
  std::string t = architecture.empty() ? std::string("model") : architecture;
  if (!format.empty()) t += " (" + format + ")";
  if (native_width > 0 && native_height > 0) {
    t += ", native size " + std::to_string(native_width) + "x" + std::to_string(native_height);
  }
  t += ", " + std::string(channels == 1 ? "gray" : channels == 3 ? "RGB" : std::to_string(channels) + " channels");
  if (downsampling_factor > 1) t += ", sizes padded to multiples of " + std::to_string(downsampling_factor);
  if (parameter_count > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fM", parameter_count / 1e6);
    t += ", " + std::string(buf) + " parameters";
  }
  if (!default_sampler.empty()) t += ", own sampler " + default_sampler;
  if (num_classes > 0) t += ", " + std::to_string(num_classes) + " classes";
  if (!generate_guidance.empty()) t += ", Generate default " + generate_guidance;
  if (!device.empty()) t += ", device " + device;
  return t;
}

std::vector<std::string> sampler_names() { return core::sampler_names(); }

std::int64_t max_pixels() { return core::kMaxPixels; }

bool cuda_available() { return at::hasCUDA(); }

struct Engine::Impl {
  models::LoadedModel loaded;
  core::PipelineModel model;
  ModelSummary summary;

  core::RunOptions run_options(const EngineSettings& s) const {
    core::RunOptions run;
    if (!s.sampler.empty()) {
      const auto& names = core::sampler_names();
      if (std::find(names.begin(), names.end(), s.sampler) == names.end()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        throw Error("sampler must be one of " + list + ", not '" + s.sampler + "'");
      }
    }
    run.sampler = s.sampler;
    if (s.steps < 0) throw Error("steps must be at least 1 (0: the sampler's default)");
    if (s.steps > model.schedule.num_train_timesteps) {
      throw Error("steps " + std::to_string(s.steps) + " exceeds the model's " +
                  std::to_string(model.schedule.num_train_timesteps) + " training timesteps");
    }
    run.steps = s.steps;
    if (!(s.eta >= 0 && s.eta <= 1)) throw Error("eta must be between 0 and 1");
    run.eta = s.eta;
    run.seed = s.seed;
    run.seamless = s.seamless;
    if (!s.texture_class.empty()) {
      run.class_label = models::find_class(s.texture_class, loaded.info.class_names, loaded.info.num_classes);
    }
    if (s.guidance != 0 && !(s.guidance >= 1 && s.guidance <= core::kMaxGuidanceScale)) {
      throw Error("guidance must be from 1 (off) to " + std::to_string(static_cast<int>(core::kMaxGuidanceScale)) +
                  ", or 0 for the model's default");
    }
    run.guidance = s.guidance;
    return run;
  }
};

Engine::Engine(const std::string& model_path, const std::string& device) : impl_(new Impl) {
  core::reuse_freed_memory();  // a plug-in run is a one-shot process: see core/memory_policy.h
  models::LoadOptions load;
  load.device = parse_device(device);
  impl_->loaded = models::load_model(model_path, load);
  const models::ModelInfo& info = impl_->loaded.info;
  impl_->model = models::pipeline_model(impl_->loaded, load);

  ModelSummary& s = impl_->summary;
  s.architecture = info.architecture;
  s.format = models::format_name(info.format);
  s.channels = info.in_channels;
  s.native_width = info.native_width;
  s.native_height = info.native_height;
  s.downsampling_factor = info.downsampling_factor;
  s.parameter_count = info.parameter_count;
  s.default_sampler = core::default_sampler(impl_->model.schedule);
  s.device = device_name(load.device);
  s.num_classes = info.num_classes;
  s.generate_guidance = core::describe_guidance(info.generate_guidance);
}

Engine::~Engine() = default;

const ModelSummary& Engine::summary() const { return impl_->summary; }

std::string Engine::sampler_for(const EngineSettings& settings) const {
  return settings.sampler.empty() ? core::default_sampler(impl_->model.schedule) : settings.sampler;
}

int Engine::steps_for(const EngineSettings& settings) const {
  return settings.steps > 0 ? settings.steps : core::default_steps(sampler_for(settings), impl_->model.schedule);
}

namespace {

// "class 3 (bricks)", or "class 3" for a model without class names.
std::string class_text(const std::vector<std::string>& names, std::int64_t k) {
  return "class " + models::describe_class(names, k);
}

}  // namespace

std::string Engine::class_for(const EngineSettings& settings, bool from_image) const {
  const core::RunOptions run = impl_->run_options(settings);
  const std::vector<std::int64_t> classes = core::run_classes(impl_->model.num_classes, run, 1);
  if (classes.empty()) return "";
  if (from_image && run.class_label < 0) return "best-fitting class";
  return class_text(impl_->loaded.info.class_names, classes[0]);
}

std::string Engine::guidance_for(const EngineSettings& settings, bool generating) const {
  return core::describe_guidance(core::run_guidance(impl_->model, impl_->run_options(settings), generating));
}

PixelBuffer Engine::generate(const EngineSettings& settings, int width, int height, int channels,
                             const ProgressFn& progress) const {
  check_size(width, height);
  core::GenerateOptions options;
  static_cast<core::RunOptions&>(options) = impl_->run_options(settings);
  options.width = width;
  options.height = height;
  options.batch = 1;
  if (progress) options.on_step = [&progress](int done, int total) { progress(done, total); return true; };
  at::Tensor images = core::generate(impl_->model, options);
  return join(core::from_model_channels(images, channels), at::Tensor());
}

PixelBuffer Engine::img2img(const EngineSettings& settings, const PixelBuffer& image, double strength,
                            const ProgressFn& progress, std::string* class_used,
                            const ProgressFn& fit_progress) const {
  if (!(strength > 0 && strength <= 1)) throw Error("strength must be in (0, 1]");
  core::RunOptions run = impl_->run_options(settings);
  const auto& names = impl_->loaded.info.class_names;
  if (class_used) run.on_classes = [class_used, &names](const std::vector<std::int64_t>& k) { *class_used = class_text(names, k[0]); };
  Split in = split(image);
  at::Tensor colour = core::to_model_channels(in.colour, impl_->model.channels, nullptr);
  if (progress) run.on_step = [&progress](int done, int total) { progress(done, total); return true; };
  if (fit_progress) run.on_class_fit = [&fit_progress](int done, int total) { fit_progress(done, total); return true; };
  at::Tensor out = core::img2img(impl_->model, colour, strength, run);
  return join(core::from_model_channels(out, static_cast<int>(in.colour.size(1))), in.alpha);
}

PixelBuffer Engine::denoise(const EngineSettings& settings, const PixelBuffer& image,
                            std::optional<double> noise_level, const ProgressFn& progress,
                            double* sigma_used, std::string* class_used,
                            const ProgressFn& fit_progress) const {
  if (noise_level && !(*noise_level >= 0 && *noise_level <= 1)) throw Error("noise level must be in [0, 1]");
  core::RunOptions run = impl_->run_options(settings);
  const auto& names = impl_->loaded.info.class_names;
  if (class_used) run.on_classes = [class_used, &names](const std::vector<std::int64_t>& k) { *class_used = class_text(names, k[0]); };
  Split in = split(image);
  at::Tensor colour = core::to_model_channels(in.colour, impl_->model.channels, nullptr);
  if (progress) run.on_step = [&progress](int done, int total) { progress(done, total); return true; };
  if (fit_progress) run.on_class_fit = [&fit_progress](int done, int total) { fit_progress(done, total); return true; };
  core::DenoiseResult result = core::denoise(impl_->model, colour, noise_level, run);
  if (sigma_used) *sigma_used = result.sigma;
  return join(core::from_model_channels(result.image, static_cast<int>(in.colour.size(1))), in.alpha);
}

ModelSummary describe_model(const std::string& model_path, const std::string& device) {
  // Loading on the CPU is enough to describe it; the device shown is where a run would go.
  Engine engine(model_path, "cpu");
  ModelSummary s = engine.summary();
  s.device = device_name(parse_device(device));
  return s;
}

}  // namespace gd::plugin
