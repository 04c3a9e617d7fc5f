// The three actions: generate, img2img and denoise. Images are [N, C, H, W] float32 in [0, 1]
// (colour channels only: callers keep alpha aside and put it back untouched).
//
//   PipelineModel model = ...;               // network callback + schedule + shape facts
//   GenerateOptions options;                 // sampler, steps, seed, size, batch
//   options.on_step = [](int done, int total) { ...; return true; };
//   at::Tensor images = generate(model, options);
//
// Random numbers: one CPU generator seeded with `seed` (like torch.Generator().manual_seed), the
// initial noise drawn first with the full [N, C, H, W] shape, as the reference pipelines do, so
// sizes that are multiples of the downsampling factor give exactly the reference result.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/conditioning.h"
#include "core/guidance.h"
#include "core/sampler.h"
#include "core/schedule.h"
#include "core/tiling.h"

namespace gd::core {

// What the pipelines need to know about a loaded model. Nothing in it changes during a run:
// each call's classes and padding travel in its Conditioning.
struct PipelineModel {
  NetworkFn network;
  ScheduleConfig schedule;
  int channels = 3;             // image channels the network denoises
  int downsampling_factor = 1;  // sizes are padded up to multiples of this
  int native_width = 0;         // the training size, used when no size is given (0: unknown)
  int native_height = 0;
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::kFloat;  // network dtype; sampling maths stays float32
  // Whether the network can pad circularly (Padding::Circular): seamless textures.
  bool circular_padding = false;
  // Class-conditional models: the number of classes (0: unconditional).
  int num_classes = 0;
  // Class-conditional models: the guidance Generate uses by default (the model folder's
  // guidance.json; off for most models). img2img and denoise use none unless asked.
  Guidance generate_guidance;
};

struct RunOptions {
  std::string sampler;  // empty: the model's own default (default_sampler)
  int steps = 0;        // 0: the default for the sampler (default_steps)
  double eta = 0.0;     // DDIM only
  std::uint64_t seed = 0;
  StepFn on_step;  // progress and cancel; may be empty
  // Seamless (tileable) output: the network pads circularly, so left meets right and top meets
  // bottom. Needs width and height that are multiples of the downsampling factor, since a
  // cropped result would no longer tile.
  bool seamless = false;
  // Class-conditional models: the class of every image, or -1 for the default: generate draws
  // one per image from the seed (run_classes); img2img and denoise take the class that fits
  // each input image best (best_fitting_classes in core/class_fit.h). Ignored by unconditional
  // models unless set, which is an error.
  std::int64_t class_label = -1;
  // Class-conditional models: called once per run with the class of each image, as soon as
  // they are known. May be empty.
  std::function<void(const std::vector<std::int64_t>&)> on_classes;
  // The best-fitting class search (img2img and denoise without a class): called after each of
  // its network calls with (calls done, calls in all); returning false cancels. May be empty.
  StepFn on_class_fit;
  // Class-conditional models: guidance against the mean class (core/guidance.h). 0: the
  // default (the model's generate_guidance for generate, off for img2img and denoise); 1: off;
  // otherwise a scale up to kMaxGuidanceScale.
  double guidance = 0.0;
  // Guided steps are those with a timestep below this. 0: the default (the model's for
  // generate, every step otherwise). An error for an unguided run.
  int guidance_below = 0;
  // Guided steps evaluate the class and the mean class in one network call of 2N up to this
  // many pixels per half (N * H * W), in two calls of N above (core/guidance.h). 0: always two.
  std::int64_t max_batched_guidance_pixels = kMaxBatchedGuidancePixels;
  // Windowed evaluation (core/tiling.h): the network sees windows of at most tile_height x
  // tile_width pixels of the canvas (0: the whole canvas along that axis), overlapping by
  // tile_overlap, windows_per_call of them batched in one call. The defaults: no tiling.
  std::int64_t tile_height = 0;
  std::int64_t tile_width = 0;
  std::int64_t tile_overlap = 0;
  std::int64_t windows_per_call = 1;
  // Tiled runs: called after each network call with (windows done, windows in the canvas) of
  // the current evaluation; returning false cancels between windows. May be empty.
  StepFn on_window;
};

struct GenerateOptions : RunOptions {
  int width = 0;  // 0: the model's native size
  int height = 0;
  int batch = 1;
};

// The model's default sampler: its scheduler class for diffusers configs ("ddpm" for
// DDPMScheduler, ...), the package's full DDPM chain for denoising-diffusion-pytorch.
std::string default_sampler(const ScheduleConfig& schedule);
// The reference pipelines' default step counts: the full chain for ddpm, 50 for ddim, 20 for
// the solvers.
int default_steps(const std::string& sampler, const ScheduleConfig& schedule);

// The class of each of `batch` images in a run: options.class_label for all of them, or, when it
// is -1, one per image drawn uniformly from the seed with std::mt19937_64 (its own generator, so
// the noise stays the reference's). Empty for unconditional models. Throws gd::Error for a class
// out of range or a class given to an unconditional model.
std::vector<std::int64_t> run_classes(int num_classes, const RunOptions& options,
                                      std::int64_t batch);

// The guidance a run will use: the model's default for generate (generating) or none, with the
// options' scale and limit where set. Throws gd::Error for values out of range or guidance
// asked of a model without classes.
Guidance run_guidance(const PipelineModel& model, const RunOptions& options, bool generating);

// [batch, C, height, width] in [0, 1].
at::Tensor generate(const PipelineModel& model, const GenerateOptions& options);

// diffusers' img2img: the schedule is trimmed by strength in (0, 1] (init_timestep =
// int(steps * strength)), noise is added at the first kept timestep, and the rest of the chain
// runs. image: [N, C, H, W] in [0, 1].
at::Tensor img2img(const PipelineModel& model, const at::Tensor& image, double strength,
                   const RunOptions& options);

struct DenoiseResult {
  at::Tensor image;        // [N, C, H, W] in [0, 1]
  double sigma = 0.0;      // the noise level used (0-1 units)
  bool estimated = false;  // true when sigma came from estimate_noise_sigma
  int steps_run = 0;       // 0 when the noise is below the model's smallest noise level
  double start_timestep = 0.0;
};

// Treats the image as a noisy sample: the Gaussian noise level sigma (standard deviation in
// 0-1 units; estimated from the image when absent) is matched to the timestep whose noise-to-
// signal ratio sqrt((1 - alpha_bar) / alpha_bar) equals 2 * sigma (model space is [-1, 1]), the
// image is scaled to that timestep's sample, and the reverse process runs from there to zero.
DenoiseResult denoise(const PipelineModel& model, const at::Tensor& image,
                      std::optional<double> sigma, const RunOptions& options);

// Colour-channel adaptation between an image and a model: a gray image for an RGB model is
// replicated into three channels; an RGB image for a gray model becomes its mean. The result of
// the model is converted back the same way. `note` says what was done (empty if nothing).
at::Tensor to_model_channels(const at::Tensor& image, int model_channels, std::string* note);
at::Tensor from_model_channels(const at::Tensor& image, int image_channels);

// The callback a sampler runs on a canvas x ([N, C, H, W], a multiple of the downsampling
// factor): the network in float32, fused from windows where the options tile, under the run's
// classes (reported through options.on_classes) and padding, guided where the run asks for it.
ModelFn run_network(const PipelineModel& model, const std::vector<std::int64_t>& classes,
                    Padding padding, const Guidance& guidance, const RunOptions& options,
                    const at::Tensor& x);

// Largest width * height * batch the pipelines accept, checked before anything is allocated.
// Tiled runs hold only the sampler's canvas tensors at this size (each 3 GiB of float32 for an
// RGB 16384 x 16384 canvas); whether a run fits the machine is the memory estimate's business
// (core/memory_estimate.h).
constexpr std::int64_t kMaxPixels = 16384LL * 16384LL;

// Throws gd::Error unless width, height and batch are at least 1 and within kMaxPixels.
void check_run_size(std::int64_t width, std::int64_t height, std::int64_t batch);

// The canvas a run of height x width images works on: padded up to multiples of the model's
// downsampling factor.
std::int64_t canvas_side(const PipelineModel& model, std::int64_t side);

// The padding of a run: circular for seamless output. Throws gd::Error when the model cannot
// pad circularly or the size is not a multiple of its downsampling factor (a cropped result
// would no longer tile).
Padding run_padding(const PipelineModel& model, bool seamless, std::int64_t height,
                    std::int64_t width);

}  // namespace gd::core
