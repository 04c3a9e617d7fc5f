// The pipelines' view of a loaded model: its network as a callback, plus the schedule, channels,
// sizes, device and dtype they need. Shared by the CLI, the plug-in and the tests.
//
//   LoadedModel loaded = load_model(path, options);
//   core::PipelineModel model = pipeline_model(loaded, options);   // borrows loaded's network
#pragma once

#include "core/pipeline.h"
#include "models/model_loader.h"

namespace gd::models {

// The result refers to loaded.network, which must outlive it.
inline core::PipelineModel pipeline_model(const LoadedModel& loaded, const LoadOptions& options) {
  Network* network = loaded.network.get();
  core::PipelineModel m;
  m.network = [network](const at::Tensor& x, const at::Tensor& t, const std::optional<at::Tensor>& sc) {
    return network->forward(x, t, sc);
  };
  m.set_seamless = [network](bool on) { return network->set_seamless(on); };
  m.num_classes = static_cast<int>(network->num_classes());
  m.set_class_labels = [network](const at::Tensor& labels) { network->set_class_labels(labels); };
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
