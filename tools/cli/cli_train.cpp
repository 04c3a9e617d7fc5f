// gimp-diffusion-cli train: trains a diffusers UNet2DModel on random crops of a folder of PNGs,
// with the semantics of denoising-diffusion-pytorch's Trainer (random crops of textures with
// flips and 90-degree rotations, AdamW, gradient accumulation and clipping, an EMA of the
// weights, periodic checkpoints and sample grids).
//
// OUT ends up a diffusers model folder (config.json, diffusion_pytorch_model.safetensors with the
// EMA weights, scheduler_config.json), rewritten at every checkpoint. The training state lives in
// OUT/training/: checkpoint.pt (weights, EMA, optimizer, step, RNG state and the settings; always
// replaced through a rename) and samples/sample-STEP.png.
//
// Every random number of the run (initial weights, crops, timesteps, noise) comes from one CPU
// generator seeded with --seed, and its state is saved in the checkpoint, so an interrupted run
// resumed with --resume continues exactly as if it had not stopped. On the CPU that is bit for
// bit; on CUDA (--device cuda, or auto on a machine with a GPU) the random numbers are the same,
// still drawn on the CPU, but cuDNN's kernels are not bit-reproducible. A run may move between
// devices at a --resume: the checkpoint is read onto whichever device the run continues on.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/pipeline.h"
#include "core/training.h"
#include "models/class_names.h"
#include "models/diffusers_unet.h"
#include "models/diffusers_writer.h"
#include "models/model_loader.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"
#include "tools/cli/device_option.h"
#include "tools/cli/image_io.h"

namespace gd::cli {

namespace {

namespace fs = std::filesystem;

// Options that define the run: on --resume they default to the checkpoint's values and may not
// be changed, except those in kChangeableOnResume (below). The others (steps, save/sample
// intervals, threads, logging, --device, --bf16) may: the device and bf16 autocast only change
// where and how the forward pass is computed (the weights, the optimizer and the EMA stay
// float32), so a run may switch between sessions.
const std::vector<std::pair<std::string, std::string>> kFixedDefaults = {
    {"size", "64"}, {"offset-noise", "0"}, {"batch", "16"}, {"lr", "1e-4"}, {"weight-decay", "0"},
    {"objective", "epsilon"}, {"schedule", "linear"}, {"timesteps", "1000"}, {"loss", "l2"},
    {"accumulate", "1"}, {"clip", "1.0"}, {"ema-decay", "0.995"}, {"ema-every", "10"},
    {"ema-after", "100"}, {"block-channels", "32,64,128"}, {"layers-per-block", "2"},
    {"attention-stages", "last"}, {"norm-groups", "32"}, {"head-dim", "8"}, {"tile", "no"},
    {"classes", "no"}};
// Fixed options that a resumed run may still change (they default to the checkpoint's value):
// the crop size and the offset noise shape what the network is shown, not the network, so a run
// may go on at larger crops (coherence over a wider area; the network is fully convolutional)
// or with offset noise, as a fine-tuning phase.
const std::set<std::string> kChangeableOnResume = {"size", "offset-noise"};
const std::vector<std::pair<std::string, std::string>> kFreeDefaults = {
    {"steps", "10000"}, {"save-every", "1000"}, {"sample-every", "1000"}, {"sample-count", "4"},
    {"sample-steps", "50"}, {"log-every", "50"}, {"threads", "0"}, {"device", "auto"},
    {"cooldown", "0"}};

double parse_double(const std::string& name, const std::string& text, double lo, double hi,
                    bool open_low = false) {
  const double value = parse_real(name, text);
  if (value < lo || value > hi || (open_low && value == lo)) {
    char range[96];
    std::snprintf(range, sizeof range, "%s %g and at most %g", open_low ? "above" : "at least", lo, hi);
    throw UsageError("--" + name + " must be " + range + ", not " + text);
  }
  return value;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, sep)) parts.push_back(part);
  if (!text.empty() && text.back() == sep) parts.push_back("");
  return parts;
}

