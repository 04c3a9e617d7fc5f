// The dialog's model drop-down, bound to the procedure config's "model" string: the entries the
// plug-in lists (the default model, the installed ones), the path already in the config when it
// is none of those, and "Other model file..." / "Other model folder..." entries that open a file
// chooser. Choosing an entry sets "model" to its value, so the PDB argument stays a string.
#pragma once

#include <libgimp/gimpui.h>

#include <string>
#include <vector>

namespace gd::ui {

struct ModelChoice {
  std::string value;  // what the "model" argument gets: "", a name or a path
  std::string label;  // what the drop-down shows
};

// A new combo box (owned by the widget tree it is packed into; its state is freed with it).
GtkWidget* model_chooser_new(GimpProcedureConfig* config, std::vector<ModelChoice> choices);

}  // namespace gd::ui
