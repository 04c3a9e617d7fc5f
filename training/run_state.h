// The state of a training run in memory: what a checkpoint saves and restores, and what the
// loop advances.
#pragma once

#include <ATen/core/Generator.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/training.h"
#include "models/diffusers_unet.h"

namespace gd::training {

struct RunState {
  std::unique_ptr<models::DiffusersUNet> net, ema_net;  // trained weights; their EMA (sampled)
  std::unique_ptr<torch::optim::AdamW> optimizer;
  // Per parameter group, before the cooldown. Not saved: it follows from the settings, while
  // the optimizer in a checkpoint holds the decayed rate of its last step.
  std::vector<double> base_lr;
  std::unique_ptr<core::Ema> ema;
  at::Generator gen;      // on the CPU: every random number of the run
  std::int64_t step = 0;  // optimizer steps taken
};

}  // namespace gd::training
