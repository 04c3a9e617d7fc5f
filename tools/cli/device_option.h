// --device auto|cpu|cuda for train: the engine's rule (core/device.h), in the CLI's words.
#pragma once

#include <c10/core/Device.h>

#include <string>

namespace gd::cli {

// As core::parse_device; an unknown name is a UsageError naming --device.
c10::Device parse_device(const std::string& text);

}  // namespace gd::cli
