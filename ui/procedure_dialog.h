// The plug-in's dialog: widgets built from the procedure's config only, no engine code.
//
// Groups: Model (a drop-down of models, ui/model_chooser.h, and a label describing the chosen
// one), Sampling (sampler, steps, eta, seed, device), the action's own options (strength / noise
// level, output) and Memory. The label is filled by `describe`, a callback the plug-in provides
// (a header read through the engine bridge, no weights), called again shortly after the model or
// the device changes.
#pragma once

#include <libgimp/gimp.h>

#include <functional>
#include <string>
#include <vector>

#include "ui/model_chooser.h"

namespace gd::ui {

// (model path as typed, device nick) -> one line for the model label.
using DescribeFn = std::function<std::string(const std::string& model, const std::string& device)>;

// Shows the dialog; true when the user pressed OK (the config then holds the choices).
// `models`: the drop-down's entries. gimp_ui_init must have been called.
bool run_procedure_dialog(GimpProcedure* procedure, GimpProcedureConfig* config, const char* title,
                          DescribeFn describe, std::vector<ModelChoice> models);

}  // namespace gd::ui