struct Settings {
  std::string data, out;
  bool resume = false;
  std::map<std::string, std::string> raw;  // every option's text, defaults filled in
  int size = 64, batch = 16, accumulate = 1;
  std::int64_t steps = 0, save_every = 0, sample_every = 0, log_every = 0;
  std::int64_t cooldown = 0;  // the last N steps before --steps anneal the learning rate to 0
  int sample_count = 4, sample_steps = 50, threads = 0;
  double lr = 1e-4, weight_decay = 0, clip = 1, ema_decay = 0.995;
  int ema_every = 10, ema_after = 100;
  bool bf16 = false;
  double offset_noise = 0.0;
  c10::Device device = c10::Device(c10::kCPU);
  bool tile = false;  // repeat images smaller than the crop (seamless textures)
  bool classes = false;  // one class per training image (class-conditional model)
  std::string init;      // a diffusers folder whose weights start a new run (--init)
  std::optional<std::uint64_t> seed;
  core::ScheduleConfig schedule;
  core::LossType loss = core::LossType::L2;
  models::UNet2DConfig unet;
};

// Fills every typed field from s.raw, validating each value.
void interpret(Settings& s) {
  auto& r = s.raw;
  s.size = static_cast<int>(parse_integer("size", r["size"], 1, 4096));
  s.batch = static_cast<int>(parse_integer("batch", r["batch"], 1, 4096));
  s.offset_noise = parse_double("offset-noise", r["offset-noise"], 0, 1);
  s.steps = parse_integer("steps", r["steps"], 1, 1LL << 40);
  s.cooldown = parse_integer("cooldown", r["cooldown"], 0, 1LL << 40);
  if (s.cooldown > s.steps) {
    throw UsageError("--cooldown " + r["cooldown"] + " is longer than the run (--steps " + r["steps"] + ")");
  }
  s.lr = parse_double("lr", r["lr"], 0, 1, true);
  s.weight_decay = parse_double("weight-decay", r["weight-decay"], 0, 1);
  const std::string& obj = r["objective"];
  if (obj == "epsilon" || obj == "pred_noise") s.schedule.prediction_type = core::PredictionType::Epsilon;
  else if (obj == "sample" || obj == "x0" || obj == "pred_x0") s.schedule.prediction_type = core::PredictionType::Sample;
  else if (obj == "v" || obj == "v_prediction" || obj == "pred_v") s.schedule.prediction_type = core::PredictionType::V;
  else throw UsageError("--objective must be epsilon, sample or v, not '" + obj + "'");
  const std::string& sched = r["schedule"];
  if (sched == "linear") s.schedule.beta_schedule = core::BetaSchedule::Linear;
  else if (sched == "squaredcos_cap_v2" || sched == "cosine") s.schedule.beta_schedule = core::BetaSchedule::SquaredCosCapV2;
  else if (sched == "sigmoid") s.schedule.beta_schedule = core::BetaSchedule::Sigmoid;
  else throw UsageError("--schedule must be linear, squaredcos_cap_v2 or sigmoid, not '" + sched + "'");
  s.schedule.num_train_timesteps = static_cast<int>(parse_integer("timesteps", r["timesteps"], 2, 100000));
  // diffusers' DDPM defaults scale with 1000 steps; fewer steps keep the same end points.
  s.schedule.beta_start = 0.0001;
  s.schedule.beta_end = 0.02;
  if (r["loss"] == "l1") s.loss = core::LossType::L1;
  else if (r["loss"] == "l2") s.loss = core::LossType::L2;
  else throw UsageError("--loss must be l1 or l2, not '" + r["loss"] + "'");
  s.accumulate = static_cast<int>(parse_integer("accumulate", r["accumulate"], 1, 1024));
  s.clip = parse_double("clip", r["clip"], 0, 1e6);
  s.ema_decay = parse_double("ema-decay", r["ema-decay"], 0, 1);
  s.ema_every = static_cast<int>(parse_integer("ema-every", r["ema-every"], 1, 1000000));
  s.ema_after = static_cast<int>(parse_integer("ema-after", r["ema-after"], 0, 1LL << 30));
  s.save_every = parse_integer("save-every", r["save-every"], 0, 1LL << 40);
  s.sample_every = parse_integer("sample-every", r["sample-every"], 0, 1LL << 40);
  s.sample_count = static_cast<int>(parse_integer("sample-count", r["sample-count"], 1, 64));
  s.sample_steps = static_cast<int>(parse_integer("sample-steps", r["sample-steps"], 1, 100000));
  s.log_every = parse_integer("log-every", r["log-every"], 1, 1LL << 40);
  s.threads = static_cast<int>(parse_integer("threads", r["threads"], 0, 1024));
  s.bf16 = r["bf16"] == "yes";
  s.device = parse_device(r["device"]);
  s.tile = r["tile"] == "yes";
  s.classes = r["classes"] == "yes";
  if (s.sample_steps > s.schedule.num_train_timesteps) {
    throw UsageError("--sample-steps " + r["sample-steps"] + " exceeds --timesteps " + r["timesteps"]);
  }

  models::UNet2DConfig& c = s.unet;
  c.block_out_channels.clear();
  for (const std::string& part : split(r["block-channels"], ',')) {
    c.block_out_channels.push_back(parse_integer("block-channels", part, 1, 4096));
  }
  if (c.block_out_channels.empty() || c.block_out_channels.size() > 6) {
    throw UsageError("--block-channels must list 1 to 6 widths, like 32,64,128");
  }
  const std::size_t stages = c.block_out_channels.size();
  c.layers_per_block = parse_integer("layers-per-block", r["layers-per-block"], 1, 8);
  c.norm_num_groups = parse_integer("norm-groups", r["norm-groups"], 1, 1024);
  c.attention_head_dim = parse_integer("head-dim", r["head-dim"], 1, 4096);
  std::vector<bool> attention(stages, false);
  const std::string& att = r["attention-stages"];
  if (att == "last") {
    attention[stages - 1] = true;
  } else if (att != "none") {
    for (const std::string& part : split(att, ',')) {
      const long long stage = parse_integer("attention-stages", part, 0, static_cast<long long>(stages) - 1);
      attention[static_cast<std::size_t>(stage)] = true;
    }
  }
  // "none" means no self-attention anywhere, the middle block included: a fully convolutional
  // network, whose cost grows linearly with the canvas (textures at 512x512 and beyond) and
  // whose receptive field suits seamless tiling.
  c.add_attention = att != "none";
  c.down_blocks.clear();
  c.up_blocks.clear();
  for (std::size_t i = 0; i < stages; ++i) {
    c.down_blocks.push_back(attention[i] ? models::UNet2DBlock::Attention : models::UNet2DBlock::Plain);
    c.up_blocks.push_back(attention[stages - 1 - i] ? models::UNet2DBlock::Attention
                                                    : models::UNet2DBlock::Plain);
  }
  c.in_channels = c.out_channels = 3;
  c.sample_height = c.sample_width = s.size;
  try {
    c.validate("model options");
  } catch (const Error& e) {
    throw UsageError(std::string("--block-channels, --norm-groups and --head-dim do not build a "
                                 "UNet: ") + e.what());
  }
  if (s.size % c.downsampling_factor() != 0) {
    throw UsageError("--size " + r["size"] + " must be a multiple of " +
                     std::to_string(c.downsampling_factor()) + " (2 ^ (stages - 1))");
  }
}

