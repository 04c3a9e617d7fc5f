// gimp-diffusion-cli generate | img2img | denoise.
//
// Inputs and outputs are PNG (8- or 16-bit) or .safetensors (tensor "image", float32,
// N x C x H x W in [0, 1]). Alpha is split off before the engine and put back untouched.
// Every option is validated, the output path is checked writable, and the model is loaded
// before any sampling starts, so a bad input fails fast and leaves no file behind.
#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "core/pipeline.h"
#include "core/samplers.h"
#include "image_files/image_tensor.h"
#include "models/class_names.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"
#include "tools/cli/device_option.h"
#include "tools/cli/progress.h"

namespace gd::cli {

namespace {

using image_files::check_writable;
using image_files::LoadedImage;
using image_files::read_image_tensor;
using image_files::write_image_tensor;

// ".png" or ".safetensors" (lower case); anything else is a UsageError naming the path, before
// the model is loaded.
std::string output_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext != ".png" && ext != ".safetensors") {
    throw UsageError("output '" + path + "' must end in .png or .safetensors");
  }
  return ext;
}

const std::set<std::string> kCommonValued = {"model", "sampler", "steps", "eta", "seed", "weights",
                                             "objective", "device", "output", "bit-depth", "precision",
                                             "class", "guidance", "guidance-below"};

struct Common {
  models::LoadOptions load;
  core::RunOptions run;
  std::string model_path;
  std::string output;
  int bit_depth = 0;  // 0: the input's, or 8
  std::optional<std::string> class_text;  // --class: a name or number, resolved once the model is loaded
};

Common parse_common(const Args& args) {
  Common c;
  c.model_path = args.required("model");
  c.output = args.required("output");
  const std::string ext = output_extension(c.output);
  (void)ext;  // validates the extension early
  c.load.weights = args.value("weights").value_or("");
  if (!c.load.weights.empty() && c.load.weights != "ema" && c.load.weights != "model") {
    throw UsageError("--weights must be 'ema' or 'model', not '" + c.load.weights + "'");
  }
  if (auto objective = args.value("objective")) {
    if (*objective != "pred_noise" && *objective != "pred_x0" && *objective != "pred_v") {
      throw UsageError("--objective must be pred_noise, pred_x0 or pred_v, not '" + *objective + "'");
    }
    c.load.objective = *objective;
  }
  c.load.device = parse_device(args.value("device").value_or("auto"));
  const std::string precision = args.value("precision").value_or("fp32");
  if (precision == "bf16") c.load.dtype = at::kBFloat16;
  else if (precision != "fp32") throw UsageError("--precision must be fp32 or bf16, not '" + precision + "'");
  if (auto sampler = args.value("sampler")) {
    const auto& names = core::sampler_names();
    if (std::find(names.begin(), names.end(), *sampler) == names.end()) {
      std::string list;
      for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
      throw UsageError("--sampler must be one of " + list + ", not '" + *sampler + "'");
    }
    c.run.sampler = *sampler;
  }
  if (auto steps = args.value("steps")) c.run.steps = static_cast<int>(parse_integer("steps", *steps, 1, 100000));
  if (auto eta = args.value("eta")) {
    c.run.eta = parse_real("eta", *eta);
    if (c.run.eta < 0 || c.run.eta > 1) throw UsageError("--eta must be between 0 and 1, not " + *eta);
  }
  if (auto seed = args.value("seed")) {
    c.run.seed = static_cast<std::uint64_t>(parse_integer("seed", *seed, 0, (1LL << 53)));
  } else {
    c.run.seed = std::random_device{}() % (1ULL << 32);
  }
  c.class_text = args.value("class");
  if (auto scale = args.value("guidance")) {
    c.run.guidance = parse_real("guidance", *scale);
    if (!(c.run.guidance >= 1 && c.run.guidance <= core::kMaxGuidanceScale)) {
      throw UsageError("--guidance must be from 1 (off) to " + std::to_string(static_cast<int>(core::kMaxGuidanceScale)) +
                       ", not " + *scale);
    }
  }
  if (auto below = args.value("guidance-below")) {
    c.run.guidance_below = static_cast<int>(parse_integer("guidance-below", *below, 1, 1000000));
  }
  if (auto depth = args.value("bit-depth")) {
    c.bit_depth = static_cast<int>(parse_integer("bit-depth", *depth, 8, 16));
    if (c.bit_depth != 8 && c.bit_depth != 16) throw UsageError("--bit-depth must be 8 or 16");
  }
  return c;
}

