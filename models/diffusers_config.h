// The configuration of a diffusers UNet2DModel (the config.json beside its weights), limited to
// the pixel-space options public checkpoints use: google/ddpm-* (cifar10, celebahq, church,
// bedroom, cat and their ddpm-ema-* twins) and models trained with diffusers'
// train_unconditional example.
//
// Usage:
//   UNet2DConfig config = parse_unet2d_config(text, "model/config.json");
//   DiffusersUNet unet(config, at::TensorOptions().dtype(at::kFloat));
//
// A default-constructed UNet2DConfig holds diffusers' own defaults (UNet2DModel.__init__), so
// a config.json that leaves a key out means the same here as in diffusers. Options whose
// forward pass we do not implement (fourier or learned time embeddings, class conditioning,
// skip blocks, class embeddings other than the plain
// table, ...) are refused with a gd::Error naming the key rather than run wrongly.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gd::models {

// DownBlock2D / UpBlock2D, or AttnDownBlock2D / AttnUpBlock2D.
enum class UNet2DBlock { Plain, Attention };
enum class UNet2DResample { Conv, Resnet };              // downsample_type / upsample_type
enum class UNet2DTimeNorm { Default, ScaleShift };       // resnet_time_scale_shift
enum class UNet2DActivation { SiLU, Mish, GELU, ReLU };  // act_fn ("swish" is SiLU)

struct UNet2DConfig {
  // Training size; 0 when config.json has no sample_size (it is informational only).
  std::int64_t sample_height = 0;
  std::int64_t sample_width = 0;
  std::int64_t in_channels = 3;
  std::int64_t out_channels = 3;
  bool center_input_sample = false;  // forward starts with x = 2 x - 1
  // Positional (sinusoidal) time embedding, the only kind supported.
  double freq_shift = 0.0;
  bool flip_sin_to_cos = true;
  // One entry per stage, down path from the input, up path from the bottleneck.
  std::vector<UNet2DBlock> down_blocks{UNet2DBlock::Plain, UNet2DBlock::Attention,
                                       UNet2DBlock::Attention, UNet2DBlock::Attention};
  std::vector<UNet2DBlock> up_blocks{UNet2DBlock::Attention, UNet2DBlock::Attention,
                                     UNet2DBlock::Attention, UNet2DBlock::Plain};
  std::vector<std::int64_t> block_out_channels{224, 448, 672, 896};
  bool mid_block = true;              // false when mid_block_type is null
  std::int64_t layers_per_block = 2;  // resnets per down block; up blocks have one more
  double mid_block_scale_factor = 1.0;
  std::int64_t downsample_padding = 1;
  // Only AttnDownBlock2D / AttnUpBlock2D look at these; plain blocks always use convs.
  UNet2DResample downsample_type = UNet2DResample::Conv;
  UNet2DResample upsample_type = UNet2DResample::Conv;
  UNet2DActivation act_fn = UNet2DActivation::SiLU;
  // Channels per attention head; nullopt means one head as wide as the block.
  std::optional<std::int64_t> attention_head_dim = 8;
  std::int64_t norm_num_groups = 32;
  // Groups of the mid block attention's GroupNorm; nullopt means norm_num_groups with
  // "default" time norm and no GroupNorm at all with "scale_shift" (diffusers' rule).
  std::optional<std::int64_t> attn_norm_num_groups;
  double norm_eps = 1e-5;
  UNet2DTimeNorm resnet_time_scale_shift = UNet2DTimeNorm::Default;
  bool add_attention = true;            // attention in the mid block
  std::int64_t time_embedding_dim = 0;  // 0 means 4 * block_out_channels[0]
  // Class conditioning as diffusers does it with class_embed_type null: a learned
  // [num_class_embeds, time_embed_dim] table whose row for the label is added to the time
  // embedding. 0: an unconditional model.
  std::int64_t num_class_embeds = 0;

  std::int64_t num_stages() const { return static_cast<std::int64_t>(block_out_channels.size()); }
  // Width of the time MLP output that every resnet receives.
  std::int64_t time_embed_dim() const;
  // H and W must be multiples of this: 2^(stages - 1).
  std::int64_t downsampling_factor() const;
  // Heads and per-head width of an attention layer over `channels` channels. diffusers uses
  // heads = channels // head_dim (floor), so the projections are heads * head_dim wide.
  std::int64_t attention_heads(std::int64_t channels) const;
  std::int64_t attention_dim_head(std::int64_t channels) const;
  // Groups of the mid block attention's GroupNorm, nullopt when it has none.
  std::optional<std::int64_t> mid_attention_groups() const;

  // Throws gd::Error ("<source>: ...", one line naming the key) when the options cannot build
  // a network: inconsistent lengths, channels not divisible by the groups, no attention head.
  void validate(const std::string& source) const;
};

// Parses config.json text and validates the result. `source` names the file in errors.
// Unknown keys are ignored, as diffusers does; keys starting with '_' are metadata.
UNet2DConfig parse_unet2d_config(const std::string& json_text, const std::string& source);

// One line for model listings: stages, widths, attention placement, resampling.
std::string describe_unet2d(const UNet2DConfig& config);

}  // namespace gd::models