const std::set<std::string> kFlags = {"resume", "bf16", "tile", "classes"};
// The fixed options given as flags (stored as "yes" / "no").
const std::set<std::string> kFixedFlags = {"tile", "classes"};

std::set<std::string> valued_options() {
  std::set<std::string> valued = {"data", "out", "seed", "init"};
  for (const auto& [k, v] : kFixedDefaults) valued.insert(k);
  for (const auto& [k, v] : kFreeDefaults) valued.insert(k);
  for (const auto& flag : kFixedFlags) valued.erase(flag);
  return valued;
}

// Parses the command line; `stored` holds the checkpoint's fixed options when resuming.
Settings parse_settings(const Args& args, const nlohmann::json* stored) {
  Settings s;
  s.data = args.required("data");
  s.out = args.required("out");
  s.resume = args.flag("resume");
  s.init = args.value("init").value_or("");
  if (s.resume && !s.init.empty()) {
    throw UsageError("--init starts a new run from a model's weights; it cannot go with --resume");
  }
  for (const auto& [key, def] : kFixedDefaults) {
    std::optional<std::string> given =
        kFixedFlags.count(key) ? (args.flag(key) ? std::optional<std::string>("yes") : std::nullopt)
                               : args.value(key);
    if (stored) {
      const std::string old = stored->value(key, def);
      if (given && *given != old && !kChangeableOnResume.count(key)) {
        throw UsageError("--" + key + " cannot change on --resume (the run used " + old + ")");
      }
      s.raw[key] = given.value_or(old);
    } else {
      s.raw[key] = given.value_or(def);
    }
  }
  for (const auto& [key, def] : kFreeDefaults) s.raw[key] = args.value(key).value_or(def);
  s.raw["bf16"] = args.flag("bf16") ? "yes" : "no";
  if (auto seed = args.value("seed")) {
    s.seed = static_cast<std::uint64_t>(parse_integer("seed", *seed, 0, 1LL << 53));
  }
  interpret(s);
  return s;
}

