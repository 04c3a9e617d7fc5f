// Trainer checkpoints of lucidrains' denoising-diffusion-pytorch (results/model-N.pt, 2.x).
//
// Usage:
//   DdpmCheckpoint ckpt = load_ddpm_checkpoint("results/model-10.pt");   // EMA weights
//   std::unique_ptr<DdpmUnet> unet = make_ddpm_unet(ckpt, at::TensorOptions().dtype(at::kFloat));
//   // ckpt.diffusion.buffer("sqrt_alphas_cumprod"), ckpt.diffusion.objective, ...
//
// torch.save(dict) of the Trainer holds:
//   "step"    int
//   "model"   GaussianDiffusion state dict: its schedule buffers (betas, alphas_cumprod, ...,
//             loss_weight), then the Unet under "model."
//   "opt"     Adam state (ignored)
//   "ema"     EMA state dict: initted, step, "online_model." + the same GaussianDiffusion
//             state, "ema_model." + the EMA copy (Unet under "ema_model.model.")
//   "scaler"  None or the AMP scaler state (ignored)
//   "version" the package version string
// No hyper-parameter is saved: the Unet configuration comes from weight names and shapes
// (infer_ddpm_unet_config), the diffusion settings from the stored buffers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/ddpm_pytorch_unet.h"
#include "models/pickle_reader.h"
#include "models/tensor_data.h"

namespace gd::models {

// Which Unet weights to take from a Trainer checkpoint.
enum class DdpmWeights {
  Ema,    // ckpt["ema"]["ema_model.model.*"]: what the Trainer samples with (default)
  Model,  // ckpt["model"]["model.*"]: the online weights the optimizer last updated
};

const char* ddpm_weights_name(DdpmWeights weights);  // "ema" / "model"

// What GaussianDiffusion's state dict says about the diffusion process.
struct DdpmDiffusionSettings {
  std::int64_t num_timesteps = 0;
  // The stored float32 betas, widened to double (exact).
  std::vector<double> betas;
  // Every stored buffer (every key not under "model."), float32 [T] as saved. Samplers use
  // these directly: the package computes them in float64 and rounds once, so recomputing
  // them from the float32 betas would drift.
  std::map<std::string, at::Tensor> buffers;
  // "linear", "cosine" or "sigmoid" when the betas equal the package's schedule with default
  // arguments (recomputed in float64, rounded to float32), else "custom".
  std::string beta_schedule;
  // "pred_noise", "pred_x0" or "pred_v": from loss_weight, or the caller's override.
  std::string objective;
  bool objective_inferred = true;  // false when the caller supplied it
  bool min_snr_loss_weight = false;
  std::optional<double> min_snr_gamma;  // only known when the SNR was actually clipped

  // buffers[name], or gd::Error naming the missing buffer.
  const at::Tensor& buffer(const std::string& name) const;
};

struct DdpmLoadOptions {
  DdpmWeights weights = DdpmWeights::Ema;
  // "pred_noise", "pred_x0" or "pred_v". Needed only when loss_weight does not identify the
  // objective (custom loss weighting, or an old checkpoint without loss_weight).
  std::optional<std::string> objective;
};

struct DdpmCheckpoint {
  DdpmUnetConfig unet;
  DdpmDiffusionSettings diffusion;
  TensorMap unet_weights;  // the Unet state dict, prefix stripped ("init_conv.weight", ...)
  DdpmWeights weights = DdpmWeights::Ema;
  std::optional<std::int64_t> step;  // Trainer.step, when saved
  std::string package_version;       // ckpt["version"], empty when absent
};

// The GaussianDiffusion buffers among `state` (keys starting with "model." are skipped).
// `source` names the checkpoint in errors. Throws gd::Error when a schedule buffer is missing
// or mis-shaped, or when the objective cannot be inferred and `objective` is not given.
DdpmDiffusionSettings infer_ddpm_diffusion_settings(const TensorMap& state,
                                                    const std::optional<std::string>& objective,
                                                    const std::string& source);

// Picks the weights and infers everything from an unpickled Trainer checkpoint (see
// torch_zip_reader.h). The returned tensors point into the checkpoint's mapping.
DdpmCheckpoint load_ddpm_checkpoint_tensors(const PickleValue& ckpt, const DdpmLoadOptions& options,
                                            const std::string& source);

// read_torch_checkpoint(path) + load_ddpm_checkpoint_tensors.
DdpmCheckpoint load_ddpm_checkpoint(const std::string& path, const DdpmLoadOptions& options = {});

// True when `ckpt` has the Trainer layout (a dict with a "model" state dict holding "betas"
// and "model.init_conv.weight"), for format sniffing.
bool is_ddpm_trainer_checkpoint(const PickleValue& ckpt);

// A DdpmUnet built from ckpt.unet with ckpt.unet_weights loaded.
std::unique_ptr<DdpmUnet> make_ddpm_unet(const DdpmCheckpoint& ckpt, c10::TensorOptions options,
                                         const std::string& source = "checkpoint");

}  // namespace gd::models