struct Session {
  models::LoadedModel loaded;
  core::PipelineModel model;
};

// Loads the model and wraps its network for the pipelines; resolves --class against it.
std::unique_ptr<Session> open_model(Common& c) {
  auto session = std::make_unique<Session>();
  session->loaded = models::load_model(c.model_path, c.load);
  session->model = models::pipeline_model(session->loaded, c.load);
  if (c.class_text) {
    const models::ModelInfo& info = session->loaded.info;
    c.run.class_label = models::find_class(*c.class_text, info.class_names, info.num_classes);
  }
  return session;
}

std::string class_text(const Session& s, std::int64_t k) {
  return models::describe_class(s.loaded.info.class_names, k);
}

// ", class 3 (bricks)", or for several images ", classes 3 (bricks), 7 (leaves)"; empty for
// unconditional models. from_image: img2img and denoise, whose default is the best fit.
std::string describe_classes(const Session& s, const core::RunOptions& run, std::int64_t batch,
                             bool from_image) {
  const std::vector<std::int64_t> classes = core::run_classes(s.model.num_classes, run, batch);
  if (classes.empty()) return "";
  if (from_image && run.class_label < 0) return ", class: the best fit for the image";
  std::string text = classes.size() == 1 || run.class_label >= 0 ? ", class " : ", classes ";
  const std::size_t shown = run.class_label >= 0 ? 1 : classes.size();
  for (std::size_t i = 0; i < shown; ++i) text += (i ? ", " : "") + class_text(s, classes[i]);
  return text + (run.class_label >= 0 ? "" : " (drawn from the seed)");
}

void report_start(const Common& c, const Session& s, const std::string& what, std::int64_t batch,
                  bool from_image) {
  const std::string sampler = c.run.sampler.empty() ? core::default_sampler(s.model.schedule) : c.run.sampler;
  // Checked here, before the first line of progress, so a bad value is the only output.
  if (c.run.steps > s.model.schedule.num_train_timesteps) {
    throw UsageError("--steps " + std::to_string(c.run.steps) + " exceeds the model's " +
                     std::to_string(s.model.schedule.num_train_timesteps) + " training timesteps");
  }
  const std::string classes = describe_classes(s, c.run, batch, from_image);
  const std::string guidance = core::describe_guidance(core::run_guidance(s.model, c.run, !from_image));
  std::fprintf(stderr, "%s: %s, sampler %s, seed %llu%s%s, device %s\n", what.c_str(),
               s.loaded.info.architecture.c_str(), sampler.c_str(), static_cast<unsigned long long>(c.run.seed),
               classes.c_str(), guidance.empty() ? "" : (", " + guidance).c_str(), c.load.device.str().c_str());
}

void save(const Common& c, const at::Tensor& colour, const at::Tensor& alpha, int input_depth) {
  // Keep the input's precision: 16-bit and float inputs give 16-bit PNGs.
  const int depth = c.bit_depth ? c.bit_depth : (input_depth > 8 ? 16 : 8);
  write_image_tensor(c.output, alpha.defined() ? at::cat({colour, alpha}, 1) : colour, depth);
}

int run_generate(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"width", "height", "batch"});
  Args args(argv, valued, {"seamless"}, {{"-o", "output"}});
  Common c = parse_common(args);
  core::GenerateOptions options;
  static_cast<core::RunOptions&>(options) = c.run;
  options.seamless = args.flag("seamless");
  if (auto w = args.value("width")) options.width = static_cast<int>(parse_integer("width", *w, 1, 65536));
  if (auto h = args.value("height")) options.height = static_cast<int>(parse_integer("height", *h, 1, 65536));
  if (auto b = args.value("batch")) options.batch = static_cast<int>(parse_integer("batch", *b, 1, 1024));
  check_writable(c.output);
  auto session = open_model(c);
  options.class_label = c.run.class_label;
  report_start(c, *session, "generate", options.batch, false);
  Progress progress("generate");
  options.on_step = [&progress](int done, int total) { return progress.update(done, total); };
  at::Tensor images = core::generate(session->model, options);
  progress.finish();
  save(c, images, at::Tensor(), 0);
  return 0;
}

// Reads --input and splits it into colour [N, C, H, W] and alpha [N, 1, H, W] (or undefined).
struct Input {
  at::Tensor colour, alpha;
  int bit_depth = 0;
};