// ---- data -----------------------------------------------------------------------------------

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

// Every .png under `dir` (recursively, sorted by path) as [3, H, W] float32 in [-1, 1]. Gray is
// repeated into RGB; alpha is dropped.
struct Dataset {
  std::vector<at::Tensor> images;  // [3, H, W] in [-1, 1]
  std::vector<std::string> names;  // the file names without .png, relative to the folder
};

Dataset load_dataset(const std::string& dir, int size, bool tile) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error(dir + ": not a folder (--data)");
  std::vector<std::string> paths;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file() && lower(it->path().extension().string()) == ".png") {
      paths.push_back(it->path().string());
    }
  }
  if (ec) throw Error(dir + ": cannot list the folder (" + ec.message() + ")");
  if (paths.empty()) throw Error(dir + ": no .png images to train on (--data)");
  std::sort(paths.begin(), paths.end());
  Dataset data;
  for (const std::string& path : paths) {
    const Image image = read_image(path);
    if (!tile && (image.width < size || image.height < size)) {
      throw Error(path + ": " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                  " is smaller than the " + std::to_string(size) + "x" + std::to_string(size) +
                  " crop (--size; --tile repeats seamless textures to fit)");
    }
    at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                   {image.height, image.width, image.channels}, at::kFloat)
                         .clone();
    const int color = image.has_alpha ? image.channels - 1 : image.channels;
    at::Tensor chw = hwc.narrow(2, 0, color).permute({2, 0, 1});
    if (color == 1) chw = chw.expand({3, image.height, image.width});
    if (tile) {
      // Seamless textures (GIMP's patterns are made to tile): repeat until a crop fits, so
      // crops may also straddle the seams, as they do when the pattern fills a canvas.
      const std::int64_t ry = (size + image.height - 1) / image.height + 1;
      const std::int64_t rx = (size + image.width - 1) / image.width + 1;
      chw = chw.repeat({1, ry, rx});
    }
    data.images.push_back((chw * 2 - 1).contiguous());
    data.names.push_back(fs::path(path).lexically_relative(dir).replace_extension().generic_string());
  }
  return data;
}

std::int64_t draw(at::Generator& gen, std::int64_t high) {
  return at::randint(high, {1}, gen, at::kLong).item<std::int64_t>();
}

// [batch, 3, size, size]: random image, random crop, random flips, random 90-degree rotation.
// `labels` receives each crop's image index ([batch] int64), the class of --classes runs.
at::Tensor random_batch(const std::vector<at::Tensor>& images, int batch, int size, at::Generator& gen,
                        at::Tensor* labels) {
  std::vector<at::Tensor> crops;
  std::vector<std::int64_t> index;
  for (int i = 0; i < batch; ++i) {
    index.push_back(draw(gen, static_cast<std::int64_t>(images.size())));
    const at::Tensor& img = images[static_cast<std::size_t>(index.back())];
    const std::int64_t y = draw(gen, img.size(1) - size + 1);
    const std::int64_t x = draw(gen, img.size(2) - size + 1);
    at::Tensor crop = img.narrow(1, y, size).narrow(2, x, size);
    if (draw(gen, 2)) crop = crop.flip({2});
    if (draw(gen, 2)) crop = crop.flip({1});
    const std::int64_t k = draw(gen, 4);
    if (k) crop = at::rot90(crop, k, {1, 2});
    crops.push_back(crop);
  }
  *labels = at::tensor(index, at::kLong);
  return at::stack(crops).contiguous();
}

