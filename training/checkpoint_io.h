// A run's state on disk: OUT/training/checkpoint.pt holds the weights, the EMA, the optimizer,
// the step, the generator's state and the options that define the run. A run resumed from it
// continues exactly as if it had not stopped (bit for bit on the CPU).
#pragma once

#include <c10/core/Device.h>

#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "training/run_state.h"

namespace gd::training {

// OUT/training (the checkpoint and samples/) and OUT/training/checkpoint.pt.
std::string state_folder(const std::string& out);
std::string checkpoint_path(const std::string& out);

// Refuses to resume without a checkpoint, or to start a new run over an existing one: both are
// gd::Errors, raised before anything is written.
void check_run_folder(const std::string& out, bool resume);

// The stored options of the run in OUT (as save_checkpoint wrote them), for --resume to
// default to; the checkpoint must exist.
nlohmann::json read_stored_settings(const std::string& out);

// Writes `path` through a temporary file and a rename, so an interruption leaves the previous
// checkpoint whole.
void save_checkpoint(const std::string& path,
                     const std::map<std::string, std::string>& stored_options, RunState& run);

// Restores `run` (built with the same architecture) from `path`, reading the tensors onto
// `device` whichever device wrote them.
void load_checkpoint(const std::string& path, RunState& run, c10::Device device);

}  // namespace gd::training
