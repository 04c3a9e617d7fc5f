// gimp-diffusion: the GIMP 3 plug-in. Three image procedures (Filters > Diffusion):
//   plug-in-diffusion-generate  a new image in the selection bounds (new layer or in place)
//   plug-in-diffusion-img2img   re-noise the selection and sample it back
//   plug-in-diffusion-denoise   treat the selection as a noisy sample and denoise it
//
// This file is GIMP glue only: arguments, dialog, pixels in and out, progress, undo, errors.
// The engine sits behind plugin/engine_bridge.h. Every exception stops at the PDB boundary
// (run_action) and becomes one line in a GIMP error and GIMP_PDB_EXECUTION_ERROR; the image is
// written only once a result is complete, inside one undo group.
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>

#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "plugin/engine_bridge.h"
#include "plugin/model_path.h"
#include "plugin/pixels.h"
#include "ui/procedure_dialog.h"

namespace {

constexpr const char* kGenerate = "plug-in-diffusion-generate";
constexpr const char* kImg2img = "plug-in-diffusion-img2img";
constexpr const char* kDenoise = "plug-in-diffusion-denoise";
constexpr const char* kMenuPath = "<Image>/Filters/Diffusion";

enum class Action { Generate, Img2img, Denoise };

const char* action_title(Action a) {
  switch (a) {
    case Action::Generate: return "Generate";
    case Action::Img2img: return "Image to Image";
    case Action::Denoise: return "Denoise Layer";
  }
  return "";
}

std::string one_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

std::string get_string(GimpProcedureConfig* config, const char* name) {
  gchar* value = nullptr;
  g_object_get(config, name, &value, nullptr);
  std::string s = value ? value : "";
  g_free(value);
  return s;
}

bool has_property(GimpProcedureConfig* config, const char* name) {
  return g_object_class_find_property(G_OBJECT_GET_CLASS(config), name) != nullptr;
}

// ---- Arguments --------------------------------------------------------------------------------

void add_common_arguments(GimpProcedure* procedure) {
  gimp_procedure_add_string_argument(
      procedure, "model", "_Model",
      "Model folder (diffusers UNet2DModel or pipeline, TorchScript folder) or checkpoint file "
      "(denoising-diffusion-pytorch model-N.pt), or the name of a model installed in "
      "<GIMP user folder>/diffusion-models. Empty: $GIMP_DIFFUSION_MODEL, else the bundled "
      "texture model (gimp-patterns)",
      "", G_PARAM_READWRITE);

  GimpChoice* samplers = gimp_choice_new();
  gimp_choice_add(samplers, "default", 0, "Model's own", "The sampler the model was published with");
  int id = 1;
  for (const std::string& name : gd::plugin::sampler_names()) {
    gimp_choice_add(samplers, name.c_str(), id++, name.c_str(), nullptr);
  }
  gimp_procedure_add_choice_argument(
      procedure, "sampler", "_Sampler",
      "Sampler: default (the model's own scheduler), ddpm, ddim, dpmpp_2m, euler or euler_a",
      samplers, "dpmpp_2m", G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(
      procedure, "steps", "S_teps",
      "Sampling steps; 0: the sampler's default (20 for the solvers, 50 for ddim, the full chain "
      "for ddpm)",
      0, 10000, 0, G_PARAM_READWRITE);
  gimp_procedure_add_double_argument(
      procedure, "eta", "_Eta", "DDIM stochasticity: 0 deterministic, 1 DDPM-like (ddim only)", 0.0, 1.0,
      0.0, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(
      procedure, "seed", "See_d", "Random seed; -1: a random one (the seed used is returned)", -1,
      G_MAXINT, -1, G_PARAM_READWRITE);
  gimp_procedure_add_choice_argument(
      procedure, "device", "_Device", "Where the model runs: auto (CUDA when present), cpu or cuda",
      gimp_choice_new_with_values("auto", 0, "Auto", "CUDA when present, else CPU",
                                  "cpu", 1, "CPU", nullptr,
                                  "cuda", 2, "CUDA", "An NVIDIA GPU (fails when none is usable)",
                                  nullptr),
      "auto", G_PARAM_READWRITE);
  gimp_procedure_add_string_argument(
      procedure, "class", "_Class",
      "Class-conditional models (the bundled one: one class per GIMP pattern it learned): the "
      "class to make, by name or number. Empty: Generate draws it from the seed; Denoise and "
      "Image to image take the class that fits the layer best",
      "", G_PARAM_READWRITE);
  gimp_procedure_add_double_argument(
      procedure, "guidance", "_Guidance",
      "Class-conditional models: guidance against the mean class, which strengthens detail and "
      "contrast at the cost of one more network call per guided step. 1: off; up to 20. 0: the "
      "model's default (the bundled model: 2.5 on the steps below timestep 300 for Generate, "
      "off for Denoise and Image to image)",
      0.0, 20.0, 0.0, G_PARAM_READWRITE);
}

void add_output_argument(GimpProcedure* procedure) {
  gimp_procedure_add_choice_argument(
      procedure, "output", "_Output", "new-layer: put the result in a new layer; replace: replace the pixels",
      gimp_choice_new_with_values("new-layer", 0, "New layer", nullptr,
                                  "replace", 1, "Replace pixels", nullptr, nullptr),
      "new-layer", G_PARAM_READWRITE);
  gimp_procedure_add_boolean_argument(
      procedure, "seamless", "_Seamless",
      "Make the result tile seamlessly (circular padding; the area's width and height must be "
      "multiples of the model's downsampling factor)",
      FALSE, G_PARAM_READWRITE);
}

// ---- Running ----------------------------------------------------------------------------------

// One undo step, closed even when writing fails half-way.
class UndoGroup {
 public:
  explicit UndoGroup(GimpImage* image) : image_(image) { gimp_image_undo_group_start(image_); }
  ~UndoGroup() { end(); }
  void end() {
    if (image_) gimp_image_undo_group_end(image_);
    image_ = nullptr;
  }
  UndoGroup(const UndoGroup&) = delete;
  UndoGroup& operator=(const UndoGroup&) = delete;

 private:
  GimpImage* image_;
};

void report_progress(Action action, int done, int total) {
  gimp_progress_set_text(
      (std::string(action_title(action)) + ": step " + std::to_string(done) + " of " + std::to_string(total))
          .c_str());
  gimp_progress_update(total > 0 ? static_cast<double>(done) / total : 0.0);
}

// The search for the best-fitting class (a few seconds on a CPU) comes before the steps.
void report_class_fit(Action action, int done, int total) {
  gimp_progress_set_text((std::string(action_title(action)) + ": finding the best-fitting class (" +
                          std::to_string(done) + " of " + std::to_string(total) + ")")
                             .c_str());
  gimp_progress_update(total > 0 ? static_cast<double>(done) / total : 0.0);
}

std::string basename_of(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  gchar* base = g_path_get_basename(p.c_str());
  std::string s = base;
  g_free(base);
  return s;
}

GimpValueArray* run_action(Action action, GimpProcedure* procedure, GimpRunMode run_mode,
                           GimpImage* image, GimpDrawable** drawables, GimpProcedureConfig* config) {
  auto fail = [&](GimpPDBStatusType status, const std::string& message) {
    GError* error = g_error_new_literal(g_quark_from_static_string("gimp-diffusion"), 0,
                                        one_line(message).c_str());
    return gimp_procedure_new_return_values(procedure, status, error);
  };

  if (gimp_core_object_array_get_length(reinterpret_cast<GObject**>(drawables)) != 1) {
    return fail(GIMP_PDB_CALLING_ERROR,
                std::string(gimp_procedure_get_name(procedure)) + " works on exactly one drawable");
  }
  GimpDrawable* drawable = drawables[0];

  if (run_mode == GIMP_RUN_INTERACTIVE) {
    gimp_ui_init("gimp-diffusion");
    auto describe = [](const std::string& model, const std::string& device) -> std::string {
      try {
        const std::string path = gd::plugin::resolve_model_path(model);
        std::string text = gd::plugin::describe_model(path, device).text() +
                           (model.empty() ? "\n(default model: " + path + ")" : std::string());
        const std::vector<std::string> installed = gd::plugin::user_model_names();
        if (!installed.empty()) {
          text += "\nInstalled models (type a name):";
          for (const std::string& name : installed) text += " " + name;
        }
        return text;
      } catch (const std::exception& e) {
        return "Model problem: " + one_line(e.what());
      }
    };
    const std::string title = std::string(action_title(action));
    if (!gd::ui::run_procedure_dialog(procedure, config, title.c_str(), describe)) {
      return gimp_procedure_new_return_values(procedure, GIMP_PDB_CANCEL, nullptr);
    }
  } else {
    gegl_init(nullptr, nullptr);
  }

  gd::plugin::EngineSettings settings;
  std::string model_arg = get_string(config, "model");
  settings.sampler = get_string(config, "sampler");
  if (settings.sampler == "default") settings.sampler.clear();
  settings.device = get_string(config, "device");
  settings.texture_class = get_string(config, "class");
  g_object_get(config, "guidance", &settings.guidance, nullptr);
  int steps = 0, seed = -1;
  double eta = 0.0;
  g_object_get(config, "steps", &steps, "eta", &eta, "seed", &seed, nullptr);
  settings.steps = steps;
  settings.eta = eta;
  if (seed < 0) seed = g_random_int_range(0, G_MAXINT);
  settings.seed = static_cast<std::uint64_t>(seed);
  const bool new_layer = has_property(config, "output") && get_string(config, "output") == "new-layer";
  if (has_property(config, "seamless")) {
    gboolean seamless = FALSE;
    g_object_get(config, "seamless", &seamless, nullptr);
    settings.seamless = seamless;
  }

  gd::plugin::Region region;
  if (!gimp_drawable_mask_intersect(drawable, &region.x, &region.y, &region.width, &region.height)) {
    return fail(GIMP_PDB_EXECUTION_ERROR, "the selection does not touch the drawable: nothing to do");
  }
  if (static_cast<std::int64_t>(region.width) * region.height > gd::plugin::max_pixels()) {
    return fail(GIMP_PDB_EXECUTION_ERROR,
                "the area to process (" + std::to_string(region.width) + "x" + std::to_string(region.height) +
                    ") is too large: the limit is " + std::to_string(gd::plugin::max_pixels()) +
                    " pixels per run; select a smaller area");
  }

  GimpValueArray* values = nullptr;
  try {
    const std::string model_path = gd::plugin::resolve_model_path(model_arg);
    gimp_progress_init((std::string(action_title(action)) + ": loading model").c_str());
    gd::plugin::Engine engine(model_path, settings.device);
    const std::string sampler = engine.sampler_for(settings);
    const int total_steps = engine.steps_for(settings);
    // Checked before any pixel is read: a bad class name fails here. Empty when unconditional.
    const std::string chosen_class = engine.class_for(settings, action != Action::Generate);
    std::string class_note = chosen_class.empty() ? "" : ", " + chosen_class;
    const std::string guidance = engine.guidance_for(settings, action == Action::Generate);
    const std::string guidance_note = guidance.empty() ? "" : ", " + guidance;
    gimp_progress_set_text((std::string(action_title(action)) + ": " + sampler + ", " +
                            std::to_string(total_steps) + " steps, seed " + std::to_string(seed) + class_note +
                            guidance_note)
                               .c_str());
    auto progress = [action](int done, int total) { report_progress(action, done, total); };
    auto fit_progress = [action](int done, int total) { report_class_fit(action, done, total); };

    gd::plugin::PixelBuffer result;
    double sigma_used = 0.0;
    std::string fitted_class;  // img2img and denoise on class-conditional models: the class used
    double level = 0.0;
    const bool rgb = gimp_drawable_is_rgb(drawable);
    if (action == Action::Generate) {
      result = engine.generate(settings, region.width, region.height, rgb ? 3 : 1, progress);
    } else {
      gd::plugin::PixelBuffer input = gd::plugin::read_region(drawable, region);
      if (action == Action::Img2img) {
        double strength = 0.6;
        g_object_get(config, "strength", &strength, nullptr);
        result = engine.img2img(settings, input, strength, progress, &fitted_class, fit_progress);
      } else {
        g_object_get(config, "noise-level", &level, nullptr);
        result = engine.denoise(settings, input, level > 0 ? std::optional<double>(level) : std::nullopt,
                                progress, &sigma_used, &fitted_class, fit_progress);
      }
    }
    gimp_progress_update(1.0);
    // The class actually used (the best fit is known only now) goes into the layer name.
    if (!fitted_class.empty()) class_note = ", " + fitted_class;

    // The result is complete: write it, as one undo step.
    GimpLayer* out_layer = nullptr;
    const std::string tag = basename_of(model_path) + ", " + sampler + ", " + std::to_string(total_steps) +
                            " steps, seed " + std::to_string(seed) + class_note + guidance_note;
    UndoGroup undo(image);
    if (action == Action::Generate && new_layer) {
      const bool image_rgb = gimp_image_get_base_type(image) == GIMP_RGB;
      const std::string name = "Generated (" + tag + ")";
      out_layer = gimp_layer_new(image, name.c_str(), region.width, region.height,
                                 image_rgb ? GIMP_RGBA_IMAGE : GIMP_GRAYA_IMAGE, 100.0,
                                 gimp_image_get_default_new_layer_mode(image));
      GimpLayer* parent = nullptr;
      int position = -1;
      if (GIMP_IS_LAYER(drawable) && !GIMP_IS_LAYER_MASK(drawable)) {
        parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(drawable)));
        position = gimp_image_get_item_position(image, GIMP_ITEM(drawable));
      }
      gimp_image_insert_layer(image, out_layer, parent, position);
      int ox = 0, oy = 0;
      gimp_drawable_get_offsets(drawable, &ox, &oy);
      gimp_layer_set_offsets(out_layer, ox + region.x, oy + region.y);
      // Opaque alpha for the new layer.
      gd::plugin::PixelBuffer rgba;
      rgba.width = result.width;
      rgba.height = result.height;
      rgba.channels = result.channels + 1;
      rgba.has_alpha = true;
      rgba.pixels.reserve(static_cast<std::size_t>(rgba.width) * rgba.height * rgba.channels);
      for (std::size_t i = 0; i < result.pixels.size(); i += result.channels) {
        for (int c = 0; c < result.channels; ++c) rgba.pixels.push_back(result.pixels[i + c]);
        rgba.pixels.push_back(1.0f);
      }
      gd::plugin::Region whole{0, 0, region.width, region.height};
      gd::plugin::write_region_direct(GIMP_DRAWABLE(out_layer), whole, rgba);
    } else {
      GimpDrawable* target = drawable;
      if (action == Action::Generate && gimp_drawable_has_alpha(drawable)) {
        // Generated pixels replace the area opaque.
        gd::plugin::PixelBuffer with_alpha = result;
        with_alpha.channels = result.channels + 1;
        with_alpha.has_alpha = true;
        with_alpha.pixels.clear();
        for (std::size_t i = 0; i < result.pixels.size(); i += result.channels) {
          for (int c = 0; c < result.channels; ++c) with_alpha.pixels.push_back(result.pixels[i + c]);
          with_alpha.pixels.push_back(1.0f);
        }
        result = std::move(with_alpha);
      }
      if (action == Action::Img2img && new_layer && GIMP_IS_LAYER(drawable) && !GIMP_IS_LAYER_MASK(drawable)) {
        // A copy of the layer above it, changed inside the selection only.
        out_layer = gimp_layer_copy(GIMP_LAYER(drawable));
        gimp_item_set_name(GIMP_ITEM(out_layer), ("Image to Image (" + tag + ")").c_str());
        GimpLayer* parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(drawable)));
        gimp_image_insert_layer(image, out_layer, parent,
                                gimp_image_get_item_position(image, GIMP_ITEM(drawable)));
        target = GIMP_DRAWABLE(out_layer);
      } else if (GIMP_IS_LAYER(drawable) && !GIMP_IS_LAYER_MASK(drawable)) {
        out_layer = GIMP_LAYER(drawable);
      }
      gd::plugin::write_region_masked(target, region, result);
    }
    undo.end();
    gimp_progress_end();
    if (run_mode == GIMP_RUN_INTERACTIVE) gimp_displays_flush();

