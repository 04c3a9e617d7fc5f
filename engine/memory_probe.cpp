// The network memory probe at load (core/memory_estimate.h), through the disk cache
// (models/load_cache.h): the fit depends on the architecture, the stack and our forward code, not
// on the weights' values, so a second start reads it instead of running the network six times.
#include <charconv>
#include <chrono>
#include <filesystem>
#include <sstream>

#include "core/device.h"
#include "engine/model_impl.h"
#include "models/load_cache.h"

namespace gd {

namespace {

// The program or library this engine was linked into: a rebuild may change the forward passes,
// and with them the memory they use.
std::string engine_identity() {
  return models::library_identity(reinterpret_cast<const void*>(&engine_identity));
}

// The architecture: every parameter's name and shape, or for a TorchScript module (which owns
// its parameters) the module files' sizes and times.
std::string architecture_hash(Model::Impl& impl) {
  std::ostringstream text;
  if (const models::ParamStore* params = impl.loaded.network->params()) {
    for (const auto& [name, tensor] : params->all()) text << name << tensor.sizes() << ";";
  } else {
    namespace fs = std::filesystem;
    const std::string& path = impl.loaded.info.path;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        text << entry.path().filename().string() << " "
             << models::file_identity(entry.path().string()) << ";";
      }
    } else {
      text << path << " " << models::file_identity(path);
    }
  }
  return models::hex64(models::fnv1a(text.str()));
}

std::string memory_key(Model::Impl& impl, const std::string& engine) {
  const core::PipelineModel& m = impl.pipeline;
  return "memory " + core::precision_name(m.dtype) + " " + m.device.str() +
         " channels=" + std::to_string(m.channels) +
         " factor=" + std::to_string(m.downsampling_factor) +
         " classes=" + std::to_string(m.num_classes) +
         " attention=" + std::to_string(impl.loaded.info.attention ? 1 : 0) +
         " native=" + std::to_string(m.native_height) + "x" + std::to_string(m.native_width) +
         " architecture=" + architecture_hash(impl) +
         " engine=" + models::hex64(models::fnv1a(engine));
}

// Shortest round-trip text of the three doubles (std::to_chars: exact and locale-free).
std::string format_fit(const core::NetworkMemory& fit) {
  std::string text;
  for (const double v : {fit.fixed, fit.per_pixel, fit.per_pixel_squared}) {
    char buffer[64];
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, v).ptr;
    text += (text.empty() ? "" : " ") + std::string(buffer, end);
  }
  return text;
}

std::optional<core::NetworkMemory> parse_fit(const std::string& text) {
  double v[3];
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 3; ++i) {
    if (i > 0 && (p == end || *p++ != ' ')) return std::nullopt;
    const auto [next, ec] = std::from_chars(p, end, v[i]);
    if (ec != std::errc() || !(v[i] >= 0.0)) return std::nullopt;  // also refuses NaN
    p = next;
  }
  if (p != end) return std::nullopt;
  return core::NetworkMemory{v[0], v[1], v[2]};
}

}  // namespace

void probe_network_memory(Model::Impl& impl) {
  const auto start = std::chrono::steady_clock::now();
  const core::PipelineModel& m = impl.pipeline;
  const std::string engine = engine_identity();
  models::LoadCache cache =
      models::LoadCache::open("memory", engine.empty() ? "" : models::stack_key(m.device.str()));
  const std::string key = cache.enabled() ? memory_key(impl, engine) : "";
  const std::optional<std::string> stored = cache.find(key);  // none when disabled
  const std::optional<core::NetworkMemory> known = stored ? parse_fit(*stored) : std::nullopt;
  impl.probe_from_cache = known.has_value();
  if (known) {
    impl.network_memory = *known;
  } else {
    impl.network_memory =
        core::measure_network_memory(m.network, at::TensorOptions().device(m.device).dtype(m.dtype),
                                     m.channels, m.downsampling_factor, m.num_classes,
                                     impl.loaded.info.attention, m.native_height, m.native_width);
    const core::NetworkMemory& fit = impl.network_memory;
    if (fit.fixed > 0 || fit.per_pixel > 0 || fit.per_pixel_squared > 0) {  // zeros: not measured
      cache.put(key, format_fit(fit));
      cache.save();
    }
  }
  impl.probe_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace gd
