// check_request: every field of a Request against a loaded model, before any work. The one
// place where the front ends' values are judged; the messages are the engine's own, each
// tagged with the field it is about.
#include <ATen/ATen.h>

#include <algorithm>

#include "core/guidance.h"
#include "core/inpaint.h"
#include "core/pipeline.h"
#include "core/samplers.h"
#include "engine/model_impl.h"
#include "models/class_names.h"

namespace gd {

using engine_internal::RunSize;

namespace {

// Runs `check`, a check of the engine's against the model; a gd::Error it throws becomes a
// RequestError about `field` (and the model).
template <typename F>
auto about(const std::string& field, F&& check) {
  try {
    return check();
  } catch (const RequestError&) {
    throw;
  } catch (const Error& e) {
    throw RequestError(field, e.what(), /*about_model=*/true);
  }
}

void check_sampling(const core::PipelineModel& model, const Request& r) {
  const std::vector<std::string>& names = core::sampler_names();
  if (!r.sampler.empty() && std::find(names.begin(), names.end(), r.sampler) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw RequestError("sampler", "sampler must be one of " + list + ", not '" + r.sampler + "'");
  }
  const int T = model.schedule.num_train_timesteps;
  if (r.steps < 0)
    throw RequestError("steps", "steps must be at least 1 (0: the sampler's default)");
  if (r.steps > T) {
    throw RequestError("steps",
                       "steps " + std::to_string(r.steps) + " exceeds the model's " +
                           std::to_string(T) + " training timesteps",
                       /*about_model=*/true);
  }
  if (!(r.eta >= 0 && r.eta <= 1)) throw RequestError("eta", "eta must be between 0 and 1");
  if (r.threads < 0 || r.threads > 1024) {
    throw RequestError("threads", "threads must be between 0 (automatic) and 1024");
  }
}

RunSize check_size(const core::PipelineModel& model, const Request& r, const ImageShape& image) {
  RunSize size;
  if (r.action == Action::Generate) {
    if (r.width < 0 || r.height < 0)
      throw RequestError("width", "width and height must be at least 1 (0: native)");
    size.width = r.width > 0 ? r.width : model.native_width;
    size.height = r.height > 0 ? r.height : model.native_height;
    if (size.width <= 0 || size.height <= 0) {
      throw RequestError(
          "width", "the model does not record its image size: give the width and height", true);
    }
    size.batch = r.batch;
    if (r.batch < 1) throw RequestError("batch", "batch must be at least 1");
    about("width", [&] {
      core::check_run_size(size.width, size.height, size.batch);
      return 0;
    });
    return size;
  }
  if (image.batch < 1 || image.channels < 1)
    throw RequestError("image", "an input image is needed");
  size = {image.batch, image.height, image.width};
  about("image", [&] {
    core::check_run_size(size.width, size.height, size.batch);
    const std::int64_t c = image.channels, m = model.channels;
    if (c != m && c != 1 && m != 1) {
      throw Error("the image has " + std::to_string(c) +
                  " colour channels but the model works on " + std::to_string(m));
    }
    return 0;
  });
  return size;
}

void check_action(const Request& r) {
  if (r.action == Action::Img2img && !(r.strength > 0 && r.strength <= 1)) {
    throw RequestError("strength", "strength must be in (0, 1]");
  }
  if (r.action == Action::Denoise && r.sigma && !(*r.sigma >= 0 && *r.sigma <= 1)) {
    throw RequestError("sigma", "sigma must be in [0, 1] (or estimated)");
  }
  if (r.action == Action::Denoise && r.seamless) {
    throw RequestError("seamless", "seamless applies to generate and img2img, not denoise");
  }
}

bool inpainting(const Request& r) {
  return r.action == Action::Inpaint || r.action == Action::MakeSeamless;
}

// Inpaint and Make Seamless: their own fields, the sampler (it must re-noise), the mask's shape
// and the band against the image.
void check_inpaint(const core::PipelineModel& model, const Request& r, const RunSize& size,
                   const ImageShape& mask) {
  if (r.resample < 0 || r.resample > 20)
    throw RequestError("resample", "resample must be from 1 (no jumps) to 20 (0: the default)");
  if (r.context_margin < -1 || r.context_margin > 65536)
    throw RequestError("context_margin", "the context margin must be 0 or more pixels");
  if (!r.sampler.empty()) {
    about("sampler", [&] {
      core::check_inpaint_sampler(r.sampler);
      return 0;
    });
  }
  if (r.action == Action::Inpaint && mask.batch > 0) {
    if (mask.channels != 1 || mask.height != size.height || mask.width != size.width ||
        (mask.batch != 1 && mask.batch != size.batch)) {
      throw RequestError(
          "mask", "the mask is " + std::to_string(mask.width) + "x" + std::to_string(mask.height) +
                      " (" + std::to_string(mask.channels) + " channel(s)) but the image is " +
                      std::to_string(size.width) + "x" + std::to_string(size.height) +
                      ": it must be one gray image of the same size");
    }
  }
  if (r.action != Action::MakeSeamless) return;
  if (r.band < 0) throw RequestError("band", "the band must be at least 2 pixels wide");
  if (r.band > 0) {
    try {
      core::check_seamless_band(r.band, size.height, size.width);
    } catch (const Error& e) {
      throw RequestError("band", e.what());
    }
  }
  // Any size: make_seamless stretches sizes off the downsampling grid (core/inpaint.h).
  about("image", [&] {
    return core::run_padding(model, true, core::canvas_side(model, size.height),
                             core::canvas_side(model, size.width));
  });
}

// The guidance of the run, each value checked on its own first so the message names its field.
core::Guidance check_guidance(const core::PipelineModel& model, const Request& r,
                              const core::RunOptions& run) {
  const int T = model.schedule.num_train_timesteps;
  if (r.guidance) {
    about("guidance", [&] {
      core::check_guidance_values(core::Guidance{*r.guidance}, T);
      return 0;
    });
  }
  if (r.guidance_below) {
    core::Guidance limit;
    limit.below_timestep = *r.guidance_below;
    about("guidance_below", [&] {
      core::check_guidance_values(limit, T);
      return 0;
    });
  }
  // The combination: guidance on a model without classes, or a limit without guidance.
  const bool limit_alone = r.guidance_below && !(r.guidance && *r.guidance != 1.0);
  return about(limit_alone ? "guidance_below" : "guidance",
               [&] { return core::run_guidance(model, run, r.action == Action::Generate); });
}

}  // namespace

ImageShape ImageShape::of(const at::Tensor& image) {
  if (!image.defined()) return {};
  if (image.dim() != 4) throw RequestError("image", "an image must be [N, C, H, W]");
  return {image.size(0), image.size(1), image.size(2), image.size(3)};
}

namespace engine_internal {

core::RunOptions run_options(const Model& model, const Request& r) {
  core::RunOptions run;
  run.sampler = r.sampler;
  run.steps = r.steps;
  run.eta = r.eta;
  run.seed = r.seed;
  run.seamless = r.seamless;
  run.guidance = r.guidance.value_or(0.0);
  run.guidance_below = r.guidance_below.value_or(0);
  if (!r.class_name.empty()) {
    const models::ModelInfo& info = model.info();
    run.class_label = about("class_name", [&] {
      return models::find_class(r.class_name, info.class_names, info.num_classes);
    });
  }
  return run;
}

}  // namespace engine_internal

Plan check_request(const Model& model, const Request& r, const ImageShape& image,
                   const ImageShape& mask) {
  const core::PipelineModel& m = model.impl().pipeline;
  check_action(r);
  check_sampling(m, r);
  const RunSize size = check_size(m, r, image);
  if (inpainting(r)) check_inpaint(m, r, size, mask);
  if (r.seamless)
    about("seamless", [&] { return core::run_padding(m, true, size.height, size.width); });
  const core::RunOptions run = engine_internal::run_options(model, r);
  Plan plan;
  const core::Guidance guidance = check_guidance(m, r, run);
  plan.guidance = core::describe_guidance(guidance);
  plan.sampler = r.sampler.empty() ? core::default_sampler(m.schedule) : r.sampler;
  plan.steps = r.steps > 0 ? r.steps : core::default_steps(plan.sampler, m.schedule);
  if (inpainting(r)) {
    plan.sampler = core::inpaint_sampler(m, r.sampler);
    plan.steps = r.steps > 0 ? r.steps
                             : std::min(core::kDefaultInpaintSteps, m.schedule.num_train_timesteps);
    const int resample = r.resample > 0 ? r.resample : core::kDefaultResample;
    plan.repaint =
        "RePaint, " + std::to_string(resample) + " resampling" + (resample > 1 ? "s" : "") +
        " every " + std::to_string(core::kJumpLength) + " steps: " +
        std::to_string(core::repaint_network_calls(plan.steps, core::kJumpLength, resample)) +
        " network calls";
  }
  plan.device = model.device();
  const bool from_image = r.action != Action::Generate;
  plan.best_fit = from_image && m.num_classes > 0 && run.class_label < 0;
  if (!plan.best_fit)
    plan.classes =
        about("class_name", [&] { return core::run_classes(m.num_classes, run, size.batch); });
  plan.classes_drawn = !plan.classes.empty() && run.class_label < 0;
  const engine_internal::TilePlan tiles =
      engine_internal::plan_tiles(model, r, size, run, guidance.active(), plan.best_fit);
  plan.memory = tiles.describe();
  plan.windows = static_cast<int>(tiles.layout.count());
  plan.estimated_bytes = static_cast<std::int64_t>(tiles.estimate);
  plan.budget_bytes = tiles.budget.bytes;
  plan.tile_height = tiles.tile_height;
  plan.tile_width = tiles.tile_width;
  plan.tile_overlap = tiles.overlap;
  plan.windows_per_call = tiles.per_call;
  plan.window_rows = tiles.layout.rows.starts;
  plan.window_cols = tiles.layout.cols.starts;
  return plan;
}

std::string Plan::describe(const Model& model, std::uint64_t seed) const {
  std::string text =
      "sampler " + sampler + ", " + std::to_string(steps) + " steps, seed " + std::to_string(seed);
  if (best_fit) text += ", class: the best fit for the image";
  const bool same =
      std::all_of(classes.begin(), classes.end(), [&](std::int64_t k) { return k == classes[0]; });
  for (std::size_t i = 0; i < classes.size() && !(same && i > 0); ++i) {
    text += (i                             ? ", "
             : classes.size() > 1 && !same ? ", classes "
                                           : ", class ") +
            model.describe_class(classes[i]);
  }
  if (classes_drawn) text += " (drawn from the seed)";
  if (!guidance.empty()) text += ", " + guidance;
  if (!repaint.empty()) text += ", " + repaint;
  return text;
}

}  // namespace gd
