// The class errors that the engine, the networks and the class-name lookup all raise, in the
// same words wherever they are found.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"

namespace gd {

inline Error not_class_conditional() {
  return Error("this model is not class-conditional: it takes no class");
}

// label: the class as the user wrote it (a number, possibly negative).
inline Error class_out_of_range(const std::string& label, std::int64_t count) {
  return Error("class " + label + " is out of range: this model has " + std::to_string(count) +
               " classes (0 to " + std::to_string(count - 1) + ")");
}

}  // namespace gd
