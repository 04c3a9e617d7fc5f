// Everything that defines and steers a training run, already validated (the CLI's `train`
// parses its options into this; see tools/cli/cli_train.cpp for the defaults).
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/schedule.h"
#include "core/training.h"
#include "models/diffusers_config.h"

namespace gd::training {

// Receives the run's progress, one line at a time without the newline ("step 50/1000 loss ...").
// The library prints nothing itself.
using TrainLog = std::function<void(const std::string& line)>;

struct TrainSettings {
  std::string data, out;  // the folder of PNGs; the diffusers folder written (OUT/training: state)
  bool resume = false;    // continue the run in OUT from its checkpoint
  std::string init;       // a diffusers folder whose weights start a new run ("" for none)
  std::optional<std::uint64_t> seed;  // none: a random one, logged

  // What the network is shown.
  int size = 64, batch = 16, accumulate = 1;
  double offset_noise = 0.0;
  bool tile = false;     // repeat images smaller than the crop (seamless textures)
  bool classes = false;  // one class per training image (class-conditional model)

  // The model and its objective.
  core::ScheduleConfig schedule;
  core::LossType loss = core::LossType::L2;
  models::UNet2DConfig unet;  // num_class_embeds is set from the data when `classes`

  // Optimizer and EMA.
  std::int64_t steps = 0;
  std::int64_t cooldown = 0;  // the last N steps before `steps` anneal the learning rate to 0
  double lr = 1e-4, weight_decay = 0, clip = 1, ema_decay = 0.995;
  int ema_every = 10, ema_after = 100;

  // Outputs: every N steps (0: only at the end, for saves; never, for samples).
  std::int64_t save_every = 0, sample_every = 0, log_every = 0;
  int sample_count = 4, sample_steps = 50;

  // Where and how the forward pass runs; none of these changes what the run is.
  c10::Device device = c10::Device(c10::kCPU);
  bool bf16 = false;
  int threads = 0;  // intra-op threads (0: LibTorch's default)

  // The text of the options that define the run, stored in the checkpoint so that --resume can
  // restore them and refuse changes (the keys are the CLI's option names).
  std::map<std::string, std::string> stored_options;
};

}  // namespace gd::training
