// gimp_diffusion.h: the one public door to the engine. The CLI, the plug-in, the benchmark and
// the tests include this header and nothing else of core/ and models/ to run a model.
//
//   gd::Request request;                          // every field has a default
//   request.action = gd::Action::Generate;        // or Img2img / Denoise (with an input image)
//   request.model_path = "my-model";              // empty: gd::default_model_path()
//   request.width = request.height = 512;
//   request.seed = 42;
//   gd::Model model = gd::load_model(request);    // model_path, device, precision, weights
//   gd::Plan plan = gd::check_request(model, request);    // one-line gd::RequestError if bad
//   gd::Callbacks callbacks;
//   callbacks.on_step = [](int done, int total) { return true; };  // false cancels
//   gd::Result result = gd::run(model, request, at::Tensor(), callbacks);
//   // result.image: [N, C, H, W] float32 in [0, 1] on the CPU
//
// Images are [N, C, H, W] float32 in [0, 1], colour channels only: callers keep alpha aside
// and put it back untouched. A gray image on an RGB model (and the reverse) is adapted, and
// the result comes back with the input's channel count.
//
// Threads: a loaded Model is immutable, so any number of threads may run requests on one Model
// at once; each run's state (classes, padding, guidance, random numbers) is its own.
//
// Errors: everything throws gd::Error with a one-line message. A bad value in the request is a
// gd::RequestError, which also names the request field it is about ("steps"), so a front end
// can say it in its own words ("--steps", the "steps" argument).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace gd {

namespace models {
struct ModelInfo;
}

// Inpaint: regenerate the pixels of a mask so that they continue the rest (RePaint);
// MakeSeamless: make a texture tile by inpainting a band across its offset seams.
enum class Action { Generate, Img2img, Denoise, Inpaint, MakeSeamless };

// "generate", "img2img", "denoise", "inpaint", "make-seamless"
const char* action_name(Action action);

// Everything a run depends on. Empty strings and zeros mean "the default" where said.
struct Request {
  Action action = Action::Generate;

  // Loading.
  std::string model_path;          // empty: default_model_path()
  std::string device = "auto";     // auto (CUDA when present), cpu, cuda
  std::string precision = "auto";  // the network's dtype (sampling stays fp32): auto (bf16 on
                                   // CUDA devices and CPUs that run it natively, fp32 elsewhere),
                                   // fp32 (the reference's exact numbers), bf16, fp16 (CUDA only)
  std::string weights;             // Trainer checkpoints: "ema" or "model"; empty: the format's own
  std::string objective;           // Trainer checkpoints: pred_noise, pred_x0 or pred_v;
                                   // empty: from the file
  bool kernel_check = true;        // check the convolutions at load and reroute wrong kernels
                                   // (models/conv_guard.h); GD_NO_KERNEL_CHECK also turns it off

  // CPU intra-op threads for the run; 0: automatic (core/thread_policy.h: all cores on an idle
  // machine, fewer when other processes keep cores busy, measured at the start of run()).
  int threads = 0;

  // Sampling.
  std::string sampler;  // empty: the model's own (default_sampler)
  int steps = 0;        // 0: the sampler's default
  double eta = 0.0;     // DDIM stochasticity, [0, 1]
  std::uint64_t seed = 0;
  bool seamless = false;           // circular padding: the result tiles
  std::string class_name;          // class-conditional models: a name or number; empty: drawn from
                                   // the seed (generate) or the best fit for the image (the others)
  std::optional<double> guidance;  // 1 (off) to 20; empty: the model's default for generate,
                                   // off for the others
  std::optional<int> guidance_below;  // guide timesteps below this; empty: the default

  // Generate.
  int width = 0;  // 0: the model's native size
  int height = 0;
  int batch = 1;

  // Image to image.
  double strength = 0.6;  // (0, 1]

  // Denoise.
  std::optional<double> sigma;  // noise standard deviation in 0-1 units; empty: estimated

