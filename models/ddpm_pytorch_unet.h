// The `Unet` of lucidrains' denoising-diffusion-pytorch (2.x), run with ATen ops.
//
// Usage:
//   TensorMap weights = ...;                        // Unet state dict, keys without prefix
//   DdpmUnetConfig config = infer_ddpm_unet_config(weights, "");
//   DdpmUnet unet(config, at::TensorOptions().dtype(at::kFloat));
//   unet.params()->load(weights, "", "model-1.pt");
//   at::Tensor out = unet.forward(x, t, std::nullopt);   // [N, out_dim, H, W]
//
// The hyper-parameters are not saved in the checkpoint; everything the forward pass needs is
// recovered from parameter names and shapes (infer_ddpm_unet_config). Only the 2.x layout is
// accepted: older checkpoints (GroupNorm blocks before 2.0, no attention memory key/values
// before 1.9, Residual(PreNorm(...)) wrappers before 1.8) are rejected with a message naming
// the version range, because their forward pass differs and loading them would silently give
// wrong images.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/network.h"
#include "models/param_store.h"
#include "models/tensor_data.h"

namespace gd::models {

// Constructor arguments of denoising_diffusion_pytorch.Unet, with every per-stage tuple
// expanded to one entry per stage. 2.x blocks use RMSNorm, so there is no
// resnet_block_groups; dropout is inference-irrelevant; flash_attn is numerically the same.
struct DdpmUnetConfig {
  std::int64_t dim = 64;
  std::int64_t init_dim = 64;     // defaults to dim in the package
  std::int64_t out_dim = 3;       // channels, or 2 * channels with learned variance
  std::int64_t channels = 3;      // image channels
  bool self_condition = false;    // input is concat(self_cond, x): 2 * channels
  bool learned_variance = false;  // output carries the variance channels after the prediction
  std::vector<std::int64_t> dim_mults{1, 2, 4, 8};
  std::vector<bool> full_attn{false, false, false, true};   // per stage; else linear attention
  std::vector<std::int64_t> attn_heads{4, 4, 4, 4};         // per stage
  std::vector<std::int64_t> attn_dim_head{32, 32, 32, 32};  // per stage
  // learned_sinusoidal_cond or random_fourier_features (indistinguishable from the weights,
  // and identical at inference): time_mlp.0 is RandomOrLearnedSinusoidalPosEmb.
  bool learned_sinusoidal_cond = false;
  std::int64_t learned_sinusoidal_dim = 16;
  double sinusoidal_pos_emb_theta = 10000.0;  // not stored in the checkpoint
  std::int64_t num_mem_kv = 4;                // memory key/values per attention layer

  std::int64_t num_stages() const { return static_cast<std::int64_t>(dim_mults.size()); }
  std::int64_t input_channels() const { return channels * (self_condition ? 2 : 1); }
  std::int64_t time_dim() const { return dim * 4; }
  // H and W must be multiples of this: 2^(stages - 1).
  std::int64_t downsample_factor() const;

  bool operator==(const DdpmUnetConfig& other) const;
  bool operator!=(const DdpmUnetConfig& other) const { return !(*this == other); }
  // One line, for logs and test failures.
  std::string to_string() const;
};

// The package's own defaults for Unet(dim, dim_mults=...): init_dim = dim, full attention
// only on the innermost stage, 4 heads of 32, out_dim from channels and learned_variance.
DdpmUnetConfig make_ddpm_unet_config(std::int64_t dim, std::vector<std::int64_t> dim_mults,
                                     std::int64_t channels = 3, bool self_condition = false,
                                     bool learned_variance = false);

// Recovers the configuration from a Unet state dict whose keys are `prefix` + the Unet's own
// names ("init_conv.weight", "downs.0.2.mem_kv", ...). Throws gd::Error naming the key when
// the layout is not a 2.x Unet.
DdpmUnetConfig infer_ddpm_unet_config(const TensorMap& weights, const std::string& prefix);

class DdpmUnet : public Network {
 public:
  // Registers every parameter (zero-filled) under its state-dict key; load them with
  // params()->load(weights, prefix, source).
  DdpmUnet(const DdpmUnetConfig& config, c10::TensorOptions options);

  // x: [N, channels, H, W]; t: [N] int64 (or float) timesteps; cond.self_cond: [N, channels,
  // H, W] previous x0 estimate, zeros when absent (only used with self_condition); either
  // padding; no classes. Returns [N, out_dim, H, W].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                     const core::Conditioning& cond) const override;

  bool supports_circular_padding() const override { return true; }
  ParamStore* params() override { return &params_; }
  const DdpmUnetConfig& config() const { return config_; }

 private:
  struct Conv {
    at::Tensor weight, bias;  // bias undefined for bias-free convs
    std::int64_t padding = 0;
  };
  struct ResnetBlock {
    at::Tensor mlp_weight, mlp_bias;  // time embedding -> (scale, shift)
    Conv proj1, proj2;
    at::Tensor norm1_g, norm2_g;
    std::optional<Conv> res_conv;  // 1x1 when the channel count changes
  };
  struct AttentionBlock {
    bool full = false;
    std::int64_t heads = 0, dim_head = 0;
    at::Tensor norm_g, mem_kv, to_qkv;
    Conv to_out;
    at::Tensor out_norm_g;  // linear attention only
  };
  struct Stage {
    ResnetBlock block1, block2;
    AttentionBlock attn;
    Conv resample;         // 1x1 after pixel-unshuffle / 3x3 after nearest x2 / plain 3x3
    bool rescale = false;  // false on the last stage of each path (plain 3x3 conv)
  };

  Conv add_conv(const std::string& name, std::int64_t in, std::int64_t out, std::int64_t kernel,
                bool bias = true);
  ResnetBlock add_resnet(const std::string& name, std::int64_t in, std::int64_t out);
  AttentionBlock add_attention(const std::string& name, std::int64_t dim, bool full,
                               std::int64_t heads, std::int64_t dim_head);

  at::Tensor time_embedding(const at::Tensor& t) const;
  at::Tensor run_resnet(const ResnetBlock& block, const at::Tensor& x, core::Padding pad_mode,
                        const at::Tensor& time_emb) const;
  at::Tensor run_attention(const AttentionBlock& attn, const at::Tensor& x) const;

  DdpmUnetConfig config_;
  ParamStore params_;
  Conv init_conv_;
  at::Tensor time_fourier_weights_;  // learned/random sinusoidal only
  at::Tensor time_lin1_w_, time_lin1_b_, time_lin2_w_, time_lin2_b_;
  std::vector<Stage> downs_, ups_;
  ResnetBlock mid_block1_, mid_block2_;
  AttentionBlock mid_attn_;
  ResnetBlock final_res_block_;
  Conv final_conv_;
};

}  // namespace gd::models