    if (run_mode == GIMP_RUN_INTERACTIVE && action == Action::Denoise) {
      gimp_message((std::string("Denoise Layer: noise level ") + std::to_string(sigma_used) +
                    (level > 0 ? "" : " (estimated)") + ", seed " + std::to_string(seed))
                       .c_str());
    }
    values = gimp_procedure_new_return_values(procedure, GIMP_PDB_SUCCESS, nullptr);
    GIMP_VALUES_SET_INT(values, 1, seed);
    if (action == Action::Denoise) {
      GIMP_VALUES_SET_DOUBLE(values, 2, sigma_used);
    } else {
      GIMP_VALUES_SET_LAYER(values, 2, out_layer);
    }
  } catch (const std::exception& e) {
    gimp_progress_end();
    return fail(GIMP_PDB_EXECUTION_ERROR, std::string(action_title(action)) + ": " + e.what());
  } catch (...) {
    gimp_progress_end();
    return fail(GIMP_PDB_EXECUTION_ERROR, std::string(action_title(action)) + ": unexpected failure");
  }
  return values;
}

GimpValueArray* run_generate(GimpProcedure* p, GimpRunMode m, GimpImage* i, GimpDrawable** d,
                             GimpProcedureConfig* c, gpointer) {
  return run_action(Action::Generate, p, m, i, d, c);
}
GimpValueArray* run_img2img(GimpProcedure* p, GimpRunMode m, GimpImage* i, GimpDrawable** d,
                            GimpProcedureConfig* c, gpointer) {
  return run_action(Action::Img2img, p, m, i, d, c);
}
GimpValueArray* run_denoise(GimpProcedure* p, GimpRunMode m, GimpImage* i, GimpDrawable** d,
                            GimpProcedureConfig* c, gpointer) {
  return run_action(Action::Denoise, p, m, i, d, c);
}

