#include "models/model_loader.h"

#include <ATen/Context.h>

#include <ATen/ATen.h>

#include <utility>

#include "models/ddpm_pytorch_unet.h"
#include "models/diffusers_unet.h"
#include "models/model_header.h"
#include "models/safetensors_reader.h"
#include "models/torch_zip_reader.h"
#include "models/torchscript_network.h"

namespace gd::models {

namespace {

// The description comes from model_header.cpp (what read_model_info reads); loading adds the
// weights, the network, and the network's own parameter count.

LoadedModel load_diffusers(model_header::DiffusersModel described, const LoadOptions& options) {
  LoadedModel model;
  model.schedule = std::move(described.schedule);
  // Each RawTensor keeps its mapped file alive, so the pickle tree can go.
  const std::string& file = described.weights_path;
  TensorMap weights = described.safetensors ? read_safetensors(file)
                                            : state_dict_tensors(read_torch_checkpoint(file), file);
  rename_legacy_attention_keys(weights);

  auto network = std::make_unique<DiffusersUNet>(
      described.config, at::TensorOptions().dtype(options.dtype).device(options.device));
  network->params()->load(weights, "", file);

  model.info = std::move(described.info);
  model.info.parameter_count = network->params()->count();
  model.network = std::move(network);
  return model;
}

LoadedModel load_ddpm_pytorch(model_header::DdpmModel described, const LoadOptions& options) {
  std::unique_ptr<DdpmUnet> network = make_ddpm_unet(
      described.checkpoint, at::TensorOptions().dtype(options.dtype).device(options.device),
      described.info.path);
  LoadedModel model;
  model.schedule = std::move(described.schedule);
  model.info = std::move(described.info);
  model.info.parameter_count = network->params()->count();
  model.ddpm = std::move(described.checkpoint.diffusion);
  model.network = std::move(network);
  return model;
}

// A TorchScript module's 4-D weights checked like our networks' (as convolutions, in the
// contiguous layout the module receives). Its convolutions cannot be rerouted one by one, so a
// disagreement turns oneDNN off for the process: every later convolution runs on LibTorch's own
// kernels (slower, right).
void check_torchscript_convolutions(const Network& network, ConvCheckReport* report) {
  const auto* ts = dynamic_cast<const TorchScriptNetwork*>(&network);
  if (ts == nullptr) return;
  const auto weights = ts->four_d_parameters();
  if (weights.empty()) return;
  ParamStore copies(weights.front().second.options());
  for (const auto& [name, w] : weights) copies.add(name, w.sizes().vec()).copy_(w);
  check_convolutions(copies, /*channels_last=*/false, report);
  if (report->rerouted > 0 && at::globalContext().userEnabledMkldnn()) {
    at::globalContext().setUserEnabledMkldnn(false);
    report->onednn_disabled = true;
  }
}

LoadedModel load_torchscript(model_header::TorchScriptModel described, const LoadOptions& options) {
  auto network = std::make_unique<TorchScriptNetwork>(described.module_path, options.device);
  LoadedModel model;
  model.schedule = std::move(described.schedule);
  model.info = std::move(described.info);
  model.info.parameter_count = network->parameter_count();
  model.network = std::move(network);
  return model;
}

}  // namespace

void exact_float32_on(const c10::Device& device) {
  // LibTorch lets cuDNN convolutions use TF32 (10-bit mantissas) by default, which puts images
  // ~1e-3 off the reference. The setting only touches float32 maths, so bf16 and fp16 models are
  // unaffected; it is process-wide, like LibTorch's own.
  if (device.is_cuda()) {
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
  }
}

LoadedModel load_model(const std::string& path, const LoadOptions& options) {
  exact_float32_on(options.device);
  const model_header::ModelSource source = model_header::find_model_source(path, options);
  LoadedModel model;
  switch (source.format) {
    case CheckpointFormat::Diffusers:
      model = load_diffusers(model_header::read_diffusers(source.path), options);
      break;
    case CheckpointFormat::TorchScript:
      model = load_torchscript(model_header::read_torchscript(source.path), options);
      break;
    case CheckpointFormat::DdpmPytorch:
      model = load_ddpm_pytorch(model_header::read_ddpm(source.path, options), options);
      break;
  }
  ParamStore* params = model.network->params();
  if (options.channels_last && params) params->to_channels_last();
  if (options.kernel_check && kernel_check_wanted() && params) {
    model.network->set_conv_routes(
        check_convolutions(*params, options.channels_last, &model.kernel_check));
  } else if (options.kernel_check && kernel_check_wanted() && !params) {
    check_torchscript_convolutions(*model.network, &model.kernel_check);
  }
  return model;
}

}  // namespace gd::models
