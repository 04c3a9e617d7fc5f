// The load cache (models/load_cache.h): records survive a round trip, anything damaged or foreign
// is ignored, a changed key misses, "off" loads as before, and what the kernel check and the
// memory probe read from it is what they would have measured.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/gimp_diffusion.h"
#include "engine/model_impl.h"
#include "models/conv_guard.h"
#include "models/load_cache.h"
#include "models/model_loader.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;
using gd::models::LoadCache;
using gd::test::data_path;

namespace {

// A fresh empty cache folder for one test, under the one tests/meson.build gives (in the build
// folder), never the user's; set as GIMP_DIFFUSION_CACHE_DIR.
std::string fresh_folder(const std::string& name) {
  const char* base = std::getenv("GD_TEST_CACHE_BASE");
  const fs::path folder = fs::path(base && *base ? base : "load-cache-tests") / name;
  fs::remove_all(folder);
  fs::create_directories(folder);
  ::setenv("GIMP_DIFFUSION_CACHE_DIR", folder.c_str(), 1);
  return folder.string();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// The one file of `kind` in `folder`.
fs::path only_file(const std::string& folder, const std::string& kind) {
  fs::path found;
  int n = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().filename().string().rfind(kind + "-", 0) == 0) {
      found = entry.path();
      ++n;
    }
  }
  EXPECT_EQ(n, 1) << kind << " files in " << folder;
  return found;
}

}  // namespace

TEST(LoadCache, RecordsSurviveARoundTrip) {
  const std::string folder = fresh_folder("round_trip");
  LoadCache cache = LoadCache::open("test", "0123456789abcdef");
  ASSERT_TRUE(cache.enabled());
  EXPECT_FALSE(cache.find("a key"));
  cache.put("a key", "a value");
  cache.put("another", "1.5 2 0");
  cache.put("a key", "replaced");
  cache.put("bad\tkey", "x");  // not one field: not stored
  cache.save();
  const LoadCache again = LoadCache::open("test", "0123456789abcdef");
  EXPECT_EQ(again.find("a key").value_or(""), "replaced");
  EXPECT_EQ(again.find("another").value_or(""), "1.5 2 0");
  EXPECT_FALSE(again.find("bad\tkey"));
  for (const auto& entry : fs::directory_iterator(folder)) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "no temporary file may be left behind";
  }
}

TEST(LoadCache, DamagedOrForeignFilesAreIgnoredAndRewritten) {
  const std::string folder = fresh_folder("damaged");
  {
    LoadCache cache = LoadCache::open("test", "00000000000000aa");
    cache.put("k1", "v1");
    cache.put("k2", "v2");
    cache.save();
  }
  const fs::path file = only_file(folder, "test");
  const std::string whole = read_text(file);
  const std::string damaged[] = {
      whole.substr(0, whole.size() - 4),               // truncated: no end line
      whole.substr(0, whole.find("k2")) + "end 2\n",   // end line counting too many
      "garbage\n\x01\x02\xff",                         // not ours at all
      std::string(LoadCache::kMaxFileBytes + 1, 'x'),  // too large to be ours
      "gimp-diffusion load cache 1 test 00000000000000bb\nk1\tv1\nend 1\n",  // another stack's
      whole.substr(0, whole.find("k2")) + "no tab here\nend 2\n",
  };
  for (const std::string& text : damaged) {
    write_text(file, text);
    LoadCache cache = LoadCache::open("test", "00000000000000aa");
    EXPECT_FALSE(cache.find("k1")) << text.substr(0, 60);
    cache.put("k3", "v3");
    cache.save();
    EXPECT_EQ(LoadCache::open("test", "00000000000000aa").find("k3").value_or(""), "v3")
        << "a damaged file is rewritten whole";
  }
}

TEST(LoadCache, AChangedKeyMisses) {
  fresh_folder("key_change");
  LoadCache cache = LoadCache::open("test", "1111111111111111");
  cache.put("conv out=8 in=8", "agree");
  cache.save();
  EXPECT_FALSE(LoadCache::open("test", "2222222222222222").find("conv out=8 in=8"))
      << "another stack";
  EXPECT_FALSE(LoadCache::open("other", "1111111111111111").find("conv out=8 in=8"))
      << "another kind";
  EXPECT_FALSE(LoadCache::open("test", "1111111111111111").find("conv out=8 in=16"));
  const std::string key = gd::models::stack_key("cpu");
  EXPECT_EQ(key.size(), 16u);
  EXPECT_EQ(key, gd::models::stack_key("cpu"));
  EXPECT_NE(key, gd::models::stack_key("unknown-device")) << "unknown devices are not cached";
  EXPECT_EQ(gd::models::fnv1a("a"), 0xaf63dc4c8601ec8cULL) << "FNV-1a's published value";
}

