// The PDB procedures: names, arguments, menu entries, return values. Running them is
// plugin/run_action.cpp's business.
#include "plugin/procedures.h"

#include <string>

#include "plugin/run_action.h"

namespace gd::plugin {

namespace {

constexpr const char* kMenuPath = "<Image>/Filters/Diffusion";

GimpValueArray* run_procedure(GimpProcedure* procedure, GimpRunMode mode, GimpImage* image,
                              GimpDrawable** drawables, GimpProcedureConfig* config,
                              gpointer action) {
  return run_action(static_cast<Action>(GPOINTER_TO_INT(action)), procedure, mode, image, drawables,
                    config);
}

// ---- Arguments --------------------------------------------------------------------------------

// sampler: the default choice (inpainting needs one that re-noises: ddpm or ddim).
void add_common_arguments(GimpProcedure* procedure, const char* sampler = "dpmpp_2m") {
  gimp_procedure_add_string_argument(
      procedure, "model", "_Model",
      "Model folder (diffusers UNet2DModel or pipeline, TorchScript folder) or checkpoint file "
      "(denoising-diffusion-pytorch model-N.pt), or the name of a model installed in "
      "<GIMP user folder>/diffusion-models. Empty: $GIMP_DIFFUSION_MODEL, else the bundled "
      "texture model (gimp-patterns)",
      "", G_PARAM_READWRITE);

  GimpChoice* samplers = gimp_choice_new();
  gimp_choice_add(samplers, "default", 0, "Model's own",
                  "The sampler the model was published with");
  int id = 1;
  for (const std::string& name : gd::sampler_names()) {
    gimp_choice_add(samplers, name.c_str(), id++, name.c_str(), nullptr);
  }
  gimp_procedure_add_choice_argument(
      procedure, "sampler", "_Sampler",
      "Sampler: default (the model's own scheduler), ddpm, ddim, dpmpp_2m, euler or euler_a",
      samplers, sampler, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(
      procedure, "steps", "S_teps",
      "Sampling steps; 0: the sampler's default (20 for the solvers, 50 for ddim, the full chain "
      "for ddpm)",
      0, 10000, 0, G_PARAM_READWRITE);
  gimp_procedure_add_double_argument(procedure, "eta", "_Eta",
                                     "DDIM stochasticity: 0 deterministic, 1 DDPM-like (ddim only)",
                                     0.0, 1.0, 0.0, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(procedure, "seed", "See_d",
                                  "Random seed; -1: a random one (the seed used is returned)", -1,
                                  G_MAXINT, -1, G_PARAM_READWRITE);
  gimp_procedure_add_choice_argument(
      procedure, "device", "_Device", "Where the model runs: auto (CUDA when present), cpu or cuda",
      gimp_choice_new_with_values("auto", 0, "Auto", "CUDA when present, else CPU", "cpu", 1, "CPU",
                                  nullptr, "cuda", 2, "CUDA",
                                  "An NVIDIA GPU (fails when none is usable)", nullptr),
      "auto", G_PARAM_READWRITE);
  gimp_procedure_add_choice_argument(
      procedure, "precision", "_Precision",
      "The network's number format (sampling stays 32-bit): auto (bf16 where the CPU or GPU runs "
      "it natively, else fp32), fp32 (the reference's exact numbers), bf16 or fp16 (CUDA only)",
      gimp_choice_new_with_values("auto", 0, "Auto", "bf16 where it runs natively, else fp32",
                                  "fp32", 1, "fp32", "Exact: the reference's own precision", "bf16",
                                  2, "bf16",
                                  "Faster, close to fp32 (AVX-512 bf16 CPUs, recent GPUs)", "fp16",
                                  3, "fp16", "CUDA only", nullptr),
      "auto", G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(
      procedure, "threads", "CPU _threads",
      "CPU threads; 0: automatic (all cores on an idle machine, fewer when other programs keep "
      "cores busy)",
      0, 1024, 0, G_PARAM_READWRITE);
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

void add_output_argument(GimpProcedure* procedure, bool seamless = true) {
  gimp_procedure_add_choice_argument(
      procedure, "output", "_Output",
      "new-layer: put the result in a new layer; replace: replace the pixels",
      gimp_choice_new_with_values("new-layer", 0, "New layer", nullptr, "replace", 1,
                                  "Replace pixels", nullptr, nullptr),
      "new-layer", G_PARAM_READWRITE);
  if (!seamless) return;
  gimp_procedure_add_boolean_argument(
      procedure, "seamless", "_Seamless",
      "Make the result tile seamlessly (circular padding; the area's width and height must be "
      "multiples of the model's downsampling factor)",
      FALSE, G_PARAM_READWRITE);
}

// Last in every procedure, so that scripts passing arguments by position still work.
void add_memory_arguments(GimpProcedure* procedure) {
  gimp_procedure_add_int_argument(
      procedure, "tile-size", "T_ile size",
      "The largest window side in pixels: the network sees the area in overlapping windows fused "
      "without seams, so any size runs in bounded memory. 0: automatic (the whole area when it "
      "fits the memory budget, else the largest window that does); -1: never tile",
      -1, 65536, 0, G_PARAM_READWRITE);
  gimp_procedure_add_int_argument(procedure, "tile-overlap", "Tile o_verlap",
                                  "Pixels each window shares with its neighbours; -1: automatic "
                                  "(64, at most a quarter of the window)",
                                  -1, 4096, -1, G_PARAM_READWRITE);
  gimp_procedure_add_string_argument(
      procedure, "max-memory", "Memory _budget",
      "The run's memory budget, like 4G or 512M; a run that cannot fit it even in the smallest "
      "windows is refused before it starts. Empty: 80% of the memory available",
      "", G_PARAM_READWRITE);
}

// Inpaint and Make Seamless: RePaint's resampling (core/inpaint.h).
void add_resample_argument(GimpProcedure* procedure) {
  gimp_procedure_add_int_argument(
      procedure, "resample", "Res_ample",
      "RePaint's resamplings every 10 steps: more blend the new pixels better into the old, "
      "each costing about two more network calls per step. 1: none; 0: the default (3)",
      0, 20, 0, G_PARAM_READWRITE);
}

void set_common_metadata(GimpProcedure* procedure, const char* label, const char* blurb,
                         const char* help) {
  gimp_procedure_set_image_types(procedure, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(procedure, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  gimp_procedure_set_menu_label(procedure, label);
  gimp_procedure_add_menu_path(procedure, kMenuPath);
  gimp_procedure_set_documentation(procedure, blurb, help, nullptr);
  gimp_procedure_set_attribution(procedure, "gimp-diffusion authors", "gimp-diffusion authors",
                                 "2025");
}

void add_seed_return(GimpProcedure* procedure) {
  gimp_procedure_add_int_return_value(procedure, "seed", "Seed", "The seed used", 0, G_MAXINT, 0,
                                      G_PARAM_READWRITE);
}

// The actions that rewrite an existing layer (Image to image, Fill Selection, Make Seamless).
void add_layer_return(GimpProcedure* procedure) {
  gimp_procedure_add_layer_return_value(
      procedure, "layer", "Layer", "The layer holding the result (the new copy, or the drawable)",
      TRUE, G_PARAM_READWRITE);
}

}  // namespace

GimpProcedure* create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  GimpProcedure* procedure = nullptr;
  if (g_strcmp0(name, kGenerate) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_procedure,
                                         GINT_TO_POINTER(Action::Generate), nullptr);
    set_common_metadata(
        procedure, "_Generate...", "Generate an image with a pixel-space diffusion model",
        "Samples a new image the size of the selection bounds of the drawable (the whole drawable "
        "without a selection) and puts it in a new layer placed there, named with the model, "
        "sampler, "
        "steps and seed, or replaces the pixels inside the selection. Any size works: the model "
        "pads and crops to its downsampling factor.");
    add_common_arguments(procedure);
    add_output_argument(procedure);
    add_memory_arguments(procedure);
    add_seed_return(procedure);
    gimp_procedure_add_layer_return_value(
        procedure, "layer", "Layer", "The layer holding the result (the new one, or the drawable)",
        TRUE, G_PARAM_READWRITE);
  } else if (g_strcmp0(name, kImg2img) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_procedure,
                                         GINT_TO_POINTER(Action::Img2img), nullptr);
    set_common_metadata(
        procedure, "_Image to Image...",
        "Re-imagine the selection with a pixel-space diffusion model",
        "Adds noise to the selected area up to 'strength' and runs the diffusion model back from "
        "there (diffusers' img2img). Low strength keeps the picture, high strength invents more. "
        "The selection mask and its feathering are honoured; alpha is kept.");
    add_common_arguments(procedure);
    gimp_procedure_add_double_argument(procedure, "strength", "St_rength",
                                       "How much to change, in (0, 1]: the fraction of the noise "
                                       "schedule re-added before sampling back",
                                       0.01, 1.0, 0.6, G_PARAM_READWRITE);
    add_output_argument(procedure);
    add_memory_arguments(procedure);
    add_seed_return(procedure);
    add_layer_return(procedure);
  } else if (g_strcmp0(name, kDenoise) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_procedure,
                                         GINT_TO_POINTER(Action::Denoise), nullptr);
    set_common_metadata(
        procedure, "_Denoise Layer...", "Remove Gaussian noise with a pixel-space diffusion model",
        "Treats the selected area as a noisy sample: the noise level is matched to a timestep of "
        "the model's noise schedule and the reverse process runs from there. The selection mask "
        "and its feathering are honoured; alpha is kept.");
    add_common_arguments(procedure);
    gimp_procedure_add_double_argument(
        procedure, "noise-level", "_Noise level",
        "Standard deviation of the noise in 0-1 units (0.04 is about "
        "10 levels of 255); 0: estimate it from the image",
        0.0, 1.0, 0.0, G_PARAM_READWRITE);
    add_memory_arguments(procedure);
    add_seed_return(procedure);
    gimp_procedure_add_double_return_value(procedure, "noise-level-used", "Noise level used",
                                           "The noise level denoised (given or estimated)", 0.0,
                                           1.0, 0.0, G_PARAM_READWRITE);
  } else if (g_strcmp0(name, kInpaint) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_procedure,
                                         GINT_TO_POINTER(Action::Inpaint), nullptr);
    set_common_metadata(
        procedure, "_Fill Selection...",
        "Regenerate the selection so that it continues its surroundings",
        "Fills the selected pixels with the diffusion model, conditioned on the unselected ones "
        "(RePaint): the model sees the selection's bounds plus a context margin, so the cost "
        "follows the selection, not the layer. Unselected pixels stay exactly as they were; a "
        "feathered selection blends. Samplers: ddpm or ddim (the others cannot re-noise).");
    add_common_arguments(procedure, "ddpm");
    add_resample_argument(procedure);
    gimp_procedure_add_int_argument(
        procedure, "context-margin", "Conte_xt margin",
        "Pixels around the selection's bounds the model sees; -1: half the model's native size", -1,
        65536, -1, G_PARAM_READWRITE);
    add_output_argument(procedure);
    add_memory_arguments(procedure);
    add_seed_return(procedure);
    add_layer_return(procedure);
  } else if (g_strcmp0(name, kMakeSeamless) == 0) {
    procedure = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_procedure,
                                         GINT_TO_POINTER(Action::MakeSeamless), nullptr);
    set_common_metadata(
        procedure, "_Make Seamless...", "Make a texture tile with a pixel-space diffusion model",
        "Offsets the area (the selection bounds, or the whole layer) by half its size, wrapping, "
        "regenerates a band across the seams now in its middle with circular padding, and "
        "offsets it back: the result tiles. Outside the band the pixels stay exactly as they "
        "were. Any size: an area off the model's downsampling grid is stretched for the fill "
        "and back.");
    add_common_arguments(procedure, "ddpm");
    add_resample_argument(procedure);
    gimp_procedure_add_int_argument(
        procedure, "band", "Band _width",
        "Width in pixels of the band regenerated across each seam, at most half the smaller "
        "side; 0: a quarter of the smaller side",
        0, 65536, 0, G_PARAM_READWRITE);
    add_output_argument(procedure, /*seamless=*/false);
    add_memory_arguments(procedure);
    add_seed_return(procedure);
    add_layer_return(procedure);
  }
  return procedure;
}

const char* action_title(Action action) {
  switch (action) {
    case Action::Generate: return "Generate";
    case Action::Img2img: return "Image to Image";
    case Action::Denoise: return "Denoise Layer";
    case Action::Inpaint: return "Fill Selection";
    case Action::MakeSeamless: return "Make Seamless";
  }
  return "";
}

}  // namespace gd::plugin
