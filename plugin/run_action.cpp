#include "plugin/run_action.h"

#include <libgimp/gimpui.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/memory_policy.h"
#include "plugin/apply_result.h"
#include "plugin/config_request.h"
#include "plugin/engine_bridge.h"
#include "plugin/model_list.h"
#include "plugin/model_path.h"
#include "plugin/pixels.h"
#include "plugin/procedures.h"
#include "ui/procedure_dialog.h"

namespace gd::plugin {

namespace {

std::string one_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::string basename_of(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  gchar* base = g_path_get_basename(path.c_str());
  std::string s = base;
  g_free(base);
  return s;
}

void show_progress(Action action, const std::string& what, double fraction) {
  gimp_progress_set_text((std::string(action_title(action)) + ": " + what).c_str());
  gimp_progress_update(fraction);
}

// Where the sampling stands, shared by the step and window callbacks.
struct StepProgress {
  int done = 0;      // steps done
  int total = 0;     // steps in all; 0 until the sampler reports (Image to Image and Denoise
                     // trim the schedule, so only Generate knows it beforehand)
  double shown = 0;  // the bar never moves back (a guided step may run the windows twice)
};

// Progress in steps, or for a tiled run (Plan::windows > 1, where one step of a large area can
// take minutes) also in windows within each step. Cancel: when the user cancels the progress,
// GIMP closes the plug-in's process (gimp_plug_in_close in GIMP's
// app/plug-in/gimpplugin-progress.c), which the plug-in cannot observe; so the callbacks never
// ask the engine to stop, between steps and between windows alike, and since the image is
// written only once the result is complete, a cancelled run leaves it as it was.
Callbacks progress_callbacks(Action action, const Plan& plan) {
  auto state = std::make_shared<StepProgress>();
  if (action == Action::Generate) state->total = plan.steps;
  Callbacks c;
  c.on_step = [action, state](int done, int total) {
    state->done = done;
    state->total = total;
    state->shown = std::max(state->shown, total > 0 ? static_cast<double>(done) / total : 0.0);
    show_progress(action, "step " + std::to_string(done) + " of " + std::to_string(total),
                  state->shown);
    return true;
  };
  if (plan.windows > 1) {
    c.on_window = [action, state](int done, int windows) {
      // "step 3 of 20, window 5 of 16"; "step 1, window 5 of 16" while the total is unknown.
      std::string where = "step " + std::to_string(state->done + 1);
      if (state->total > 0) {
        where = "step " + std::to_string(std::min(state->done + 1, state->total)) + " of " +
                std::to_string(state->total);
        const double within = windows > 0 ? static_cast<double>(done) / windows : 0.0;
        state->shown = std::max(state->shown, std::min(1.0, (state->done + within) / state->total));
      }
      show_progress(action,
                    where + ", window " + std::to_string(done) + " of " + std::to_string(windows),
                    state->shown);
      return true;
    };
  }
  // Before the first step: the threads and the memory plan (whole area or windows, the
  // estimated peak against the budget), which stay on show while the first step runs.
  c.on_threads = [action, memory = plan.memory](int, const std::string& text) {
    show_progress(action, "running on " + text + "; " + memory, 0.0);
  };
  // The search for the best-fitting class (a few seconds on a CPU) comes before the steps.
  c.on_class_fit = [action](int done, int total) {
    show_progress(action,
                  "finding the best-fitting class (" + std::to_string(done) + " of " +
                      std::to_string(total) + ")",
                  total > 0 ? static_cast<double>(done) / total : 0.0);
    return true;
  };
  return c;
}

// The dialog's model line: a cheap description, never a crash.
std::string describe_for_dialog(const std::string& model, const std::string& device) {
  try {
    const std::string path = resolve_model_path(model);
    return describe_model(path, device) + "\n" + path;
  } catch (const std::exception& e) {
    return "Model problem: " + one_line(e.what());
  }
}

// Loads, checks, reads, runs and writes; returns the layer holding the result.
struct Outcome {
  GimpLayer* layer = nullptr;
  Result details;
  std::uint64_t seed = 0;
};

Outcome run_on_image(Action action, GimpImage* image, GimpDrawable* drawable, const Region& region,
                     GimpProcedureConfig* config) {
  PluginRequest p = read_config(action, config);
  Request& request = p.request;
  request.width = region.width;
  request.height = region.height;
  show_progress(action, "loading model", 0.0);
  core::reuse_freed_memory();  // a plug-in run is a one-shot process: see core/memory_policy.h
  const Model model = load_model(request);
  const int channels = gimp_drawable_is_rgb(drawable) ? 3 : 1;
  // Fill Selection reads the whole drawable (the engine takes the selection's bounds plus its
  // context margin from it) and writes back the selection's bounds.
  const bool inpaint = action == Action::Inpaint;
  const Region input_region =
      inpaint ? Region{0, 0, gimp_drawable_get_width(drawable), gimp_drawable_get_height(drawable)}
              : region;
  const ImageShape shape{1, channels, input_region.height, input_region.width};
  const ImageShape mask_shape =
      inpaint ? ImageShape{1, 1, input_region.height, input_region.width} : ImageShape{};
  // Checked before any pixel is read.
  Plan plan =
      check_request(model, request, action == Action::Generate ? ImageShape{} : shape, mask_shape);
  show_progress(action, plan.describe(model, request.seed) + "; " + plan.memory, 0.0);
  Outcome outcome;
  outcome.seed = request.seed;
  PixelBuffer input;
  if (action != Action::Generate) input = read_region(drawable, input_region);
  PixelBuffer mask;
  if (inpaint) mask = read_selection(image, drawable, input_region);
  PixelBuffer result =
      run_on_pixels(model, request, action == Action::Generate ? nullptr : &input, channels,
                    progress_callbacks(action, plan), &outcome.details, inpaint ? &mask : nullptr);
  if (inpaint) result = crop(result, region);
  gimp_progress_update(1.0);
  // The class actually used (the best fit is known only now) goes into the layer name.
  plan.classes = outcome.details.classes;
  plan.best_fit = false;
  const std::string tag =
      basename_of(request.model_path) + ", " + plan.describe(model, request.seed);
  outcome.layer =
      apply_result(Placement{action, image, drawable, region, p.new_layer, tag}, result);
  return outcome;
}

GimpValueArray* failure(GimpProcedure* procedure, GimpPDBStatusType status,
                        const std::string& message) {
  GError* error = g_error_new_literal(g_quark_from_static_string("gimp-diffusion"), 0,
                                      one_line(message).c_str());
  return gimp_procedure_new_return_values(procedure, status, error);
}

GimpValueArray* success(Action action, GimpProcedure* procedure, GimpRunMode run_mode,
                        const Outcome& outcome) {
  if (run_mode == GIMP_RUN_INTERACTIVE) gimp_displays_flush();
  const Result& d = outcome.details;
  if (run_mode == GIMP_RUN_INTERACTIVE && action == Action::Denoise) {
    gimp_message((std::string("Denoise Layer: noise level ") + std::to_string(d.sigma) +
                  (d.sigma_estimated ? " (estimated)" : "") + ", seed " +
                  std::to_string(outcome.seed))
                     .c_str());
  }
  GimpValueArray* values = gimp_procedure_new_return_values(procedure, GIMP_PDB_SUCCESS, nullptr);
  GIMP_VALUES_SET_INT(values, 1, static_cast<int>(outcome.seed));
  if (action == Action::Denoise) {
    GIMP_VALUES_SET_DOUBLE(values, 2, d.sigma);
  } else {
    GIMP_VALUES_SET_LAYER(values, 2, outcome.layer);
  }
  return values;
}

}  // namespace

GimpValueArray* run_action(Action action, GimpProcedure* procedure, GimpRunMode run_mode,
                           GimpImage* image, GimpDrawable** drawables,
                           GimpProcedureConfig* config) {
  if (gimp_core_object_array_get_length(reinterpret_cast<GObject**>(drawables)) != 1) {
    return failure(
        procedure, GIMP_PDB_CALLING_ERROR,
        std::string(gimp_procedure_get_name(procedure)) + " works on exactly one drawable");
  }
  GimpDrawable* drawable = drawables[0];
  if (run_mode == GIMP_RUN_INTERACTIVE) {
    gimp_ui_init("gimp-diffusion");
    if (!gd::ui::run_procedure_dialog(procedure, config, action_title(action), describe_for_dialog,
                                      list_models())) {
      return gimp_procedure_new_return_values(procedure, GIMP_PDB_CANCEL, nullptr);
    }
  } else {
    gegl_init(nullptr, nullptr);
  }
  if (action == Action::Inpaint && gimp_selection_is_empty(image)) {
    return failure(
        procedure, GIMP_PDB_EXECUTION_ERROR,
        std::string(action_title(action)) + ": the selection is empty: select the pixels to fill");
  }
  Region region;
  if (!gimp_drawable_mask_intersect(drawable, &region.x, &region.y, &region.width,
                                    &region.height)) {
    return failure(procedure, GIMP_PDB_EXECUTION_ERROR,
                   "the selection does not touch the drawable: nothing to do");
  }
  const std::string title = action_title(action);
  try {
    const Outcome outcome = run_on_image(action, image, drawable, region, config);
    gimp_progress_end();
    return success(action, procedure, run_mode, outcome);
  } catch (const RequestError& e) {
    gimp_progress_end();
    return failure(procedure, GIMP_PDB_EXECUTION_ERROR, title + ": " + argument_message(e));
  } catch (const std::exception& e) {
    gimp_progress_end();
    return failure(procedure, GIMP_PDB_EXECUTION_ERROR, title + ": " + e.what());
  } catch (...) {
    gimp_progress_end();
    return failure(procedure, GIMP_PDB_EXECUTION_ERROR, title + ": unexpected failure");
  }
}

}  // namespace gd::plugin
