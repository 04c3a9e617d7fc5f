// A small text file of a model folder (config.json, scheduler_config.json, guidance.json) read
// whole, with a size limit, so that a stray huge file is an error and not an allocation.
#pragma once

#include <string>

namespace gd::models {

// The file's bytes. Throws gd::Error "<path>: no such file", "<path>: cannot be read" or
// "<path>: too large for a configuration file" (over 64 MiB).
std::string read_text_file(const std::string& path);

}  // namespace gd::models
