// diffusers' UNet2DModel (pixel-space DDPM UNets), run with ATen ops.
//
// Usage:
//   UNet2DConfig config = parse_unet2d_config(text, "model/config.json");
//   TensorMap weights = read_safetensors("model/diffusion_pytorch_model.safetensors");
//   rename_legacy_attention_keys(weights);           // only matters for old .bin files
//   DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));
//   unet.params()->load(weights, "", "diffusion_pytorch_model.safetensors");
//   at::Tensor eps = unet.forward(x, t, {});   // [N, out_channels, H, W]
//
// Every parameter is registered under its diffusers state-dict key
// ("down_blocks.1.attentions.0.to_q.weight"), so the checkpoint loads name for name.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "models/diffusers_config.h"
#include "models/network.h"
#include "models/param_store.h"
#include "models/tensor_data.h"

namespace gd::models {

// Old diffusers checkpoints (the google/ddpm-* .bin files) name the attention projections
// `query`, `key`, `value` and `proj_attn`; current UNet2DModel calls them `to_q`, `to_k`,
// `to_v` and `to_out.0`. This renames them in place for every attention block
// (down_blocks.*.attentions.*, up_blocks.*.attentions.*, mid_block.attentions.*), as diffusers
// does on load; `group_norm` kept its name. Keys that are already new are left alone.
void rename_legacy_attention_keys(TensorMap& tensors);

class DiffusersUNet : public Network {
 public:
  // Registers every parameter (zero-filled) under its state-dict key; load them with
  // params()->load(weights, "", source). `config` must have passed validate().
  DiffusersUNet(const UNet2DConfig& config, c10::TensorOptions options);

  // x: [N, in_channels, H, W] with H, W multiples of config().downsampling_factor();
  // t: [N] or [1] or scalar timesteps, int64 or float (fractional ones are fine).
  // cond: labels for class-conditional models ([N] or [1]; core::kMeanClassLabel is the mean
  // of all class embeddings), either padding; no self-conditioning (UNet2DModel has none).
  // Returns [N, out_channels, H, W] in the parameters' dtype.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t,
                     const core::Conditioning& cond) const override;

  bool supports_circular_padding() const override { return true; }
  ParamStore* params() override { return &params_; }
  std::int64_t num_classes() const override { return config_.num_class_embeds; }
  const UNet2DConfig& config() const { return config_; }

  // The sinusoidal time embedding alone (Timesteps in diffusers): [N] -> [N, C0] float32.
  at::Tensor timestep_embedding(const at::Tensor& t) const;

 private:
  struct Conv {
    at::Tensor weight, bias;
    std::int64_t stride = 1, padding = 0;
  };
  struct Linear {
    at::Tensor weight, bias;
  };
  struct GroupNorm {
    at::Tensor weight, bias;
    std::int64_t groups = 1;
  };
  enum class Resample { None, Up, Down };
  struct Resnet {  // ResnetBlock2D
    GroupNorm norm1, norm2;
    Conv conv1, conv2;
    Linear time_emb_proj;
    std::optional<Conv> conv_shortcut;   // 1x1 when the channel count changes
    Resample resample = Resample::None;  // nearest x2 / 2x2 average pool (kernel None)
    double output_scale_factor = 1.0;
  };
  struct Attention {  // Attention(_from_deprecated_attn_block=True) over H*W positions
    std::optional<GroupNorm> group_norm;
    Linear to_q, to_k, to_v, to_out;
    std::int64_t heads = 1, dim_head = 1;
    double rescale_output_factor = 1.0;
  };
  struct Block {  // one down or up block
    std::vector<Resnet> resnets;
    std::vector<Attention> attentions;      // empty for DownBlock2D / UpBlock2D
    std::optional<Conv> resample_conv;      // Downsample2D / Upsample2D with a conv
    std::optional<Resnet> resample_resnet;  // ResnetBlock2D(down=True / up=True)
    bool zero_pad = false;  // Downsample2D with padding 0 pads right and bottom by one
  };

  Conv add_conv(const std::string& name, std::int64_t in, std::int64_t out, std::int64_t kernel,
                std::int64_t stride = 1, std::int64_t padding = 1);
  Linear add_linear(const std::string& name, std::int64_t in, std::int64_t out);
  GroupNorm add_group_norm(const std::string& name, std::int64_t channels, std::int64_t groups);
  Resnet add_resnet(const std::string& name, std::int64_t in, std::int64_t out,
                    Resample resample = Resample::None, double output_scale_factor = 1.0);
  Attention add_attention(const std::string& name, std::int64_t channels,
                          std::optional<std::int64_t> groups, double rescale_output_factor = 1.0);

  at::Tensor activation(const at::Tensor& x) const;
  at::Tensor activation_in_place(at::Tensor x) const;
  at::Tensor group_norm(const GroupNorm& norm, const at::Tensor& x) const;
  at::Tensor run_resnet(const Resnet& block, const at::Tensor& x, const at::Tensor& temb,
                        core::Padding pad_mode) const;
  // The class embedding rows of labels [N] (kMeanClassLabel: the mean row): [N, T].
  at::Tensor class_rows(const at::Tensor& labels) const;
  at::Tensor run_attention(const Attention& attn, const at::Tensor& x) const;

  UNet2DConfig config_;
  at::Tensor class_embedding_;  // [num_class_embeds, time_embed_dim]; undefined without classes
  ParamStore params_;
  Conv conv_in_;
  Linear time_linear_1_, time_linear_2_;
  std::vector<Block> down_blocks_, up_blocks_;
  std::vector<Resnet> mid_resnets_;         // empty without a mid block, else two
  std::optional<Attention> mid_attention_;  // with add_attention
  GroupNorm conv_norm_out_;
  Conv conv_out_;
};

}  // namespace gd::models
