// A new run's starting weights: PyTorch's default initialisation drawn from the run's
// generator, class embeddings at zero, and optionally the weights of an existing model (--init).
#pragma once

#include <ATen/core/Generator.h>

#include <memory>
#include <string>

#include "core/training.h"
#include "models/diffusers_unet.h"
#include "training/train_settings.h"

namespace gd::training {

// The diffusers folder given to --init, read in float32 on the CPU. Read before the run writes
// anything, so a bad --init leaves no run behind.
std::unique_ptr<models::DiffusersUNet> load_init_model(const std::string& path);

// Initialises `params` from `gen` (always, so a run draws the same numbers after it with or
// without --init), zeroes the class embedding, then copies `init`'s weights when given (from
// the folder `init_path`). Logs through `log` when the class embedding cannot be copied.
void init_weights(const core::NamedParams& params, at::Generator& gen, models::DiffusersUNet* init,
                  const std::string& init_path, const TrainLog& log);

}  // namespace gd::training
