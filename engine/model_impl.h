// What a gd::Model holds: the loaded network and the pipelines' view of it. Private to engine/.
#pragma once

#include "core/memory_estimate.h"
#include "core/pipeline.h"
#include "engine/gimp_diffusion.h"
#include "models/model_loader.h"

namespace gd {

struct Model::Impl {
  models::LoadOptions load;
  models::LoadedModel loaded;
  core::PipelineModel pipeline;  // borrows loaded.network (Impl lives on the heap, never moves)
  core::NetworkMemory network_memory;  // measured at load (core/memory_estimate.h)
  double probe_seconds = 0.0;          // what measuring it took (tools/benchmark/load_time.cpp)
  bool probe_from_cache = false;       // read from the disk cache instead (models/load_cache.h)
};

// Sets network_memory, probe_seconds and probe_from_cache: the fit from the disk cache when this
// stack measured this architecture with this engine before, else measured and stored
// (memory_probe.cpp).
void probe_network_memory(Model::Impl& impl);

namespace engine_internal {

// The core options of a checked request (check_request.cpp): shared by check_request and run.
core::RunOptions run_options(const Model& model, const Request& r);

// The size a run works on: the generated images', or the input's.
struct RunSize {
  std::int64_t batch = 1, height = 0, width = 0;
};

// How a run goes through the network in bounded memory (tile_plan.cpp).
struct TilePlan {
  std::int64_t tile_height = 0, tile_width = 0, overlap = 0;  // for core::RunOptions
  std::int64_t per_call = 1;
  core::TileLayout layout;
  double estimate = 0.0;  // bytes: the peak the run is expected to add
  core::MemoryBudget budget;

  std::string describe() const;
};

// The windows of a checked request and their memory estimate; guided and best_fit as the check
// found them (guidance on some step, a best-fitting class search before the steps). Throws
// RequestError about "tile_size", "tile_overlap" or "max_memory" (a run too large for the budget
// even with the smallest windows, naming the size and the budget).
TilePlan plan_tiles(const Model& model, const Request& r, const RunSize& size,
                    const core::RunOptions& run, bool guided, bool best_fit);

}  // namespace engine_internal

}  // namespace gd
