// gimp-diffusion-cli generate | img2img | denoise: the command line translated into a
// gd::Request (engine/gimp_diffusion.h), and the result written.
//
// Inputs and outputs are PNG (8- or 16-bit) or .safetensors (tensor "image", float32,
// N x C x H x W in [0, 1]). Alpha is split off before the engine and put back untouched.
// The input is read, the output path checked writable, the model loaded and the request
// checked against it before any sampling starts, so a bad input fails fast and leaves no file
// behind. The checks themselves are the engine's.
#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <random>

#include "engine/gimp_diffusion.h"
#include "image_files/image_tensor.h"
#include "models/model_info.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"
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
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (ext != ".png" && ext != ".safetensors") {
    throw UsageError("output '" + path + "' must end in .png or .safetensors");
  }
  return ext;
}

const std::set<std::string> kCommonValued = {
    "model",     "sampler",        "steps",   "eta",       "seed",         "weights",
    "objective", "device",         "output",  "bit-depth", "precision",    "class",
    "guidance",  "guidance-below", "threads", "tile-size", "tile-overlap", "max-memory"};

// Reads the options every sampling command shares. Only the syntax is judged here (a number
// where a number belongs); the values are the engine's to check (check_request).
Request parse_common(const Args& args, Action action) {
  Request r;
  r.action = action;
  r.model_path = args.value("model").value_or("");
  r.weights = args.value("weights").value_or("");
  r.objective = args.value("objective").value_or("");
  r.kernel_check = !args.flag("no-kernel-check");
  r.device = args.value("device").value_or("auto");
  r.precision = args.value("precision").value_or("auto");
  if (auto threads = args.value("threads"))
    r.threads = static_cast<int>(parse_integer("threads", *threads, 0, 1024));
  r.sampler = args.value("sampler").value_or("");
  if (auto steps = args.value("steps"))
    r.steps = static_cast<int>(parse_integer("steps", *steps, 1, 100000));
  if (auto eta = args.value("eta")) r.eta = parse_real("eta", *eta);
  if (auto seed = args.value("seed")) {
    r.seed = static_cast<std::uint64_t>(parse_integer("seed", *seed, 0, (1LL << 53)));
  } else {
    r.seed = std::random_device{}() % (1ULL << 32);
  }
  r.class_name = args.value("class").value_or("");
  if (auto scale = args.value("guidance")) r.guidance = parse_real("guidance", *scale);
  if (auto below = args.value("guidance-below")) {
    r.guidance_below = static_cast<int>(parse_integer("guidance-below", *below, -1000000, 1000000));
  }
  if (auto size = args.value("tile-size")) {
    r.tile_size = *size == "auto"   ? 0
                  : *size == "none" ? -1
                                    : static_cast<int>(parse_integer("tile-size", *size, 1, 65536));
  }
  if (auto overlap = args.value("tile-overlap"); overlap && *overlap != "auto") {
    r.tile_overlap = static_cast<int>(parse_integer("tile-overlap", *overlap, 0, 4096));
  }
  r.max_memory = args.value("max-memory").value_or("");
  return r;
}

int bit_depth_option(const Args& args) {  // 0: the input's, or 8
  auto depth = args.value("bit-depth");
  if (!depth) return 0;
  const int d = static_cast<int>(parse_integer("bit-depth", *depth, 8, 16));
  if (d != 8 && d != 16) throw UsageError("--bit-depth must be 8 or 16");
  return d;
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
  in.colour = image.pixels.narrow(1, 0, image.has_alpha ? c - 1 : c);
  if (image.has_alpha) in.alpha = image.pixels.narrow(1, c - 1, 1);
  return in;
}

// One sampling command from its parsed arguments to the written output.
class Command {
 public:
  Command(const Args& args, Action action) : args_(args), request_(parse_common(args, action)) {}

  Request& request() { return request_; }

  int run() {
    const bool dry_run = args_.flag("dry-run");
    const std::string output =
        dry_run ? args_.value("output").value_or("") : args_.required("output");
    const int depth = bit_depth_option(args_);
    if (!output.empty()) output_extension(output);  // a bad extension fails before any work
    if (request_.action != Action::Generate) input_ = read_input(args_);
    if (!dry_run) check_writable(output);
    const Model model = load_model(request_);
    const Plan plan = check_request(model, request_, ImageShape::of(input_.colour));
    report_plan(model, plan);
    if (dry_run) return 0;
    const Result result = gd::run(model, request_, input_.colour, callbacks(model, plan));
    progress_->finish();
    if (request_.action == Action::Denoise) {
      std::fprintf(stderr, "denoise: sigma %.4f (%s), %d steps from timestep %.0f\n", result.sigma,
                   result.sigma_estimated ? "estimated" : "given", result.steps_run,
                   result.start_timestep);
    }
    save(output, result.image, depth);
    return 0;
  }

 private:
  std::string what() const { return action_name(request_.action); }