Input read_input(const Args& args) {
  LoadedImage image = read_image_tensor(args.required("input"));
  Input in;
  in.bit_depth = image.bit_depth;
  const std::int64_t c = image.pixels.size(1);
  const bool has_alpha = image.has_alpha;
  in.colour = image.pixels.narrow(1, 0, has_alpha ? c - 1 : c);
  if (has_alpha) in.alpha = image.pixels.narrow(1, c - 1, 1);
  return in;
}

// What img2img and denoise share: the input image (colour adapted to the model, alpha kept
// aside), a writable output, the loaded model and the progress display.
struct ImageRun {
  Input input;
  at::Tensor colour;  // [N, model channels, H, W]
  std::unique_ptr<Session> session;
  std::unique_ptr<Progress> progress;
  std::unique_ptr<Progress> fit_progress;  // the best-fitting class search, before the steps
};

ImageRun start_image_run(const Args& args, Common& c, const std::string& what) {
  ImageRun r;
  r.input = read_input(args);
  check_writable(c.output);
  r.session = open_model(c);
  std::string note;
  r.colour = core::to_model_channels(r.input.colour, r.session->model.channels, &note);
  if (!note.empty()) std::fprintf(stderr, "note: %s\n", note.c_str());
  report_start(c, *r.session, what, r.colour.size(0), true);
  r.progress = std::make_unique<Progress>(what);
  Progress* progress = r.progress.get();
  if (r.session->model.num_classes > 0 && c.run.class_label < 0) {  // the best fit is searched
    const Session* session = r.session.get();
    c.run.on_classes = [session, what](const std::vector<std::int64_t>& classes) {
      std::string text;
      for (std::size_t i = 0; i < classes.size(); ++i) text += (i ? ", " : "") + class_text(*session, classes[i]);
      std::fprintf(stderr, "%s: class %s fits the image best\n", what.c_str(), text.c_str());
    };
    r.fit_progress = std::make_unique<Progress>(what + " class fit", "call");
    Progress* fit = r.fit_progress.get();
    c.run.on_class_fit = [fit, progress](int done, int total) {
      fit->update(done, total);
      if (done == total) {
        fit->finish();
        progress->restart();  // the steps' rate and time left count from here
      }
      return true;
    };
  }
  c.run.on_step = [progress](int done, int total) { return progress->update(done, total); };
  return r;
}

void finish_image_run(const Common& c, ImageRun& r, const at::Tensor& result) {
  r.progress->finish();
  save(c, core::from_model_channels(result, static_cast<int>(r.input.colour.size(1))), r.input.alpha,
       r.input.bit_depth);
}

int run_img2img(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"input", "strength"});
  Args args(argv, valued, {"seamless"}, {{"-o", "output"}, {"-i", "input"}});
  Common c = parse_common(args);
  c.run.seamless = args.flag("seamless");
  const double strength = parse_real("strength", args.value("strength").value_or("0.6"));
  if (!(strength > 0 && strength <= 1)) {
    throw UsageError("--strength must be in (0, 1], not " + args.value("strength").value_or(""));
  }
  ImageRun r = start_image_run(args, c, "img2img");
  finish_image_run(c, r, core::img2img(r.session->model, r.colour, strength, c.run));
  return 0;
}

int run_denoise(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"input", "sigma"});
  Args args(argv, valued, {}, {{"-o", "output"}, {"-i", "input"}});
  Common c = parse_common(args);
  std::optional<double> sigma;
  const std::string sigma_text = args.value("sigma").value_or("auto");
  if (sigma_text != "auto") {
    sigma = parse_real("sigma", sigma_text);
    if (*sigma < 0 || *sigma > 1) throw UsageError("--sigma must be auto or in [0, 1], not " + sigma_text);
  }
  ImageRun r = start_image_run(args, c, "denoise");
  core::DenoiseResult result = core::denoise(r.session->model, r.colour, sigma, c.run);
  r.progress->finish();  // end the bar's line before the summary
  std::fprintf(stderr, "denoise: sigma %.4f (%s), %d steps from timestep %.0f\n", result.sigma,
               result.estimated ? "estimated" : "given", result.steps_run, result.start_timestep);
  finish_image_run(c, r, result.image);
  return 0;
}

}  // namespace

int run_sample_command(const std::string& command, const std::vector<std::string>& args) {
  if (command == "generate") return run_generate(args);
  if (command == "img2img") return run_img2img(args);
  return run_denoise(args);
}

}  // namespace gd::cli