TEST(LoadCache, OffOrUnwritableLoadsAsWithout) {
  for (const char* setting : {"off", "/proc/gimp-diffusion-cannot-be-made"}) {
    SCOPED_TRACE(setting);
    ::setenv("GIMP_DIFFUSION_CACHE_DIR", setting, 1);
    EXPECT_FALSE(LoadCache::open("conv", gd::models::stack_key("cpu")).enabled());
    gd::models::forget_known_convolutions();
    const gd::models::LoadedModel model = gd::models::load_model(data_path("diffusers-tiny/model"));
    if (!model.kernel_check.ran) continue;  // GD_NO_KERNEL_CHECK
    EXPECT_EQ(model.kernel_check.from_disk, 0);
    EXPECT_EQ(model.kernel_check.checked, model.kernel_check.configurations);
  }
}

namespace {

// The names of the weights `routes` sends to LibTorch's own kernel.
std::string rerouted_names(const gd::models::ParamStore& params,
                           const gd::models::ConvRoutes& routes) {
  std::string names;
  for (const auto& [name, w] : params.all()) {
    if (routes.slow(w)) names += name + " ";
  }
  return names;
}

}  // namespace

// A verdict read from disk decides the route like one measured now: the real verdicts give the
// same routes from the cache as measured, and a stored "disagree" reroutes its layers.
TEST(LoadCache, VerdictsFromTheCacheRerouteAsMeasured) {
  if (!gd::models::kernel_check_wanted()) GTEST_SKIP() << "GD_NO_KERNEL_CHECK is set";
  const std::string folder = fresh_folder("verdicts");
  gd::models::LoadOptions options;
  options.kernel_check = false;  // checked by hand below
  const gd::models::LoadedModel model =
      gd::models::load_model(data_path("diffusers-tiny/model"), options);
  const gd::models::ParamStore& params = *model.network->params();

  gd::models::ConvCheckReport measured;
  gd::models::forget_known_convolutions();
  const std::string measured_routes =
      rerouted_names(params, gd::models::check_convolutions(params, true, &measured));
  EXPECT_EQ(measured.checked, measured.configurations);
  EXPECT_EQ(measured.from_disk, 0);

  gd::models::ConvCheckReport known;
  gd::models::forget_known_convolutions();
  const std::string known_routes =
      rerouted_names(params, gd::models::check_convolutions(params, true, &known));
  EXPECT_EQ(known.from_disk, measured.configurations) << "every verdict from the disk";
  EXPECT_EQ(known.checked, 0);
  EXPECT_EQ(known_routes, measured_routes);
  EXPECT_EQ(known.rerouted, measured.rerouted);

  // Mark the first configuration's verdict "disagree": its layers must be rerouted.
  const fs::path file = only_file(folder, "conv");
  std::string text = read_text(file);
  const std::size_t line = text.find('\n') + 1, tab = text.find('\t', line);
  const std::size_t end = text.find('\n', tab);
  const std::string key = text.substr(line, tab - line);  // "conv out=O in=I kernel=K ..."
  text.replace(tab + 1, end - tab - 1, "disagree");
  write_text(file, text);
  std::int64_t out = 0, in = 0, kernel = 0;
  ASSERT_EQ(std::sscanf(key.c_str(), "conv out=%ld in=%ld kernel=%ld", &out, &in, &kernel), 3)
      << key;

  gd::models::ConvCheckReport told;
  gd::models::forget_known_convolutions();
  const gd::models::ConvRoutes routes = gd::models::check_convolutions(params, true, &told);
  EXPECT_EQ(told.from_disk, measured.configurations);
  int matching = 0;
  for (const auto& [name, w] : params.all()) {
    if (w.dim() != 4 || w.size(0) != out || w.size(1) != in || w.size(2) != kernel) continue;
    ++matching;
    EXPECT_TRUE(routes.slow(w)) << name << " has the disagreeing configuration " << key;
  }
  EXPECT_GT(matching, 0);
  EXPECT_GE(told.rerouted, measured.rerouted + (measured_routes.empty() ? 1 : 0));
  gd::models::forget_known_convolutions();  // later tests measure again
}

// The memory probe's fit read back is the measured one, bit for bit.
TEST(LoadCache, ProbeFromTheCacheEqualsTheMeasuredFit) {
  fresh_folder("probe");
  gd::Request request;
  request.model_path = data_path("diffusers-tiny/model");
  const gd::Model measured = gd::load_model(request);
  EXPECT_FALSE(measured.impl().probe_from_cache);
  const gd::Model known = gd::load_model(request);
  EXPECT_TRUE(known.impl().probe_from_cache);
  EXPECT_EQ(known.memory_probe(), "network memory known from the cache");
  const gd::core::NetworkMemory& a = measured.impl().network_memory;
  const gd::core::NetworkMemory& b = known.impl().network_memory;
  EXPECT_GT(a.per_pixel, 0.0);
  EXPECT_EQ(a.fixed, b.fixed);
  EXPECT_EQ(a.per_pixel, b.per_pixel);
  EXPECT_EQ(a.per_pixel_squared, b.per_pixel_squared);

  ::setenv("GIMP_DIFFUSION_CACHE_DIR", "off", 1);
  const gd::Model off = gd::load_model(request);
  EXPECT_FALSE(off.impl().probe_from_cache);
  EXPECT_EQ(off.impl().network_memory.per_pixel, a.per_pixel) << "the probe is deterministic";
}
