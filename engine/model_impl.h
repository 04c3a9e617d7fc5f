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

}  // namespace gd