// ---- checkpoints ----------------------------------------------------------------------------

struct Run {
  std::unique_ptr<models::DiffusersUNet> net, ema_net;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<core::Ema> ema;
  at::Generator gen;
  std::int64_t step = 0;
};

std::string fixed_settings_json(const Settings& s) {
  nlohmann::json j;
  for (const auto& [key, def] : kFixedDefaults) j[key] = s.raw.at(key);
  return j.dump();
}

void save_checkpoint(const std::string& path, const Settings& s, Run& run) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, p] : run.net->params()->all()) archive.write("model." + name, p.detach());
  for (const auto& [name, p] : run.ema_net->params()->all()) archive.write("ema." + name, p.detach());
  torch::serialize::OutputArchive opt;
  run.optimizer->save(opt);
  archive.write("optimizer", opt);
  archive.write("step", at::scalar_tensor(static_cast<std::int64_t>(run.step), at::kLong));
  archive.write("ema_calls", at::scalar_tensor(static_cast<std::int64_t>(run.ema->calls()), at::kLong));
  archive.write("rng", run.gen.get_state());
  archive.write("settings", c10::IValue(fixed_settings_json(s)));
  const std::string tmp = path + ".tmp";
  archive.save_to(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename the checkpoint into place");
  }
}

nlohmann::json read_stored_settings(const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    c10::IValue value;
    archive.read("settings", value);
    return nlohmann::json::parse(value.toStringRef());
  } catch (const std::exception& e) {
    throw Error(path + ": not a readable training checkpoint (" + std::string(e.what()).substr(0, 200) + ")");
  }
}

void load_checkpoint(const std::string& path, Run& run, c10::Device device) {
  torch::serialize::InputArchive archive;
  archive.load_from(path, device);  // the run's device, whichever one wrote the checkpoint
  at::NoGradGuard no_grad;
  auto read = [&](const std::string& key, const at::Tensor& p) {
    at::Tensor t;
    archive.read(key, t);
    if (!t.sizes().equals(p.sizes())) {
      throw Error(path + ": " + key + " has shape " + c10::str(t.sizes()) + ", the run needs " +
                  c10::str(p.sizes()) +
                  (key.find("class_embedding") != std::string::npos
                       ? " (--classes: the --data folder no longer has the same number of images)"
                       : ""));
    }
    p.copy_(t);
  };
  for (const auto& [name, p] : run.net->params()->all()) read("model." + name, p);
  for (const auto& [name, p] : run.ema_net->params()->all()) read("ema." + name, p);
  torch::serialize::InputArchive opt;
  archive.read("optimizer", opt);
  run.optimizer->load(opt);
  at::Tensor step, calls, rng;
  archive.read("step", step);
  archive.read("ema_calls", calls);
  archive.read("rng", rng);
  run.step = step.item<std::int64_t>();
  run.ema->set_calls(calls.item<std::int64_t>());
  run.gen.set_state(rng.cpu());  // the generator is a CPU one, whatever the run's device
}

