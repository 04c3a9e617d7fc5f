// gd::Model and loading: the loading fields of a Request, the default model, and the facts a
// front end shows before a run.
#include <ATen/Context.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/device.h"
#include "core/pipeline.h"
#include "core/samplers.h"
#include "core/thread_policy.h"
#include "engine/model_impl.h"
#include "models/class_names.h"
#include "models/pipeline_model.h"

namespace gd {

namespace fs = std::filesystem;

namespace {

c10::Device about_device(const std::string& text) {
  try {
    return core::parse_device(text);
  } catch (const Error& e) {  // "cuda" on a machine without CUDA is a fact about this machine
    throw RequestError("device", e.what(), /*about_model=*/text == "cuda");
  }
}

models::LoadOptions load_options(const Request& request) {
  models::LoadOptions load;
  load.device = about_device(request.device);
  try {
    load.dtype = core::parse_precision(request.precision, load.device);
  } catch (const Error& e) {  // fp16 on the CPU is a fact about the device chosen
    throw RequestError("precision", e.what());
  }
  if (!request.weights.empty() && request.weights != "ema" && request.weights != "model") {
    throw RequestError("weights",
                       "weights must be 'ema' or 'model', not '" + request.weights + "'");
  }
  load.weights = request.weights;
  load.kernel_check = request.kernel_check;
  if (!request.objective.empty()) {
    const std::string& o = request.objective;
    if (o != "pred_noise" && o != "pred_x0" && o != "pred_v") {
      throw RequestError("objective",
                         "objective must be pred_noise, pred_x0 or pred_v, not '" + o + "'");
    }
    load.objective = o;
  }
  return load;
}

// The folder of the running program (symlinks resolved), or "" when unknown.
fs::path program_folder() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

}  // namespace

const char* action_name(Action action) {
  switch (action) {
    case Action::Generate: return "generate";
    case Action::Img2img: return "img2img";
    case Action::Denoise: return "denoise";
    case Action::Inpaint: return "inpaint";
    case Action::MakeSeamless: return "make-seamless";
  }
  return "";
}

Model::Model() = default;
Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

const models::ModelInfo& Model::info() const { return impl_->loaded.info; }
std::string Model::device() const { return impl_->load.device.str(); }
std::string Model::precision() const { return core::precision_name(impl_->load.dtype); }
std::string Model::default_sampler() const {
  return core::default_sampler(impl_->pipeline.schedule);
}
std::string Model::kernel_check() const {
  const models::ConvCheckReport& r = impl_->loaded.kernel_check;
  if (!r.ran) return "";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.2f", r.seconds);
  std::string text =
      std::to_string(r.configurations) + " convolution configurations checked in " + seconds + " s";
  // A second start reads the verdicts from the disk cache (models/load_cache.h).
  if (r.from_disk > 0) text += " (" + std::to_string(r.from_disk) + " known from the cache)";
  text += ", " + std::to_string(r.rerouted) + " of " + std::to_string(r.layers) +
          " layers rerouted to LibTorch's own kernel";
  if (r.onednn_disabled) {
    text +=
        " (a TorchScript module's layers cannot be rerouted one by one: oneDNN is off for "
        "this process)";
  }
  return text;
}

std::string Model::memory_probe() const {
  if (impl_->probe_from_cache) return "network memory known from the cache";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.2f", impl_->probe_seconds);
  return std::string("network memory measured in ") + seconds + " s";
}

int Model::rerouted_convolutions() const { return impl_->loaded.kernel_check.rerouted; }

int Model::num_classes() const { return impl_->pipeline.num_classes; }
std::string Model::describe_class(std::int64_t k) const {
  return models::describe_class(impl_->loaded.info.class_names, k);
}

Model load_model(const Request& request) {
  auto impl = std::make_unique<Model::Impl>();
  impl->load = load_options(request);
  // The kernel check and the memory probe run the network's convolutions: with other processes
  // busy, two spinning OpenMP threads made them several times slower, as they do a run
  // (core/thread_policy.h; docs/benchmarks.md, "Loading and start-up"). run() decides again.
  core::apply_thread_policy(request.threads);
  const std::string path = request.model_path.empty() ? default_model_path() : request.model_path;
  if (path.empty()) {
    throw RequestError("model_path",
                       "no model given, GIMP_DIFFUSION_MODEL is not set and the bundled model "
                       "is missing: give a model folder or checkpoint");
  }
  impl->loaded = models::load_model(path, impl->load);
  impl->pipeline = models::pipeline_model(impl->loaded, impl->load);
  probe_network_memory(*impl);
  return Model(std::move(impl));
}

std::string default_model_path() {
  if (const char* env = std::getenv("GIMP_DIFFUSION_MODEL"); env && *env) return env;
  // Installed: next to the plug-in (<plug-in folder>/models/gimp-patterns). Built: the build
  // tree's programs sit two or three levels below the source root (build/tools/cli, build/plugin).
  const fs::path dir = program_folder();
  if (dir.empty()) return {};
  std::vector<fs::path> candidates = {dir / "models" / "gimp-patterns"};
  for (fs::path up = dir; up.has_relative_path() && up != up.root_path(); up = up.parent_path()) {
    candidates.push_back(up / "models" / "checkpoints" / "gimp-patterns");
  }
  std::error_code ec;
  for (const fs::path& p : candidates) {
    if (fs::is_regular_file(p / "config.json", ec)) return p.string();
  }
  return {};
}

const std::vector<std::string>& sampler_names() { return core::sampler_names(); }
std::int64_t max_pixels() { return core::kMaxPixels; }
bool cuda_available() { return at::hasCUDA(); }

}  // namespace gd
