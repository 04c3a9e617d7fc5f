// A model folder's default guidance for Generate: guidance.json beside config.json, e.g.
//
//   {"generate": {"scale": 2.0, "below_timestep": 500}}
//
// written for the bundled model by tools/package-bundled-model.py, from the measurements in its
// model card. diffusers ignores the file; models without it generate unguided.
#pragma once

#include <cstdint>
#include <string>

#include "core/guidance.h"

namespace gd::models {

inline constexpr const char* kGuidanceFile = "guidance.json";

// The guidance in `path`, or the default (off) when the file does not exist. Throws gd::Error
// naming the problem when it exists but is not valid JSON of that shape, when a value is out of
// range, or when the model has no classes to guide with.
core::Guidance read_generate_guidance(const std::string& path, std::int64_t num_classes,
                                      int num_train_timesteps);

}  // namespace gd::models
