#include "training/init_weights.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <map>

#include "core/error.h"
#include "models/model_loader.h"

namespace gd::training {

namespace {

// Copies --init's weights into the new run's parameters, name for name. Every parameter must be
// there with the same shape (the architecture options must match the model's), except the class
// embedding, which stays zero when the model has none or another number of classes.
void copy_init_weights(models::DiffusersUNet& init, const std::string& path,
                       const core::NamedParams& params, const TrainLog& log) {
  std::map<std::string, at::Tensor> source(init.params()->all().begin(),
                                           init.params()->all().end());
  for (const auto& [name, p] : params) {
    auto it = source.find(name);
    const bool same = it != source.end() && it->second.sizes().equals(p.sizes());
    if (name == "class_embedding.weight") {
      if (same) p.copy_(it->second);
      else
        log(std::string("--init: ") +
            (it == source.end()
                 ? "the model has no classes; the class embedding starts at zero"
                 : "the model has another number of classes; the class embedding starts at zero"));
      continue;
    }
    if (!same) {
      throw Error(path + ": --init model " +
                  (it == source.end()
                       ? "has no parameter " + name
                       : "has " + name + " of shape " + c10::str(it->second.sizes()) +
                             " where the run needs " + c10::str(p.sizes())) +
                  " (give the model's --block-channels, --layers-per-block, --attention-stages, "
                  "--norm-groups and --head-dim)");
    }
    p.copy_(it->second.to(p.device()));
  }
}

}  // namespace

std::unique_ptr<models::DiffusersUNet> load_init_model(const std::string& path) {
  models::LoadOptions options;
  options.channels_last = false;
  models::LoadedModel loaded = models::load_model(path, options);
  auto* unet = dynamic_cast<models::DiffusersUNet*>(loaded.network.get());
  if (!unet) {
    throw Error(path + ": --init needs a diffusers UNet2DModel folder (it is " +
                models::format_name(loaded.info.format) + ")");
  }
  loaded.network.release();
  return std::unique_ptr<models::DiffusersUNet>(unet);
}

void init_weights(const core::NamedParams& params, at::Generator& gen, models::DiffusersUNet* init,
                  const std::string& init_path, const TrainLog& log) {
  core::init_parameters(params, gen);
  at::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    // Class embeddings start at zero: every class begins as the unconditional model, which
    // is also exactly what --init from an unconditional model needs.
    if (name == "class_embedding.weight") p.zero_();
  }
  if (init) copy_init_weights(*init, init_path, params, log);
}

}  // namespace gd::training
