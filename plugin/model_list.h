// The models the dialog's drop-down offers: the default (bundled) model and those installed in
// <GIMP user folder>/diffusion-models, each with a one-line label from a header read (format and
// native size; no weights are read, so the dialog opens at once).
#pragma once

#include <string>
#include <vector>

#include "ui/procedure_dialog.h"

namespace gd::plugin {

// First the default model (value "": what an empty model argument runs), then the installed ones
// by name (value: the name, as scripts pass it). A model that cannot be read is listed with the
// reason instead of its description; nothing throws.
std::vector<gd::ui::ModelChoice> list_models();

}  // namespace gd::plugin
