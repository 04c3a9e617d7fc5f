// Running one procedure: dialog, config to request, model, pixels, result, return values. The
// PDB boundary: every exception stops here and becomes one line and GIMP_PDB_EXECUTION_ERROR.
#pragma once

#include <libgimp/gimp.h>

#include "engine/gimp_diffusion.h"

namespace gd::plugin {

GimpValueArray* run_action(Action action, GimpProcedure* procedure, GimpRunMode run_mode,
                           GimpImage* image, GimpDrawable** drawables, GimpProcedureConfig* config);

}  // namespace gd::plugin
