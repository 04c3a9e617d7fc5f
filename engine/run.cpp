// run: a checked Request through the pipelines, with the image adapted to the model's channels
// and back.
#include <ATen/ATen.h>

#include "core/error.h"
#include "core/pipeline.h"
#include "core/thread_policy.h"
#include "engine/model_impl.h"

namespace gd {

namespace {

void add_callbacks(core::RunOptions& run, const Callbacks& callbacks, Result& result) {
  run.on_step = callbacks.on_step;
  run.on_class_fit = callbacks.on_class_fit;
  run.on_window = callbacks.on_window;
  run.on_classes = [&result, &callbacks](const std::vector<std::int64_t>& classes) {
    result.classes = classes;
    if (callbacks.on_classes) callbacks.on_classes(classes);
  };
}

// LibTorch's out-of-memory failures (CUDA's OutOfMemoryError, the CPU allocator's refusal) as one
// line that names the device and the way out, instead of an allocator's multi-line report.
// It is about the windows chosen: a RequestError on tile_size, so each front end names its own
// option; about_model, as it is a fact about this machine and model, not bad usage.
[[noreturn]] void out_of_memory(const Model& model, const Plan& plan) {
  throw RequestError("tile_size",
                     "out of memory on " + model.device() + " (" + plan.memory +
                         "): choose smaller windows, a lower memory budget, a smaller size or "
                         "precision bf16",
                     /*about_model=*/true);
}

bool allocator_refused(const c10::Error& e) {
  const std::string text = e.what_without_backtrace();
  return text.find("can't allocate memory") != std::string::npos ||
         text.find("out of memory") != std::string::npos;
}

Result run_checked(const Model& model, const Request& request, const Plan& plan,
                   const at::Tensor& image, const Callbacks& callbacks);

}  // namespace

Result run(const Model& model, const Request& request, const at::Tensor& image,
           const Callbacks& callbacks) {
  const Plan plan = check_request(model, request, ImageShape::of(image));
  try {
    return run_checked(model, request, plan, image, callbacks);
  } catch (const c10::OutOfMemoryError&) {
    out_of_memory(model, plan);
  } catch (const c10::Error& e) {
    if (allocator_refused(e)) out_of_memory(model, plan);
    throw;
  }
}

namespace {

Result run_checked(const Model& model, const Request& request, const Plan& plan,
                   const at::Tensor& image, const Callbacks& callbacks) {
  const core::PipelineModel& m = model.impl().pipeline;
  Result result;
  core::RunOptions run = engine_internal::run_options(model, request);
  add_callbacks(run, callbacks, result);
  run.tile_height = plan.tile_height;
  run.tile_width = plan.tile_width;
  run.tile_overlap = plan.tile_overlap;
  run.windows_per_call = plan.windows_per_call;
  const core::ThreadChoice threads = core::apply_thread_policy(request.threads);
  result.threads = threads.threads;
  if (callbacks.on_threads) callbacks.on_threads(threads.threads, threads.describe());
  if (request.action == Action::Generate) {
    core::GenerateOptions options;
    static_cast<core::RunOptions&>(options) = run;
    options.width = request.width;
    options.height = request.height;
    options.batch = request.batch;
    result.image = core::generate(m, options);  // [N, model channels, H, W]
    return result;
  }
  const at::Tensor colour = core::to_model_channels(image.to(at::kFloat), m.channels, nullptr);
  if (request.action == Action::Img2img) {
    result.image = core::img2img(m, colour, request.strength, run);
  } else {
    core::DenoiseResult d = core::denoise(m, colour, request.sigma, run);
    result.image = d.image;
    result.sigma = d.sigma;
    result.sigma_estimated = d.estimated;
    result.steps_run = d.steps_run;
    result.start_timestep = d.start_timestep;
  }
  result.image = core::from_model_channels(result.image, static_cast<int>(image.size(1)));
  return result;
}

}  // namespace

}  // namespace gd
