// Reading a diffusers scheduler_config.json into a ScheduleConfig.
#pragma once

#include <string>

#include "core/schedule.h"

namespace gd::core {

// Parses the JSON text; `source` names the file in error messages. Keys diffusers does not
// write are left at diffusers' DDPMScheduler defaults; unknown values (a beta schedule or
// prediction type we do not implement) are errors that name the key and the value.
ScheduleConfig parse_scheduler_config(const std::string& json_text, const std::string& source);

}  // namespace gd::core
