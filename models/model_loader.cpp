#include "models/model_loader.h"

#include <ATen/Context.h>

#include <ATen/ATen.h>

#include <chrono>
#include <utility>

#include "models/ddpm_pytorch_unet.h"
#include "models/diffusers_unet.h"
#include "models/model_header.h"
#include "models/safetensors_reader.h"
#include "models/torch_zip_reader.h"
#include "models/torchscript_network.h"

namespace gd::models {

namespace {

using Clock = std::chrono::steady_clock;

// The description comes from model_header.cpp (what read_model_info reads); loading adds the
// weights, the network, and the network's own parameter count.

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The parameters' dtype and device, and channels-last for the 4-D ones when asked: ParamStore
// then creates them in that layout and the weights are copied once, straight into it.
at::TensorOptions parameter_options(const LoadOptions& options) {
  const at::TensorOptions base = at::TensorOptions().dtype(options.dtype).device(options.device);
  return options.channels_last ? base.memory_format(at::MemoryFormat::ChannelsLast) : base;
}

// `start`: when reading the description began (its time counts as reading).
LoadedModel load_diffusers(model_header::DiffusersModel described, const LoadOptions& options,
                           Clock::time_point start) {
  LoadedModel model;
  model.schedule = std::move(described.schedule);
  // Each RawTensor keeps its mapped file alive, so the pickle tree can go.
  const std::string& file = described.weights_path;
  TensorMap weights;
  if (described.safetensors) {
    model.checkpoint = map_file(file);
    weights = parse_safetensors(model.checkpoint, model.checkpoint->data(),
                                model.checkpoint->size(), file);
  } else {
    weights = state_dict_tensors(read_torch_checkpoint(file), file);
  }
  rename_legacy_attention_keys(weights);
  model.times.read = seconds_since(start);

  auto stage = Clock::now();
  auto network = std::make_unique<DiffusersUNet>(described.config, parameter_options(options));
  model.times.build = seconds_since(stage);
  stage = Clock::now();
  if (model.checkpoint) model.checkpoint->prefetch();
  network->params()->load(weights, "", file);
  model.times.fill = seconds_since(stage);

  model.info = std::move(described.info);
  model.info.parameter_count = network->params()->count();
  model.network = std::move(network);
  return model;
}

LoadedModel load_ddpm_pytorch(model_header::DdpmModel described, const LoadOptions& options) {
  std::unique_ptr<DdpmUnet> network =
      make_ddpm_unet(described.checkpoint, parameter_options(options), described.info.path);
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
  const auto start = Clock::now();
  exact_float32_on(options.device);
  const model_header::ModelSource source = model_header::find_model_source(path, options);
  LoadedModel model;
  switch (source.format) {
    case CheckpointFormat::Diffusers:
      model = load_diffusers(model_header::read_diffusers(source.path), options, start);
      break;
    case CheckpointFormat::TorchScript:
      model = load_torchscript(model_header::read_torchscript(source.path), options);
      model.times.read = seconds_since(start);
      break;
    case CheckpointFormat::DdpmPytorch:
      model = load_ddpm_pytorch(model_header::read_ddpm(source.path, options), options);
      model.times.read = seconds_since(start);
      break;
  }
  ParamStore* params = model.network->params();
  auto stage = Clock::now();
  if (options.channels_last && params) params->to_channels_last();
  model.times.layout = seconds_since(stage);
  stage = Clock::now();
  if (options.kernel_check && kernel_check_wanted() && params) {
    model.network->set_conv_routes(
        check_convolutions(*params, options.channels_last, &model.kernel_check));
  } else if (options.kernel_check && kernel_check_wanted() && !params) {
    check_torchscript_convolutions(*model.network, &model.kernel_check);
  }
  model.times.check = seconds_since(stage);
  if (model.checkpoint) model.checkpoint->release_pages();
  model.checkpoint.reset();
  return model;
}

}  // namespace gd::models
