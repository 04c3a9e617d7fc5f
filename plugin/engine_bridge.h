// The plug-in's only door to the engine: plain C++ types in, plain C++ types out.
//
// Nothing here includes LibTorch or GIMP: the GIMP glue (plugin.cpp, procedures.cpp) and the
// dialog (ui/) see images as interleaved float buffers, and the engine as a few functions.
// engine_bridge.cpp is the one plug-in file that includes engine headers.
//
// Every function throws std::exception (gd::Error underneath) with a one-line message on any
// problem; the PDB procedures catch them at their boundary.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace gd::plugin {

// Interleaved row-major pixels: pixels[(y * width + x) * channels + c], values in [0, 1],
// perceptual (sRGB-encoded) as babl's "R'G'B'A float" / "Y'A float" give them.
// channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; with alpha, it is the last channel.
struct PixelBuffer {
  int width = 0;
  int height = 0;
  int channels = 0;
  bool has_alpha = false;
  std::vector<float> pixels;
};

// Called after each sampling step with (steps done, total steps).
using ProgressFn = std::function<void(int done, int total)>;

// What the user chose, as the PDB arguments carry it.
struct EngineSettings {
  std::string model_path;   // resolved: never empty here
  std::string sampler;      // empty: the model's own default sampler
  int steps = 0;            // 0: the sampler's default step count
  double eta = 0.0;
  std::uint64_t seed = 0;   // resolved: never "random" here
  std::string device = "auto";  // "auto", "cpu" or "cuda"
  bool seamless = false;        // tileable result (generate, img2img)
  std::string texture_class;    // class-conditional models: a class name or number; empty:
                                // drawn from the seed (generate) or the best fit (the others)
  double guidance = 0.0;         // class-conditional models: guidance against the mean class,
                                // 1 (off) to 20; 0: the default (the model's for generate, off
                                // for the others)
};

// A short description of a model, for the dialog label and the messages.
struct ModelSummary {
  std::string architecture;   // "UNet2DModel"
  std::string format;         // "diffusers", ...
  int channels = 3;
  int native_width = 0;       // 0 when the format does not say
  int native_height = 0;
  int downsampling_factor = 1;
  std::int64_t parameter_count = 0;
  std::string default_sampler;
  std::string device;         // the device "auto"/"cpu"/"cuda" resolves to: "cpu", "cuda:0"
  std::int64_t num_classes = 0;  // class-conditional models: how many classes
  std::string generate_guidance;  // the model's default guidance for Generate ("guidance 2.5
                                  // below timestep 300"), empty when it has none
  std::string text() const;   // one line for a label
};

// The sampler names the engine knows ("ddpm", "ddim", ...).
std::vector<std::string> sampler_names();

// Largest width * height the engine accepts per run.
std::int64_t max_pixels();

// True when a CUDA device is usable in this build on this machine.
bool cuda_available();

// A model loaded once, used for one run.
class Engine {
 public:
  // Loads and validates the model on the chosen device (throws for a missing or corrupt model,
  // or device "cuda" without CUDA).
  Engine(const std::string& model_path, const std::string& device);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelSummary& summary() const;
  // The sampler and step count a run with these settings will use.
  std::string sampler_for(const EngineSettings& settings) const;
  int steps_for(const EngineSettings& settings) const;
  // "class 3 (bricks)" for the class a run with these settings makes (of a batch of one), or
  // "best-fitting class" for a run from an image (from_image) without one; empty for
  // unconditional models.
  std::string class_for(const EngineSettings& settings, bool from_image) const;
  // "guidance 2 below timestep 500" for the guidance a run with these settings uses (generating:
  // Generate, whose default is the model's), or empty when it uses none. Throws for a value out
  // of range or guidance asked of a model without classes.
  std::string guidance_for(const EngineSettings& settings, bool generating) const;

  // A new image of width x height with `channels` colour channels (1 or 3; no alpha).
  PixelBuffer generate(const EngineSettings& settings, int width, int height, int channels,
                       const ProgressFn& progress) const;
  // The colour channels of `image` re-noised to `strength` in (0, 1] and sampled back;
  // alpha is copied through untouched. *class_used (if given) receives "class 3 (bricks)" for
  // class-conditional models: the given class or the best fit for the image. fit_progress (if
  // given) follows the search for the best fit, which comes before the sampling steps.
  PixelBuffer img2img(const EngineSettings& settings, const PixelBuffer& image, double strength,
                      const ProgressFn& progress, std::string* class_used = nullptr,
                      const ProgressFn& fit_progress = nullptr) const;
  // Denoises `image` assuming Gaussian noise of standard deviation `noise_level` (0-1 units;
  // empty: estimated). Alpha is copied through. *sigma_used receives the level used and
  // *class_used (if given) the class and fit_progress the search for it, as for img2img.
  PixelBuffer denoise(const EngineSettings& settings, const PixelBuffer& image,
                      std::optional<double> noise_level, const ProgressFn& progress,
                      double* sigma_used, std::string* class_used = nullptr,
                      const ProgressFn& fit_progress = nullptr) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Loads the model only to describe it (for the dialog). Throws like Engine's constructor.
ModelSummary describe_model(const std::string& model_path, const std::string& device);

}  // namespace gd::plugin
