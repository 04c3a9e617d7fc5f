// What a gd::Model holds: the loaded network and the pipelines' view of it. Private to engine/.
#pragma once

#include "core/pipeline.h"
#include "engine/gimp_diffusion.h"
#include "models/model_loader.h"

namespace gd {

struct Model::Impl {
  models::LoadOptions load;
  models::LoadedModel loaded;
  core::PipelineModel pipeline;  // borrows loaded.network (Impl lives on the heap, never moves)
};

namespace engine_internal {
// The core options of a checked request (check_request.cpp): shared by check_request and run.
core::RunOptions run_options(const Model& model, const Request& r);
}  // namespace engine_internal

}  // namespace gd