  // Inpaint and Make Seamless (core/inpaint.h). Samplers: ddpm or ddim (the default: ddpm unless
  // the model's own is ddim); steps default to 25.
  int resample = 0;         // RePaint's resamplings every 10 steps, 1 (none) to 20; 0: default (3)
  int context_margin = -1;  // inpaint: pixels of context around the mask's bounds that the work
                            // area includes; -1: half the model's native size
  int band = 0;             // make-seamless: the band's width in pixels, at most half the smaller
                            // side; 0: a quarter of the smaller side

  // Memory (core/tiling.h, core/memory_estimate.h). The network sees the canvas in overlapping
  // windows fused without seams, so any size runs in bounded memory.
  int tile_size = 0;  // the largest window side in pixels; 0: automatic (the native size for
                      // networks with attention, else the largest window the budget allows,
                      // the whole canvas when it fits); -1: never tile (one window)
  std::optional<int> tile_overlap;  // pixels each window shares with its neighbours; empty:
                                    // automatic (64, at most a quarter of the window)
  std::string max_memory;           // the run's memory budget: "4G", "512M"; empty: 80% of the
                                    // memory available (core/memory_estimate.h)
};

// A bad value in a Request: the message is one line and field() names the Request member
// ("sampler", "guidance_below", ...) it is about. about_model() tells a value that is wrong for
// this model (a class it does not have, more steps than it was trained with) from one that is
// wrong for any model (a sampler that does not exist).
class RequestError : public Error {
 public:
  RequestError(std::string field, const std::string& message, bool about_model = false)
      : Error(message), field_(std::move(field)), about_model_(about_model) {}
  const std::string& field() const { return field_; }
  bool about_model() const { return about_model_; }

 private:
  std::string field_;
  bool about_model_;
};

// A loaded model: immutable after load_model, shareable between threads.
class Model {
 public:
  Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const models::ModelInfo& info() const;
  std::string device() const;     // "cpu", "cuda:0"
  std::string precision() const;  // the network's dtype as loaded: "fp32", "bf16" or "fp16"
  std::string default_sampler() const;
  // "18 convolution configurations checked in 0.4 s, 0 of 22 layers rerouted" (with "(18 known
  // from the cache)" after the time when a disk cache held verdicts), or "" when the
  // check was skipped (Request::kernel_check, GD_NO_KERNEL_CHECK). For a TorchScript module a
  // disagreement turns oneDNN off for the process, and the text says so.
  std::string kernel_check() const;
  int rerouted_convolutions() const;  // layers the check moved to LibTorch's own kernel
  // "network memory measured in 4.1 s" or "network memory known from the cache" (the fit the
  // tile plans use, core/memory_estimate.h; the cache: models/load_cache.h).
  std::string memory_probe() const;
  int num_classes() const;
  // "3 (bricks)", or "3" for a model without class names.
  std::string describe_class(std::int64_t k) const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Model(std::unique_ptr<Impl> impl);
  friend Model load_model(const Request& request);
  std::unique_ptr<Impl> impl_;
};

// Checks the loading fields (device, precision, weights, objective) and loads request.model_path
// (or the default model). Throws RequestError for a bad field, gd::Error for a bad model.
Model load_model(const Request& request);

// What a checked request will do, known before any work: for the start-up line of a front end.
struct Plan {
  std::string sampler;  // resolved
  int steps = 0;        // resolved (denoise: the requested spread; steps_run says more)
  std::vector<std::int64_t> classes;  // generate: the class of each image; img2img/denoise: the
                                      // given class, or empty when the best fit will be searched
  bool best_fit = false;       // img2img/denoise on a class-conditional model without a class
  bool classes_drawn = false;  // generate without a class: drawn from the seed
  std::string guidance;        // "guidance 2.5 below timestep 300", empty when unguided
  std::string device;          // "cpu", "cuda:0"
  // How the canvas goes through the network and the memory it needs: "16 windows of 512x512
  // (overlap 64), 1 per call; estimated peak 2.9 GiB of a 3.5 GiB budget (given)".
  std::string memory;
  int windows = 1;                   // windows per network evaluation (1: the whole canvas)
  std::int64_t estimated_bytes = 0;  // the estimated peak the run adds
  std::int64_t budget_bytes = 0;
  // The windows run() uses (core::tile_layout's arguments): resolved sizes, overlap, batching.
  std::int64_t tile_height = 0, tile_width = 0, tile_overlap = 0, windows_per_call = 1;
  // The first row and column of each window on the (padded) canvas; windows of a seamless run
  // may run past the edge and continue from the other side.
  std::vector<std::int64_t> window_rows, window_cols;
  // Inpaint and Make Seamless: "RePaint, 3 resamplings every 10 steps: 61 network calls".
  std::string repaint;
  // "sampler dpmpp_2m, 20 steps, seed 42, class 3 (bricks), guidance 2 below timestep 300":
  // how the result was made, for progress text and layer names.
  std::string describe(const Model& model, std::uint64_t seed) const;
};

