#include "ui/model_chooser.h"

#include <algorithm>

namespace gd::ui {

namespace {

struct Chooser {
  GimpProcedureConfig* config = nullptr;
  std::vector<ModelChoice> choices;  // the combo's entries before the two "Other..." ones
  int active = -1;                   // the entry "model" holds, to return to after a cancel
  gulong changed = 0;
};

int other_file(const Chooser& c) { return static_cast<int>(c.choices.size()); }
int other_folder(const Chooser& c) { return static_cast<int>(c.choices.size()) + 1; }

std::string current_model(GimpProcedureConfig* config) {
  gchar* model = nullptr;
  g_object_get(config, "model", &model, nullptr);
  std::string value = model ? model : "";
  g_free(model);
  return value;
}

// A file chooser over the plug-in's dialog; the chosen path, or "" when cancelled.
std::string choose_path(GtkWidget* combo, bool folder) {
  GtkWidget* toplevel = gtk_widget_get_toplevel(combo);
  GtkWidget* chooser = gtk_file_chooser_dialog_new(
      folder ? "Model folder" : "Model file",
      GTK_IS_WINDOW(toplevel) ? GTK_WINDOW(toplevel) : nullptr,
      folder ? GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER : GTK_FILE_CHOOSER_ACTION_OPEN, "_Cancel",
      GTK_RESPONSE_CANCEL, "_Open", GTK_RESPONSE_ACCEPT, nullptr);
  std::string path;
  if (gtk_dialog_run(GTK_DIALOG(chooser)) == GTK_RESPONSE_ACCEPT) {
    gchar* p = gtk_file_chooser_get_filename(GTK_FILE_CHOOSER(chooser));
    if (p) path = p;
    g_free(p);
  }
  gtk_widget_destroy(chooser);
  return path;
}

void set_active(GtkComboBox* combo, Chooser* c, int index) {
  g_signal_handler_block(combo, c->changed);
  gtk_combo_box_set_active(combo, index);
  g_signal_handler_unblock(combo, c->changed);
  c->active = index;
}

// Inserts a path chosen by hand (or found in the config) before the "Other..." entries.
int add_path(GtkComboBoxText* combo, Chooser* c, const std::string& path) {
  const int index = static_cast<int>(c->choices.size());
  c->choices.push_back({path, path});
  gtk_combo_box_text_insert_text(combo, index, path.c_str());
  return index;
}

void on_changed(GtkComboBox* combo, gpointer data) {
  auto* c = static_cast<Chooser*>(data);
  int index = gtk_combo_box_get_active(combo);
  if (index == other_file(*c) || index == other_folder(*c)) {
    const std::string path = choose_path(GTK_WIDGET(combo), index == other_folder(*c));
    if (path.empty()) {
      set_active(combo, c, c->active);
      return;
    }
    auto same = std::find_if(c->choices.begin(), c->choices.end(),
                             [&](const ModelChoice& m) { return m.value == path; });
    index = same != c->choices.end() ? static_cast<int>(same - c->choices.begin())
                                     : add_path(GTK_COMBO_BOX_TEXT(combo), c, path);
    set_active(combo, c, index);
  }
  if (index < 0 || index >= static_cast<int>(c->choices.size())) return;
  c->active = index;
  g_object_set(c->config, "model", c->choices[index].value.c_str(), nullptr);
}

}  // namespace

GtkWidget* model_chooser_new(GimpProcedureConfig* config, std::vector<ModelChoice> choices) {
  auto* c = new Chooser;
  c->config = config;
  c->choices = std::move(choices);
  GtkWidget* combo = gtk_combo_box_text_new();
  for (const ModelChoice& m : c->choices) {
    gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), m.label.c_str());
  }
  gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), "Other model file...");
  gtk_combo_box_text_append_text(GTK_COMBO_BOX_TEXT(combo), "Other model folder...");
  gtk_widget_set_tooltip_text(combo,
                              "The default model, the models in <GIMP user folder>/"
                              "diffusion-models (format, native size), or any model folder or "
                              "checkpoint file");

  // Select what the config holds (last values, or a script's argument): a listed entry, else
  // the path itself.
  const std::string model = current_model(config);
  auto it = std::find_if(c->choices.begin(), c->choices.end(),
                         [&](const ModelChoice& m) { return m.value == model; });
  int index = it != c->choices.end() ? static_cast<int>(it - c->choices.begin())
              : model.empty()        ? -1
                                     : add_path(GTK_COMBO_BOX_TEXT(combo), c, model);
  gtk_combo_box_set_active(GTK_COMBO_BOX(combo), index);
  c->active = index;
  c->changed = g_signal_connect(combo, "changed", G_CALLBACK(on_changed), c);
  g_object_set_data_full(G_OBJECT(combo), "gd-model-chooser", c,
                         [](gpointer p) { delete static_cast<Chooser*>(p); });
  gtk_widget_show(combo);
  return combo;
}

}  // namespace gd::ui
