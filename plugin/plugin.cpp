// gimp-diffusion: the GIMP 3 plug-in, three image procedures under Filters > Diffusion.
//
// The plug-in is split by role, as GIMP's multi-file plug-ins are:
//   procedures.cpp     the procedures, their arguments and return values
//   config_request.cpp the procedure config read into an engine Request
//   run_action.cpp     one run: dialog, model, pixels, the PDB boundary for errors
//   apply_result.cpp   the result written into the image (layers, selection, alpha, undo)
//   engine_bridge.cpp  pixel buffers in and out of the engine (engine/gimp_diffusion.h)
//   pixels.cpp, model_path.cpp  drawable pixels; which model a run uses
// This file is the plug-in object GIMP instantiates.
#include <libgimp/gimp.h>

#include <exception>
#include <string>

#include "plugin/procedures.h"

#define GD_TYPE_PLUG_IN (gd_plug_in_get_type())
G_DECLARE_FINAL_TYPE(GdPlugIn, gd_plug_in, GD, PLUG_IN, GimpPlugIn)

struct _GdPlugIn {
  GimpPlugIn parent_instance;
};

G_DEFINE_TYPE(GdPlugIn, gd_plug_in, GIMP_TYPE_PLUG_IN)

static GList* gd_plug_in_query_procedures(GimpPlugIn*) {
  GList* list = nullptr;
  for (const char* name : {gd::plugin::kGenerate, gd::plugin::kImg2img, gd::plugin::kDenoise,
                           gd::plugin::kInpaint, gd::plugin::kMakeSeamless}) {
    list = g_list_append(list, g_strdup(name));
  }
  return list;
}

static GimpProcedure* gd_plug_in_create_procedure(GimpPlugIn* plug_in, const gchar* name) {
  try {
    return gd::plugin::create_procedure(plug_in, name);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    g_printerr("gimp-diffusion: cannot create %s: %s\n", name,
               what.substr(0, what.find('\n')).c_str());
    return nullptr;
  }
}

static gboolean gd_plug_in_set_i18n(GimpPlugIn*, const gchar*, gchar**, gchar**) { return FALSE; }

static void gd_plug_in_class_init(GdPlugInClass* klass) {
  GimpPlugInClass* plug_in_class = GIMP_PLUG_IN_CLASS(klass);
  plug_in_class->query_procedures = gd_plug_in_query_procedures;
  plug_in_class->create_procedure = gd_plug_in_create_procedure;
  plug_in_class->set_i18n = gd_plug_in_set_i18n;
}

static void gd_plug_in_init(GdPlugIn*) {}

GIMP_MAIN(GD_TYPE_PLUG_IN)