void set_common_metadata(GimpProcedure* procedure, const char* label, const char* blurb, const char* help) {
  gimp_procedure_set_image_types(procedure, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label(procedure, label);
  gimp_procedure_add_menu_path(procedure, kMenuPath);
  gimp_procedure_set_documentation(procedure, blurb, help, nullptr);
  gimp_procedure_set_attribution(procedure, "gimp-diffusion authors", "gimp-diffusion authors", "2025");
}

void add_seed_return(GimpProcedure* procedure) {
  gimp_procedure_add_int_return_value(procedure, "seed", "Seed", "The seed used", 0, G_MAXINT, 0,
                                      G_PARAM_READWRITE);
}

GimpProcedure* create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  GimpProcedure* procedure = nullptr;
  if (g_strcmp0(name, kGenerate) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_generate, nullptr, nullptr);
    set_common_metadata(
        procedure, "_Generate...", "Generate an image with a pixel-space diffusion model",
        "Samples a new image the size of the selection bounds of the drawable (the whole drawable "
        "without a selection) and puts it in a new layer placed there, named with the model, sampler, "
        "steps and seed, or replaces the pixels inside the selection. Any size works: the model "
        "pads and crops to its downsampling factor.");
    add_common_arguments(procedure);
    add_output_argument(procedure);
    add_seed_return(procedure);
    gimp_procedure_add_layer_return_value(procedure, "layer", "Layer",
                                          "The layer holding the result (the new one, or the drawable)",
                                          TRUE, G_PARAM_READWRITE);
  } else if (g_strcmp0(name, kImg2img) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_img2img, nullptr, nullptr);
    set_common_metadata(
        procedure, "_Image to Image...", "Re-imagine the selection with a pixel-space diffusion model",
        "Adds noise to the selected area up to 'strength' and runs the diffusion model back from "
        "there (diffusers' img2img). Low strength keeps the picture, high strength invents more. "
        "The selection mask and its feathering are honoured; alpha is kept.");
    add_common_arguments(procedure);
    gimp_procedure_add_double_argument(procedure, "strength", "St_rength",
                                       "How much to change, in (0, 1]: the fraction of the noise "
                                       "schedule re-added before sampling back",
                                       0.01, 1.0, 0.6, G_PARAM_READWRITE);
    add_output_argument(procedure);
    add_seed_return(procedure);
    gimp_procedure_add_layer_return_value(procedure, "layer", "Layer",
                                          "The layer holding the result (the new copy, or the drawable)",
                                          TRUE, G_PARAM_READWRITE);
  } else if (g_strcmp0(name, kDenoise) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_denoise, nullptr, nullptr);
    set_common_metadata(
        procedure, "_Denoise Layer...", "Remove Gaussian noise with a pixel-space diffusion model",
        "Treats the selected area as a noisy sample: the noise level is matched to a timestep of "
        "the model's noise schedule and the reverse process runs from there. The selection mask "
        "and its feathering are honoured; alpha is kept.");
    add_common_arguments(procedure);
    gimp_procedure_add_double_argument(procedure, "noise-level", "_Noise level",
                                       "Standard deviation of the noise in 0-1 units (0.04 is about "
                                       "10 levels of 255); 0: estimate it from the image",
                                       0.0, 1.0, 0.0, G_PARAM_READWRITE);
    add_seed_return(procedure);
    gimp_procedure_add_double_return_value(procedure, "noise-level-used", "Noise level used",
                                           "The noise level denoised (given or estimated)", 0.0, 1.0,
                                           0.0, G_PARAM_READWRITE);
  }
  return procedure;
}

}  // namespace