void write_sample_grid(const std::string& path, const Settings& s, models::DiffusersUNet& ema_net,
                       std::int64_t step) {
  core::PipelineModel model;
  model.network = [&ema_net](const at::Tensor& x, const at::Tensor& t, const core::Conditioning& cond) {
    return ema_net.forward(x, t, cond);
  };
  model.schedule = s.schedule;
  model.channels = 3;
  model.downsampling_factor = static_cast<int>(s.unet.downsampling_factor());
  model.native_width = model.native_height = s.size;
  model.device = s.device;
  model.num_classes = static_cast<int>(ema_net.num_classes());
  core::GenerateOptions options;  // class-conditional: classes drawn from the seed, every time the same
  options.sampler = "ddim";
  options.steps = s.sample_steps;
  options.seed = 1234;  // the same noise at every checkpoint: the grids show progress
  options.batch = s.sample_count;
  options.width = options.height = s.size;
  at::Tensor images;
  {
    at::NoGradGuard no_grad;
    images = core::generate(model, options);  // [N, 3, S, S] in [0, 1]
  }
  const int n = s.sample_count;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = (n + cols - 1) / cols;
  const int pad = 2, cell = s.size + pad;
  at::Tensor grid = at::ones({3, rows * cell + pad, cols * cell + pad}, at::kFloat);
  for (int i = 0; i < n; ++i) {
    const int r = i / cols, c = i % cols;
    grid.narrow(1, pad + r * cell, s.size).narrow(2, pad + c * cell, s.size).copy_(images[i]);
  }
  at::Tensor hwc = grid.permute({1, 2, 0}).contiguous();
  Image image;
  image.width = static_cast<int>(hwc.size(1));
  image.height = static_cast<int>(hwc.size(0));
  image.channels = 3;
  image.pixels.assign(hwc.data_ptr<float>(), hwc.data_ptr<float>() + hwc.numel());
  write_png(path, image, 8);
  std::fprintf(stderr, "step %lld: samples in %s\n", static_cast<long long>(step), path.c_str());
}

// The diffusers folder given to --init, read in float32 on the CPU.
std::unique_ptr<models::DiffusersUNet> load_init_model(const std::string& path) {
  models::LoadOptions options;
  options.channels_last = false;
  models::LoadedModel loaded = models::load_model(path, options);
  auto* unet = dynamic_cast<models::DiffusersUNet*>(loaded.network.get());
  if (!unet) throw Error(path + ": --init needs a diffusers UNet2DModel folder (it is " + models::format_name(loaded.info.format) + ")");
  loaded.network.release();
  return std::unique_ptr<models::DiffusersUNet>(unet);
}

// Copies --init's weights into the new run's parameters, name for name. Every parameter must be
// there with the same shape (the architecture options must match the model's), except the class
// embedding, which stays zero when the model has none or another number of classes.
void copy_init_weights(models::DiffusersUNet& init, const std::string& path, const core::NamedParams& params) {
  std::map<std::string, at::Tensor> source(init.params()->all().begin(), init.params()->all().end());
  for (const auto& [name, p] : params) {
    auto it = source.find(name);
    const bool same = it != source.end() && it->second.sizes().equals(p.sizes());
    if (name == "class_embedding.weight") {
      if (same) p.copy_(it->second);
      else std::fprintf(stderr, "--init: %s\n", it == source.end()
          ? "the model has no classes; the class embedding starts at zero"
          : "the model has another number of classes; the class embedding starts at zero");
      continue;
    }
    if (!same) {
      throw Error(path + ": --init model " +
                  (it == source.end() ? "has no parameter " + name
                                      : "has " + name + " of shape " + c10::str(it->second.sizes()) +
                                            " where the run needs " + c10::str(p.sizes())) +
                  " (give the model's --block-channels, --layers-per-block, --attention-stages, "
                  "--norm-groups and --head-dim)");
    }
    p.copy_(it->second.to(p.device()));
  }
}

// Autocast to bfloat16 on the training device for the forward pass (convolutions and matmuls;
// norms and the loss stay float32), restored on scope exit. bf16 needs no loss scaling.
struct Bf16Autocast {
  Bf16Autocast(bool on, c10::DeviceType device) : on_(on), device_(device) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(device_);
    prev_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_dtype(device_, at::kBFloat16);
    at::autocast::set_autocast_enabled(device_, true);
  }
  ~Bf16Autocast() {
    if (!on_) return;
    at::autocast::set_autocast_enabled(device_, prev_enabled_);
    at::autocast::set_autocast_dtype(device_, prev_dtype_);
    at::autocast::clear_cache();
  }
  bool on_;
  c10::DeviceType device_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kBFloat16;
};

}  // namespace

