// Progress pictures of a run: a grid of images sampled from the EMA weights.
#pragma once

#include <string>

#include "models/diffusers_unet.h"
#include "training/train_settings.h"

namespace gd::training {

// Samples s.sample_count images of s.size x s.size from `ema_net` (DDIM, s.sample_steps steps,
// always seed 1234: the same noise at every checkpoint, so successive grids show the training's
// progress and nothing else) and writes them as one 8-bit PNG grid with 2-pixel white gutters.
void write_sample_grid(const std::string& path, const TrainSettings& s,
                       models::DiffusersUNet& ema_net);

}  // namespace gd::training