  void report_plan(const Model& model, const Plan& plan) const {
    const std::int64_t c = input_.colour.defined() ? input_.colour.size(1) : 0;
    if (c == 1 && model.info().in_channels != 1) {
      std::fprintf(stderr, "note: gray image replicated into the model's %d channels\n",
                   model.info().in_channels);
    } else if (c > 1 && model.info().in_channels == 1) {
      std::fprintf(stderr, "note: colour image averaged into the model's single channel\n");
    }
    if (model.rerouted_convolutions() > 0) {
      std::fprintf(stderr, "note: %s\n", model.kernel_check().c_str());
    }
    const std::string text = plan.describe(model, request_.seed);
    std::fprintf(stderr, "%s: %s, %s, device %s, %s\n", what().c_str(),
                 model.info().architecture.c_str(), text.c_str(), plan.device.c_str(),
                 model.precision().c_str());
    std::fprintf(stderr, "%s: %s\n", what().c_str(), plan.memory.c_str());
    if (plan.windows > 1) {
      auto list = [](const std::vector<std::int64_t>& v) {
        std::string text;
        for (std::int64_t x : v) text += (text.empty() ? "" : " ") + std::to_string(x);
        return text;
      };
      std::fprintf(stderr, "%s: windows start at rows %s and columns %s\n", what().c_str(),
                   list(plan.window_rows).c_str(), list(plan.window_cols).c_str());
    }
  }

  // Progress in steps, or in windows for a tiled run (a step of a large canvas takes minutes):
  // each step counts its windows, and the bar moves after each network call.
  Callbacks callbacks(const Model& model, const Plan& plan) {
    const int windows = plan.windows;
    progress_ = std::make_unique<Progress>(what(), windows > 1 ? "window" : "step");
    Progress* progress = progress_.get();
    Callbacks c;
    auto steps = std::make_shared<std::pair<int, int>>(
        0, request_.action == Action::Generate ? plan.steps : 0);  // done, total (0: unknown)
    auto shown = std::make_shared<int>(0);
    c.on_step = [progress, steps, shown, windows](int done, int total) {
      *steps = {done, total};
      *shown = std::max(*shown, done * windows);
      return progress->update(*shown, total * windows);
    };
    if (windows > 1) {
      c.on_window = [progress, steps, shown, windows](int done, int) {
        if (steps->second == 0) return true;  // the number of steps is not known yet
        *shown = std::max(*shown, std::min(steps->first * windows + done, steps->second * windows));
        return progress->update(*shown, steps->second * windows);
      };
    }
    const std::string label = what();
    c.on_threads = [label](int, const std::string& text) {
      std::fprintf(stderr, "%s: %s\n", label.c_str(), text.c_str());
    };
    if (model.num_classes() > 0 && request_.action != Action::Generate &&
        request_.class_name.empty()) {
      fit_progress_ = std::make_unique<Progress>(what() + " class fit", "call");
      Progress* fit = fit_progress_.get();
      c.on_class_fit = [fit, progress](int done, int total) {
        fit->update(done, total);
        if (done == total) {
          fit->finish();
          progress->restart();  // the steps' rate and time left count from here
        }
        return true;
      };
      c.on_classes = [&model, label](const std::vector<std::int64_t>& classes) {
        std::string text;
        for (std::size_t i = 0; i < classes.size(); ++i) {
          text += (i ? ", " : "") + model.describe_class(classes[i]);
        }
        std::fprintf(stderr, "%s: class %s fits the image best\n", label.c_str(), text.c_str());
      };
    }
    return c;
  }

  void save(const std::string& output, const at::Tensor& colour, int depth) const {
    // Keep the input's precision: 16-bit and float inputs give 16-bit PNGs.
    if (depth == 0) depth = input_.bit_depth > 8 ? 16 : 8;
    write_image_tensor(output, input_.alpha.defined() ? at::cat({colour, input_.alpha}, 1) : colour,
                       depth);
  }

  const Args& args_;
  Request request_;
  Input input_;
  std::unique_ptr<Progress> progress_, fit_progress_;
};

int run_generate(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"width", "height", "batch"});
  Args args(argv, valued, {"seamless", "dry-run", "no-kernel-check"}, {{"-o", "output"}});
  Command command(args, Action::Generate);
  Request& r = command.request();
  r.seamless = args.flag("seamless");
  if (auto w = args.value("width"))
    r.width = static_cast<int>(parse_integer("width", *w, 1, 65536));
  if (auto h = args.value("height"))
    r.height = static_cast<int>(parse_integer("height", *h, 1, 65536));
  if (auto b = args.value("batch")) r.batch = static_cast<int>(parse_integer("batch", *b, 1, 1024));
  return command.run();
}

int run_img2img(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"input", "strength"});
  Args args(argv, valued, {"seamless", "dry-run", "no-kernel-check"},
            {{"-o", "output"}, {"-i", "input"}});
  Command command(args, Action::Img2img);
  Request& r = command.request();
  r.seamless = args.flag("seamless");
  if (auto strength = args.value("strength")) r.strength = parse_real("strength", *strength);
  return command.run();
}

int run_denoise(const std::vector<std::string>& argv) {
  std::set<std::string> valued = kCommonValued;
  valued.insert({"input", "sigma"});
  Args args(argv, valued, {"dry-run", "no-kernel-check"}, {{"-o", "output"}, {"-i", "input"}});
  Command command(args, Action::Denoise);
  const std::string sigma = args.value("sigma").value_or("auto");
  if (sigma != "auto") command.request().sigma = parse_real("sigma", sigma);
  return command.run();
}

}  // namespace

int run_sample_command(const std::string& command, const std::vector<std::string>& args) {
  if (command == "generate") return run_generate(args);
  if (command == "img2img") return run_img2img(args);
  return run_denoise(args);
}

}  // namespace gd::cli