// ---- The plug-in object -----------------------------------------------------------------------

#define GD_TYPE_PLUG_IN (gd_plug_in_get_type())
G_DECLARE_FINAL_TYPE(GdPlugIn, gd_plug_in, GD, PLUG_IN, GimpPlugIn)

struct _GdPlugIn {
  GimpPlugIn parent_instance;
};

G_DEFINE_TYPE(GdPlugIn, gd_plug_in, GIMP_TYPE_PLUG_IN)

static GList* gd_plug_in_query_procedures(GimpPlugIn*) {
  GList* list = nullptr;
  list = g_list_append(list, g_strdup(kGenerate));
  list = g_list_append(list, g_strdup(kImg2img));
  list = g_list_append(list, g_strdup(kDenoise));
  return list;
}

static GimpProcedure* gd_plug_in_create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  try {
    return create_procedure(plug_in, name);
  } catch (const std::exception& e) {
    g_printerr("gimp-diffusion: cannot create %s: %s\n", name, one_line(e.what()).c_str());
    return nullptr;
  }
}

static gboolean gd_plug_in_set_i18n(GimpPlugIn*, const gchar*, gchar**, gchar**) { return FALSE; }

static void gd_plug_in_class_init(GdPlugInClass* klass) {
  GimpPlugInClass* plug_in_class = GIMP_PLUG_IN_CLASS(klass);
  plug_in_class->query_procedures = gd_plug_in_query_procedures;
  plug_in_class->create_procedure = gd_plug_in_create_procedure;
  plug_in_class->set_i18n = gd_plug_in_set_i18n;
}

static void gd_plug_in_init(GdPlugIn*) {}

GIMP_MAIN(GD_TYPE_PLUG_IN)
