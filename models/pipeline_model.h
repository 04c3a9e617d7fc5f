// The pipelines' view of a loaded model: its network as a callback, plus the schedule, channels,
// sizes, device and dtype they need. Used by the engine (engine/) and the tests.
//
//   LoadedModel loaded = load_model(path, options);
//   core::PipelineModel model = pipeline_model(loaded, options);   // borrows loaded's network
#pragma once

#include "core/pipeline.h"
#include "models/model_loader.h"

namespace gd::models {

// The result refers to loaded.network, which must outlive it.
inline core::PipelineModel pipeline_model(const LoadedModel& loaded, const LoadOptions& options) {
  const Network* network = loaded.network.get();
  core::PipelineModel m;
  m.network = [network](const at::Tensor& x, const at::Tensor& t, const core::Conditioning& cond) {
    return network->forward(x, t, cond);
  };
  m.circular_padding = network->supports_circular_padding();
  m.num_classes = static_cast<int>(network->num_classes());
  m.generate_guidance = loaded.info.generate_guidance;
  m.schedule = loaded.schedule;
  m.channels = loaded.info.in_channels;
  m.downsampling_factor = loaded.info.downsampling_factor;
  m.native_width = loaded.info.native_width;
  m.native_height = loaded.info.native_height;
  m.device = options.device;
  m.dtype = options.dtype;
  return m;
}

}  // namespace gd::models
