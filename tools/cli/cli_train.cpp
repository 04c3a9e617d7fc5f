// gimp-diffusion-cli train: the options of a training run, checked and turned into a
// training::TrainSettings, then training::train() (training/trainer.h, which describes the run
// and the files it writes).
//
// Options that define the run are stored in its checkpoint: a --resume defaults to them and
// refuses most changes, so a run cannot silently become another one halfway.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"
#include "tools/cli/cli_args.h"
#include "tools/cli/commands.h"
#include "tools/cli/device_option.h"
#include "training/checkpoint_io.h"
#include "training/trainer.h"

namespace gd::cli {

namespace {

using Options = std::map<std::string, std::string>;  // option name -> text

// Options that define the run: on --resume they default to the checkpoint's values and may not
// be changed, except those in kChangeableOnResume (below). The others (steps, save/sample
// intervals, threads, logging, --device, --bf16) may: the device and bf16 autocast only change
// where and how the forward pass is computed (the weights, the optimizer and the EMA stay
// float32), so a run may switch between sessions.
const std::vector<std::pair<std::string, std::string>> kFixedDefaults = {
    {"size", "64"},
    {"offset-noise", "0"},
    {"batch", "16"},
    {"lr", "1e-4"},
    {"weight-decay", "0"},
    {"objective", "epsilon"},
    {"schedule", "linear"},
    {"timesteps", "1000"},
    {"loss", "l2"},
    {"accumulate", "1"},
    {"clip", "1.0"},
    {"ema-decay", "0.995"},
    {"ema-every", "10"},
    {"ema-after", "100"},
    {"block-channels", "32,64,128"},
    {"layers-per-block", "2"},
    {"attention-stages", "last"},
    {"norm-groups", "32"},
    {"head-dim", "8"},
    {"tile", "no"},
    {"classes", "no"}};
// Fixed options that a resumed run may still change (they default to the checkpoint's value):
// the crop size and the offset noise shape what the network is shown, not the network, so a run
// may go on at larger crops (coherence over a wider area; the network is fully convolutional)
// or with offset noise, as a fine-tuning phase.
const std::set<std::string> kChangeableOnResume = {"size", "offset-noise"};
const std::vector<std::pair<std::string, std::string>> kFreeDefaults = {
    {"steps", "10000"},    {"save-every", "1000"}, {"sample-every", "1000"},
    {"sample-count", "4"}, {"sample-steps", "50"}, {"log-every", "50"},
    {"threads", "0"},      {"device", "auto"},     {"cooldown", "0"}};

double parse_double(const std::string& name, const std::string& text, double lo, double hi,
                    bool open_low = false) {
  const double value = parse_real(name, text);
  if (value < lo || value > hi || (open_low && value == lo)) {
    char range[96];
    std::snprintf(range, sizeof range, "%s %g and at most %g", open_low ? "above" : "at least", lo,
                  hi);
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

// The run's typed settings from the option texts in `r`, each value validated.
void interpret_run(Options& r, training::TrainSettings& s) {
  s.size = static_cast<int>(parse_integer("size", r["size"], 1, 4096));
  s.batch = static_cast<int>(parse_integer("batch", r["batch"], 1, 4096));
  s.offset_noise = parse_double("offset-noise", r["offset-noise"], 0, 1);
  s.steps = parse_integer("steps", r["steps"], 1, 1LL << 40);
  s.cooldown = parse_integer("cooldown", r["cooldown"], 0, 1LL << 40);
  if (s.cooldown > s.steps) {
    throw UsageError("--cooldown " + r["cooldown"] + " is longer than the run (--steps " +
                     r["steps"] + ")");
  }
  s.lr = parse_double("lr", r["lr"], 0, 1, true);
  s.weight_decay = parse_double("weight-decay", r["weight-decay"], 0, 1);
  const std::string& obj = r["objective"];
  if (obj == "epsilon" || obj == "pred_noise")
    s.schedule.prediction_type = core::PredictionType::Epsilon;
  else if (obj == "sample" || obj == "x0" || obj == "pred_x0")
    s.schedule.prediction_type = core::PredictionType::Sample;
  else if (obj == "v" || obj == "v_prediction" || obj == "pred_v")
    s.schedule.prediction_type = core::PredictionType::V;
  else throw UsageError("--objective must be epsilon, sample or v, not '" + obj + "'");
  const std::string& sched = r["schedule"];
  if (sched == "linear") s.schedule.beta_schedule = core::BetaSchedule::Linear;
  else if (sched == "squaredcos_cap_v2" || sched == "cosine")
    s.schedule.beta_schedule = core::BetaSchedule::SquaredCosCapV2;
  else if (sched == "sigmoid") s.schedule.beta_schedule = core::BetaSchedule::Sigmoid;
  else
    throw UsageError("--schedule must be linear, squaredcos_cap_v2 or sigmoid, not '" + sched +
                     "'");
  s.schedule.num_train_timesteps =
      static_cast<int>(parse_integer("timesteps", r["timesteps"], 2, 100000));
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
    throw UsageError("--sample-steps " + r["sample-steps"] + " exceeds --timesteps " +
                     r["timesteps"]);
  }
}

// The UNet's architecture from the option texts in `r` (after interpret_run: it needs s.size).
void interpret_unet(Options& r, training::TrainSettings& s) {
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
      const long long stage =
          parse_integer("attention-stages", part, 0, static_cast<long long>(stages) - 1);
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
    c.down_blocks.push_back(attention[i] ? models::UNet2DBlock::Attention
                                         : models::UNet2DBlock::Plain);
    c.up_blocks.push_back(attention[stages - 1 - i] ? models::UNet2DBlock::Attention
                                                    : models::UNet2DBlock::Plain);
  }
  c.in_channels = c.out_channels = 3;
  c.sample_height = c.sample_width = s.size;
  try {
    c.validate("model options");
  } catch (const Error& e) {
    throw UsageError(std::string("--block-channels, --norm-groups and --head-dim do not build a "
                                 "UNet: ") +
                     e.what());
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
training::TrainSettings parse_settings(const Args& args, const nlohmann::json* stored) {
  training::TrainSettings s;
  Options raw;  // every option's text, defaults filled in
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
      raw[key] = given.value_or(old);
    } else {
      raw[key] = given.value_or(def);
    }
  }
  for (const auto& [key, def] : kFreeDefaults) raw[key] = args.value(key).value_or(def);
  raw["bf16"] = args.flag("bf16") ? "yes" : "no";
  if (auto seed = args.value("seed")) {
    s.seed = static_cast<std::uint64_t>(parse_integer("seed", *seed, 0, 1LL << 53));
  }
  for (const auto& [key, def] : kFixedDefaults) s.stored_options[key] = raw[key];
  interpret_run(raw, s);
  interpret_unet(raw, s);
  return s;
}

}  // namespace

int run_train(const std::vector<std::string>& argv) {
  const Args args(argv, valued_options(), kFlags);
  const std::string out = args.required("out");
  // Parse everything before writing anything, so a bad option is the only output. On --resume
  // the options are read on top of the checkpoint's (a subset alone may not build a UNet).
  training::TrainSettings s;
  if (args.flag("resume")) {
    const nlohmann::json stored = training::read_stored_settings(out);
    s = parse_settings(args, &stored);
  } else {
    s = parse_settings(args, nullptr);
  }
  training::train(s, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  return 0;
}

}  // namespace gd::cli
