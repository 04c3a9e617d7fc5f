// The one exception type of the engine (core/ and models/).
//
// Engine code throws gd::Error with a message that names the problem in one line
// ("model.safetensors: tensor 'conv_in.weight' ends at byte 9000 but the data has 4096").
// Boundaries (the CLI, the PDB procedures) catch it and turn it into a message and a status;
// nothing else should ever see an exception.
#pragma once

#include <stdexcept>
#include <string>

namespace gd {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace gd

namespace gd {

// Thrown when the user cancelled a run through a progress callback.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace gd
