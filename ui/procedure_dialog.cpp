#include "ui/procedure_dialog.h"

#include <libgimp/gimpui.h>

namespace gd::ui {

namespace {

bool has_property(GimpProcedureConfig* config, const char* name) {
  return g_object_class_find_property(G_OBJECT_GET_CLASS(config), name) != nullptr;
}

struct LabelUpdater {
  GimpProcedureConfig* config = nullptr;
  GtkLabel* label = nullptr;
  DescribeFn describe;
  guint pending = 0;
};

gboolean update_label_now(gpointer data) {
  auto* u = static_cast<LabelUpdater*>(data);
  u->pending = 0;
  gchar* model = nullptr;
  gchar* device = nullptr;
  g_object_get(u->config, "model", &model, "device", &device, nullptr);
  std::string text;
  try {
    text = u->describe(model ? model : "", device ? device : "auto");
  } catch (...) {
    text = "could not describe the model";
  }
  g_free(model);
  g_free(device);
  gtk_label_set_text(u->label, text.c_str());
  return G_SOURCE_REMOVE;
}

// Typing a path changes "model" at every key press: describe it once typing pauses.
void schedule_update(GObject*, GParamSpec*, gpointer data) {
  auto* u = static_cast<LabelUpdater*>(data);
  if (u->pending) g_source_remove(u->pending);
  u->pending = g_timeout_add(400, update_label_now, u);
}

}  // namespace

bool run_procedure_dialog(GimpProcedure* procedure, GimpProcedureConfig* config, const char* title,
                          DescribeFn describe, std::vector<ModelChoice> models) {
  GtkWidget* dialog = gimp_procedure_dialog_new(procedure, config, title);
  auto* dlg = GIMP_PROCEDURE_DIALOG(dialog);

  // Model: a drop-down (the "model" string underneath) and what the chosen model holds.
  GtkWidget* info = gimp_procedure_dialog_get_label(dlg, "model-info", "", FALSE, FALSE);
  gtk_label_set_line_wrap(GTK_LABEL(info), TRUE);
  gtk_label_set_xalign(GTK_LABEL(info), 0.0f);
  gtk_label_set_max_width_chars(GTK_LABEL(info), 60);
  gimp_procedure_dialog_get_label(dlg, "model-title", "Model", FALSE, FALSE);
  GtkWidget* model_box =
      gimp_procedure_dialog_fill_box(dlg, "model-box", "class", "guidance", "model-info", nullptr);
  GtkWidget* chooser = model_chooser_new(config, std::move(models));
  gtk_box_pack_start(GTK_BOX(model_box), chooser, FALSE, FALSE, 0);
  gtk_box_reorder_child(GTK_BOX(model_box), chooser, 0);
  gimp_procedure_dialog_fill_frame(dlg, "model-frame", "model-title", FALSE, "model-box");

  // Sampling.
  gimp_procedure_dialog_get_spin_scale(dlg, "steps", 1.0);
  gimp_procedure_dialog_get_label(dlg, "sampling-title", "Sampling", FALSE, FALSE);
  gimp_procedure_dialog_fill_box(dlg, "sampling-box", "sampler", "steps", "eta", "seed", "device",
                                 "precision", "threads", nullptr);
  gimp_procedure_dialog_fill_frame(dlg, "sampling-frame", "sampling-title", FALSE, "sampling-box");

  // Memory: whether the area goes through the network whole or in windows, within what budget.
  // Last, since the automatic choices suit most runs.
  gimp_procedure_dialog_get_label(dlg, "memory-title", "Memory", FALSE, FALSE);
  gimp_procedure_dialog_fill_box(dlg, "memory-box", "tile-size", "tile-overlap", "max-memory",
                                 nullptr);
  gimp_procedure_dialog_fill_frame(dlg, "memory-frame", "memory-title", FALSE, "memory-box");

  // The action's own options.
  GList* action = nullptr;
  for (const char* name :
       {"strength", "noise-level", "resample", "context-margin", "band", "output", "seamless"}) {
    if (has_property(config, name)) action = g_list_append(action, const_cast<char*>(name));
  }
  if (action) {
    gimp_procedure_dialog_get_label(dlg, "action-title", "Result", FALSE, FALSE);
    gimp_procedure_dialog_fill_box_list(dlg, "action-box", action);
    gimp_procedure_dialog_fill_frame(dlg, "action-frame", "action-title", FALSE, "action-box");
    g_list_free(action);
    gimp_procedure_dialog_fill(dlg, "model-frame", "sampling-frame", "action-frame", "memory-frame",
                               nullptr);
  } else {
    gimp_procedure_dialog_fill(dlg, "model-frame", "sampling-frame", "memory-frame", nullptr);
  }

  // eta only matters for DDIM.
  {
    GimpValueArray* ddim = gimp_value_array_new(1);
    GValue value = G_VALUE_INIT;
    g_value_init(&value, G_TYPE_STRING);
    g_value_set_string(&value, "ddim");
    gimp_value_array_append(ddim, &value);
    g_value_unset(&value);
    gimp_procedure_dialog_set_sensitive_if_in(dlg, "eta", nullptr, "sampler", ddim, TRUE);
  }

  LabelUpdater updater;
  updater.config = config;
  updater.label = GTK_LABEL(info);
  updater.describe = std::move(describe);
  gulong h1 = g_signal_connect(config, "notify::model", G_CALLBACK(schedule_update), &updater);
  gulong h2 = g_signal_connect(config, "notify::device", G_CALLBACK(schedule_update), &updater);
  update_label_now(&updater);

  const bool ok = gimp_procedure_dialog_run(dlg);

  g_signal_handler_disconnect(config, h1);
  g_signal_handler_disconnect(config, h2);
  if (updater.pending) g_source_remove(updater.pending);
  gtk_widget_destroy(dialog);
  return ok;
}

}  // namespace gd::ui