int run_train(const std::vector<std::string>& argv) {
  const Args args(argv, valued_options(), kFlags);
  const std::string out = args.required("out");
  const fs::path state_dir = fs::path(out) / "training";
  const std::string checkpoint = (state_dir / "checkpoint.pt").string();
  nlohmann::json stored;
  const bool resume = args.flag("resume");
  // Parse everything before writing anything, so a bad option is the only output. On --resume
  // the options are read on top of the checkpoint's (a subset alone may not build a UNet).
  Settings s;
  if (resume) {
    if (!fs::exists(checkpoint)) throw Error(checkpoint + ": no checkpoint to resume from (--resume)");
    stored = read_stored_settings(checkpoint);
    s = parse_settings(args, &stored);
  } else {
    s = parse_settings(args, nullptr);
  }
  if (!resume && fs::exists(checkpoint)) {
    throw Error(out + " already holds a training run; add --resume to continue it or pick another --out");
  }
  if (s.threads > 0) at::set_num_threads(s.threads);

  const Dataset data = load_dataset(s.data, s.size, s.tile);
  const std::vector<at::Tensor>& images = data.images;
  if (s.classes) s.unet.num_class_embeds = static_cast<std::int64_t>(images.size());
  // Read before anything is written, so a bad --init leaves no run behind.
  std::unique_ptr<models::DiffusersUNet> init_net;
  if (!s.init.empty()) init_net = load_init_model(s.init);
  std::error_code ec;
  fs::create_directories(state_dir / "samples", ec);
  if (ec) throw Error(state_dir.string() + ": cannot create the folder (" + ec.message() + ")");

  Run run;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(s.device);
  run.net = std::make_unique<models::DiffusersUNet>(s.unet, options);
  run.ema_net = std::make_unique<models::DiffusersUNet>(s.unet, options);
  const std::uint64_t seed = s.seed.value_or(std::random_device{}() % (1ULL << 32));
  run.gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const core::NamedParams& params = run.net->params()->all();
  core::init_parameters(params, run.gen);
  {
    at::NoGradGuard no_grad;
    for (const auto& [name, p] : params) {
      // Class embeddings start at zero: every class begins as the unconditional model, which
      // is also exactly what --init from an unconditional model needs.
      if (name == "class_embedding.weight") p.zero_();
    }
    if (init_net) copy_init_weights(*init_net, s.init, params);
  }
  // Two parameter groups: the class embedding's rows are each trained only when their image is
  // in the batch (batch / classes of the steps), so they get a learning rate that much higher
  // (at least --lr) to move about as fast as the dense weights. Without --classes, one group.
  std::vector<at::Tensor> leaves, class_leaves;
  for (const auto& [name, p] : params) {
    p.requires_grad_(true);
    (name == "class_embedding.weight" ? class_leaves : leaves).push_back(p);
  }
  auto adamw = [&s](double lr) {
    return torch::optim::AdamWOptions(lr).betas({0.9, 0.99}).weight_decay(s.weight_decay);
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  std::vector<double> base_lr;  // per group, before the cooldown (a checkpoint stores the decayed one)
  groups.emplace_back(leaves, std::make_unique<torch::optim::AdamWOptions>(adamw(s.lr)));
  base_lr.push_back(s.lr);
  if (!class_leaves.empty()) {
    const double scale = std::max(1.0, static_cast<double>(s.unet.num_class_embeds) / (s.batch * s.accumulate));
    groups.emplace_back(class_leaves, std::make_unique<torch::optim::AdamWOptions>(adamw(s.lr * scale)));
    base_lr.push_back(s.lr * scale);
  }
  run.optimizer = std::make_unique<torch::optim::AdamW>(std::move(groups), adamw(s.lr));
  run.ema = std::make_unique<core::Ema>(run.ema_net->params()->all(), s.ema_decay, s.ema_every, s.ema_after);
  run.ema->copy_from(params);
  if (resume) {
    load_checkpoint(checkpoint, run, s.device);
    std::fprintf(stderr, "resuming %s at step %lld on %s\n", out.c_str(), static_cast<long long>(run.step),
                 s.device.str().c_str());
  } else {
    std::fprintf(stderr, "training %s: %zu images, %lld parameters, seed %llu, on %s\n", out.c_str(),
                 images.size(), static_cast<long long>(run.net->params()->count()),
                 static_cast<unsigned long long>(seed), s.device.str().c_str());
  }

  const core::DiffusionLoss loss(s.schedule, s.loss, s.offset_noise);
  models::DiffusersUNet* net = run.net.get();
  at::Tensor labels;  // class-conditional runs: [B] int64, each crop's image; set for every batch
  const core::ModelFn fn = [net, &labels](const at::Tensor& x, const at::Tensor& t,
                                          const std::optional<at::Tensor>& sc) {
    core::Conditioning cond;
    cond.class_labels = labels;
    cond.self_cond = sc;
    return net->forward(x, t, cond);
  };

  auto save = [&]() {
    save_checkpoint(checkpoint, s, run);
    models::write_diffusers_folder(out, s.unet, s.schedule, run.ema_net->params()->all());
    const std::string classes_file = (fs::path(out) / models::kClassNamesFile).string();
    if (s.classes) models::write_class_names(classes_file, data.names);
    else fs::remove(classes_file, ec);  // a folder reused from a --classes run
  };

  auto last_log = std::chrono::steady_clock::now();
  std::int64_t logged_step = run.step;
  double loss_sum = 0;
  int loss_count = 0;
  while (run.step < s.steps) {
    double step_loss = 0;
    for (int micro = 0; micro < s.accumulate; ++micro) {
      // Crops are cut on the CPU (the generator lives there), then moved: [B, 3, S, S].
      at::Tensor crop_labels;  // [B] int64: each crop's image
      const at::Tensor x0 = random_batch(images, s.batch, s.size, run.gen, &crop_labels).to(s.device);
      labels = s.classes ? crop_labels.to(s.device) : at::Tensor();
      at::Tensor value;
      {
        Bf16Autocast autocast(s.bf16, s.device.type());
        value = loss.compute(fn, x0, run.gen) / s.accumulate;
      }
      value.backward();
      step_loss += value.item<double>();
    }
    if (!std::isfinite(step_loss)) {
      throw Error("the loss became " + std::to_string(step_loss) + " at step " +
                  std::to_string(run.step + 1) + " (try a lower --lr)");
    }
    if (s.clip > 0) core::clip_grad_norm(params, s.clip);
    // The rate depends on the step alone, so a resumed run anneals exactly as an unbroken one.
    const double factor = core::cooldown_factor(run.step, s.steps, s.cooldown);
    for (std::size_t g = 0; g < base_lr.size(); ++g) {
      static_cast<torch::optim::AdamWOptions&>(run.optimizer->param_groups()[g].options()).lr(base_lr[g] * factor);
    }
    run.optimizer->step();
    run.optimizer->zero_grad();
    run.ema->update(params);
    ++run.step;
    loss_sum += step_loss;
    ++loss_count;
    if (run.step % s.log_every == 0 || run.step == s.steps) {
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - last_log).count();
      std::fprintf(stderr, "step %lld/%lld  loss %.5f  %.2f steps/s", static_cast<long long>(run.step),
                   static_cast<long long>(s.steps), loss_sum / loss_count,
                   seconds > 0 ? static_cast<double>(run.step - logged_step) / seconds : 0.0);
      if (s.cooldown > 0) std::fprintf(stderr, "  lr x%.3f", factor);
      std::fprintf(stderr, "\n");
      last_log = now;
      logged_step = run.step;
      loss_sum = 0;
      loss_count = 0;
    }
    if ((s.save_every > 0 && run.step % s.save_every == 0) || run.step == s.steps) save();
    if (s.sample_every > 0 && (run.step % s.sample_every == 0 || run.step == s.steps)) {
      char name[64];
      std::snprintf(name, sizeof name, "sample-%07lld.png", static_cast<long long>(run.step));
      write_sample_grid((state_dir / "samples" / name).string(), s, *run.ema_net, run.step);
    }
  }
  if (run.step >= s.steps && !fs::exists(fs::path(out) / "config.json")) save();
  std::fprintf(stderr, "done: %s (EMA weights, step %lld)\n", out.c_str(), static_cast<long long>(run.step));
  return 0;
}

}  // namespace gd::cli