// The shape of an input image, [batch, channels, height, width]: enough to check a request
// before any pixel is read.
struct ImageShape {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;
  static ImageShape of(const at::Tensor& image);  // an undefined tensor: all zero (no image)
};

// Checks every field of `request` against `model`, and for img2img and denoise the input's
// shape, before anything is allocated. Throws a RequestError naming the first problem
// (field "image" for the input; "max_memory" for a run that cannot fit the budget even with
// the smallest windows, naming the size and the budget).
// Inpaint: `mask` is the mask's shape when known (field "mask" if it does not fit the image);
// its contents are checked by run().
Plan check_request(const Model& model, const Request& request, const ImageShape& image = {},
                   const ImageShape& mask = {});

using StepFn = std::function<bool(int done, int total)>;  // false cancels (gd::Cancelled)

struct Callbacks {
  StepFn on_step;       // after each sampling step
  StepFn on_class_fit;  // after each network call of the best-fitting class search
  // Tiled runs (Plan::windows > 1): after each network call within an evaluation, with
  // (windows done, windows per evaluation); false cancels between windows.
  StepFn on_window;
  // Once per run with the class of each image, as soon as it is known (after the best fit).
  std::function<void(const std::vector<std::int64_t>&)> on_classes;
  // Once per run, before the first step: the threads it uses, e.g. "1 thread (automatic: 2
  // cores, 1.0 busy elsewhere)".
  std::function<void(int threads, const std::string& description)> on_threads;
};

struct Result {
  at::Tensor image;                   // [N, C, H, W] float32 in [0, 1], CPU
  std::vector<std::int64_t> classes;  // the class of each image (empty: unconditional)
  double sigma = 0.0;                 // denoise: the noise level used
  bool sigma_estimated = false;
  int steps_run = 0;            // denoise: 0 when the image is below the model's finest level
  double start_timestep = 0.0;  // denoise
  int threads = 0;              // CPU intra-op threads the run used
};

// Runs a request (checking it first). image: the input for img2img and denoise, undefined for
// generate. Throws gd::Cancelled when a callback returns false.
Result run(const Model& model, const Request& request, const at::Tensor& image,
           const Callbacks& callbacks = {});

// Inpaint: `mask` [N or 1, 1, H, W] in [0, 1] over `image`, 1 where the pixels are regenerated,
// between 0 and 1 where the result is blended; where it is 0 the result is the input's values
// exactly. A RequestError about "mask" for an empty mask, one covering everything (that is
// generate) or one of another size. Make Seamless and the other actions take no mask.
Result run(const Model& model, const Request& request, const at::Tensor& image,
           const at::Tensor& mask, const Callbacks& callbacks = {});

// The model a request without model_path uses: $GIMP_DIFFUSION_MODEL when set, else the bundled
// texture model (next to the running program: <dir>/models/gimp-patterns, as the plug-in is
// installed, or the source tree's models/checkpoints/gimp-patterns for a build), else "" .
std::string default_model_path();

// "4G", "512M", "1.5G" -> bytes (binary units); throws RequestError about "max_memory".
std::int64_t parse_memory_size(const std::string& text);
// "3.2 GiB", "850 MiB".
std::string format_bytes(double bytes);

// The sampler names ("ddpm", "ddim", ...), and the largest width * height * batch of a run.
const std::vector<std::string>& sampler_names();
std::int64_t max_pixels();
bool cuda_available();

}  // namespace gd
