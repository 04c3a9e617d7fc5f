#include "plugin/config_request.h"

#include "plugin/model_path.h"

namespace gd::plugin {

namespace {

std::string get_string(GimpProcedureConfig* config, const char* name) {
  gchar* value = nullptr;
  g_object_get(config, name, &value, nullptr);
  std::string s = value ? value : "";
  g_free(value);
  return s;
}

bool has_property(GimpProcedureConfig* config, const char* name) {
  return g_object_class_find_property(G_OBJECT_GET_CLASS(config), name) != nullptr;
}

}  // namespace

PluginRequest read_config(Action action, GimpProcedureConfig* config) {
  PluginRequest p;
  Request& r = p.request;
  r.action = action;
  p.model_argument = get_string(config, "model");
  r.model_path = resolve_model_path(p.model_argument);
  r.sampler = get_string(config, "sampler");
  if (r.sampler == "default") r.sampler.clear();
  r.device = get_string(config, "device");
  if (has_property(config, "precision")) r.precision = get_string(config, "precision");
  r.class_name = get_string(config, "class");
  int steps = 0, seed = -1, threads = 0;
  double eta = 0.0, guidance = 0.0;
  g_object_get(config, "steps", &steps, "eta", &eta, "seed", &seed, "guidance", &guidance, nullptr);
  if (has_property(config, "threads")) g_object_get(config, "threads", &threads, nullptr);
  r.threads = threads;
  r.steps = steps;
  r.eta = eta;
  if (guidance != 0.0) r.guidance = guidance;  // 0: the model's default
  if (seed < 0) seed = g_random_int_range(0, G_MAXINT);
  r.seed = static_cast<std::uint64_t>(seed);
  p.new_layer = has_property(config, "output") && get_string(config, "output") == "new-layer";
  if (has_property(config, "seamless")) {
    gboolean seamless = FALSE;
    g_object_get(config, "seamless", &seamless, nullptr);
    r.seamless = seamless;
  }
  // Configs saved before tiling existed lack these: the engine's automatic choices then apply.
  if (has_property(config, "tile-size")) g_object_get(config, "tile-size", &r.tile_size, nullptr);
  if (has_property(config, "tile-overlap")) {
    int overlap = -1;
    g_object_get(config, "tile-overlap", &overlap, nullptr);
    if (overlap >= 0) r.tile_overlap = overlap;  // -1: automatic
  }
  if (has_property(config, "max-memory")) r.max_memory = get_string(config, "max-memory");
  if (action == Action::Img2img) g_object_get(config, "strength", &r.strength, nullptr);
  if (action == Action::Denoise) {
    double level = 0.0;
    g_object_get(config, "noise-level", &level, nullptr);
    if (level > 0) r.sigma = level;  // 0: estimated
  }
  return p;
}

std::string argument_message(const RequestError& error) {
  const std::string& field = error.field();
  const std::string text = error.what();
  if (field == "image") return "the area to process: " + text;
  std::string name = field == "class_name" ? "class" : field == "sigma" ? "noise-level" : field;
  for (char& c : name) c = c == '_' ? '-' : c;  // "tile_size" -> "tile-size"
  // "steps 101 exceeds ..." and "tile size must be ..." name the argument already, as the field
  // or in words; other sentences get it first.
  std::string words = field;
  for (char& c : words) c = c == '_' ? ' ' : c;
  for (const std::string& lead : {field, words}) {
    if (text.rfind(lead + " ", 0) == 0) return name + text.substr(lead.size());
  }
  return name + ": " + text;
}

}  // namespace gd::plugin
