// Reproduces diffusers' UNet2DModel.forward (checked against diffusers commit 58eb52c0,
// 0.40.0.dev0) with the same op order as the Python modules, so float32 results agree to
// ~1e-6: Timesteps + TimestepEmbedding, conv_in, DownBlock2D / AttnDownBlock2D,
// UNetMidBlock2D, UpBlock2D / AttnUpBlock2D, conv_norm_out, SiLU, conv_out.
#include "models/diffusers_unet.h"
#include "models/circular_pad.h"

#include <ATen/ATen.h>

#include <cmath>
#include <regex>
#include <utility>

#include "core/error.h"

namespace gd::models {

namespace {

const char* kWhat = "diffusers UNet2DModel";

}  // namespace

// ---- legacy checkpoints ---------------------------------------------------------------------

void rename_legacy_attention_keys(TensorMap& tensors) {
  // The attention blocks that UNet2DModel builds with _from_deprecated_attn_block=True.
  static const std::regex legacy(
      R"(^((?:down_blocks|up_blocks)\.\d+\.attentions\.\d+|mid_block\.attentions\.\d+)\.)"
      R"((query|key|value|proj_attn)\.(weight|bias)$)");
  std::vector<std::pair<std::string, std::string>> renames;  // old key -> new key
  for (const auto& [key, raw] : tensors) {
    std::smatch m;
    if (!std::regex_match(key, m, legacy)) continue;
    const std::string old_name = m[2].str();
    const std::string new_name = old_name == "query"   ? "to_q"
                                 : old_name == "key"   ? "to_k"
                                 : old_name == "value" ? "to_v"
                                                       : "to_out.0";
    renames.emplace_back(key, m[1].str() + "." + new_name + "." + m[3].str());
  }
  // Like diffusers, an old key wins over a new one of the same block if a file has both.
  for (const auto& [old_key, new_key] : renames) {
    auto node = tensors.extract(old_key);
    tensors[new_key] = std::move(node.mapped());
  }
}

// ---- construction ---------------------------------------------------------------------------

DiffusersUNet::Conv DiffusersUNet::add_conv(const std::string& name, std::int64_t in,
                                            std::int64_t out, std::int64_t kernel,
                                            std::int64_t stride, std::int64_t padding) {
  Conv conv;
  conv.weight = params_.add(name + ".weight", {out, in, kernel, kernel});
  conv.bias = params_.add(name + ".bias", {out});
  conv.stride = stride;
  conv.padding = padding;
  return conv;
}

DiffusersUNet::Linear DiffusersUNet::add_linear(const std::string& name, std::int64_t in,
                                                std::int64_t out) {
  Linear linear;
  linear.weight = params_.add(name + ".weight", {out, in});
  linear.bias = params_.add(name + ".bias", {out});
  return linear;
}

DiffusersUNet::GroupNorm DiffusersUNet::add_group_norm(const std::string& name,
                                                       std::int64_t channels, std::int64_t groups) {
  GroupNorm norm;
  norm.weight = params_.add(name + ".weight", {channels});
  norm.bias = params_.add(name + ".bias", {channels});
  norm.groups = groups;
  return norm;
}

// ResnetBlock2D; parameters in the module's own order (norm1, conv1, time_emb_proj, norm2,
// conv2, conv_shortcut).
DiffusersUNet::Resnet DiffusersUNet::add_resnet(const std::string& name, std::int64_t in,
                                                std::int64_t out, Resample resample,
                                                double output_scale_factor) {
  const UNet2DConfig& c = config_;
  Resnet r;
  r.norm1 = add_group_norm(name + ".norm1", in, c.norm_num_groups);
  r.conv1 = add_conv(name + ".conv1", in, out, 3);
  // scale_shift projects to (scale, shift), twice the width.
  const std::int64_t temb_out =
      c.resnet_time_scale_shift == UNet2DTimeNorm::ScaleShift ? 2 * out : out;
  r.time_emb_proj = add_linear(name + ".time_emb_proj", c.time_embed_dim(), temb_out);
  r.norm2 = add_group_norm(name + ".norm2", out, c.norm_num_groups);
  r.conv2 = add_conv(name + ".conv2", out, out, 3);
  if (in != out) r.conv_shortcut = add_conv(name + ".conv_shortcut", in, out, 1, 1, 0);
  r.resample = resample;
  r.output_scale_factor = output_scale_factor;
  return r;
}

DiffusersUNet::Attention DiffusersUNet::add_attention(const std::string& name,
                                                      std::int64_t channels,
                                                      std::optional<std::int64_t> groups,
                                                      double rescale_output_factor) {
  Attention a;
  a.heads = config_.attention_heads(channels);
  a.dim_head = config_.attention_dim_head(channels);
  const std::int64_t inner = a.heads * a.dim_head;  // < channels when head_dim does not divide it
  if (groups) a.group_norm = add_group_norm(name + ".group_norm", channels, *groups);
  a.to_q = add_linear(name + ".to_q", channels, inner);
  a.to_k = add_linear(name + ".to_k", channels, inner);
  a.to_v = add_linear(name + ".to_v", channels, inner);
  a.to_out = add_linear(name + ".to_out.0", inner, channels);
  a.rescale_output_factor = rescale_output_factor;
  return a;
}

DiffusersUNet::DiffusersUNet(const UNet2DConfig& config, c10::TensorOptions options)
    : config_(config), params_(options) {
  const UNet2DConfig& c = config_;
  c.validate(kWhat);
  const std::vector<std::int64_t>& ch = c.block_out_channels;
  const std::int64_t stages = c.num_stages();
  const std::int64_t temb = c.time_embed_dim();

  conv_in_ = add_conv("conv_in", c.in_channels, ch[0], 3);
  time_linear_1_ = add_linear("time_embedding.linear_1", ch[0], temb);
  time_linear_2_ = add_linear("time_embedding.linear_2", temb, temb);

  // Down path: stage i goes from the previous stage's width to ch[i]; every stage but the
  // last halves the resolution.
  std::int64_t out = ch[0];
  for (std::int64_t i = 0; i < stages; ++i) {
    const std::string name = "down_blocks." + std::to_string(i);
    const std::int64_t in = out;
    out = ch[i];
    const bool attention = c.down_blocks[i] == UNet2DBlock::Attention;
    Block block;
    // AttnDownBlock2D registers its attentions before its resnets.
    for (std::int64_t j = 0; attention && j < c.layers_per_block; ++j) {
      block.attentions.push_back(
          add_attention(name + ".attentions." + std::to_string(j), out, c.norm_num_groups));
    }
    for (std::int64_t j = 0; j < c.layers_per_block; ++j) {
      block.resnets.push_back(
          add_resnet(name + ".resnets." + std::to_string(j), j == 0 ? in : out, out));
    }
    if (i + 1 < stages) {
      // DownBlock2D always downsamples with a conv; only AttnDownBlock2D reads downsample_type.
      if (attention && c.downsample_type == UNet2DResample::Resnet) {
        block.resample_resnet = add_resnet(name + ".downsamplers.0", out, out, Resample::Down);
      } else {
        block.resample_conv =
            add_conv(name + ".downsamplers.0.conv", out, out, 3, 2, c.downsample_padding);
        block.zero_pad = c.downsample_padding == 0;
      }
    }
    down_blocks_.push_back(std::move(block));
  }

  // Mid block: resnet, attention, resnet, all scaled by mid_block_scale_factor.
  if (c.mid_block) {
    const std::string name = "mid_block";
    const std::int64_t width = ch.back();
    if (c.add_attention) {
      mid_attention_ = add_attention(name + ".attentions.0", width, c.mid_attention_groups(),
                                     c.mid_block_scale_factor);
    }
    for (int j = 0; j < 2; ++j) {
      mid_resnets_.push_back(add_resnet(name + ".resnets." + std::to_string(j), width, width,
                                        Resample::None, c.mid_block_scale_factor));
    }
  }

  // Up path: stage i has layers_per_block + 1 resnets, each reading the running features
  // concatenated with one skip; the last skip of a stage comes from the next-shallower width.
  out = ch[stages - 1];
  for (std::int64_t i = 0; i < stages; ++i) {
    const std::string name = "up_blocks." + std::to_string(i);
    const std::int64_t prev = out;
    out = ch[stages - 1 - i];
    const std::int64_t skip_last = ch[std::max<std::int64_t>(stages - 2 - i, 0)];
    const std::int64_t layers = c.layers_per_block + 1;
    const bool attention = c.up_blocks[i] == UNet2DBlock::Attention;
    Block block;
    for (std::int64_t j = 0; attention && j < layers; ++j) {
      block.attentions.push_back(
          add_attention(name + ".attentions." + std::to_string(j), out, c.norm_num_groups));
    }
    for (std::int64_t j = 0; j < layers; ++j) {
      const std::int64_t skip = j == layers - 1 ? skip_last : out;
      const std::int64_t in = j == 0 ? prev : out;
      block.resnets.push_back(add_resnet(name + ".resnets." + std::to_string(j), in + skip, out));
    }
    if (i + 1 < stages) {
      if (attention && c.upsample_type == UNet2DResample::Resnet) {
        block.resample_resnet = add_resnet(name + ".upsamplers.0", out, out, Resample::Up);
      } else {
        block.resample_conv = add_conv(name + ".upsamplers.0.conv", out, out, 3);
      }
    }
    up_blocks_.push_back(std::move(block));
  }

  conv_norm_out_ = add_group_norm("conv_norm_out", ch[0], c.norm_num_groups);
  conv_out_ = add_conv("conv_out", ch[0], c.out_channels, 3);
  // Registered last, so an unconditional network's parameters come in the same order with or
  // without this option (the trainer's initial weights are drawn in that order).
  if (c.num_class_embeds > 0) {
    class_embedding_ = params_.add("class_embedding.weight", {c.num_class_embeds, temb});
  }
}

at::Tensor DiffusersUNet::class_rows(const at::Tensor& labels) const {
  // The mean class (guidance) is row num_class_embeds of a table extended by the mean of all
  // rows, taken in float32 whatever the weights' dtype. Labels are checked on the CPU, where
  // the pipelines keep them, so this costs no device sync.
  const at::Tensor cpu = labels.to(at::kCPU);
  if (!(cpu < 0).any().item<bool>())
    return class_embedding_.index_select(0, labels.to(class_embedding_.device()));
  const std::int64_t k = class_embedding_.size(0);
  const at::Tensor mean =
      class_embedding_.to(at::kFloat).mean(0, true).to(class_embedding_.scalar_type());
  const at::Tensor table = at::cat({class_embedding_, mean});              // [K + 1, T]
  const at::Tensor rows = at::where(cpu < 0, at::full_like(cpu, k), cpu);  // [N]
  return table.index_select(0, rows.to(table.device()));                   // [N, T]
}

// ---- forward pieces -------------------------------------------------------------------------

at::Tensor DiffusersUNet::activation(const at::Tensor& x) const {
  switch (config_.act_fn) {
    case UNet2DActivation::SiLU: return at::silu(x);
    case UNet2DActivation::Mish: return at::mish(x);
    case UNet2DActivation::GELU: return at::gelu(x);  // nn.GELU(): exact erf form
    case UNet2DActivation::ReLU: return at::relu(x);
  }
  return x;  // unreachable: every enumerator is handled above
}

// In place, for activations that nothing else holds (fresh GroupNorm outputs): the same values
// without a second full-size tensor, which at 512x512 is memory traffic the CPU waits on.
at::Tensor DiffusersUNet::activation_in_place(at::Tensor x) const {
  switch (config_.act_fn) {
    case UNet2DActivation::SiLU: return at::silu_(x);
    case UNet2DActivation::Mish: return at::mish_(x);
    case UNet2DActivation::GELU: return at::gelu_(x);
    case UNet2DActivation::ReLU: return at::relu_(x);
  }
  return x;  // unreachable: every enumerator is handled above
}

at::Tensor DiffusersUNet::group_norm(const GroupNorm& norm, const at::Tensor& x) const {
  return at::group_norm(x, norm.groups, norm.weight, norm.bias, config_.norm_eps);
}

namespace {

// mode: wrap-around padding instead of zeros along the axes it wraps, so the image's left edge
// continues its right edge (and top its bottom): the network then sees a torus (or a cylinder)
// and its output tiles seamlessly.
at::Tensor conv2d(const ConvRoutes& routes, core::Padding mode, const at::Tensor& x,
                  const at::Tensor& weight, const at::Tensor& bias, std::int64_t stride,
                  std::int64_t padding) {
  if (mode != core::Padding::Zeros && padding > 0) {
    return models::conv2d(routes, pad_by_mode(x, mode, padding, padding, padding, padding), weight,
                          bias, stride, 0);
  }
  return models::conv2d(routes, x, weight, bias, stride, padding);
}

at::Tensor upsample2x(const at::Tensor& x) {  // [N, C, H, W] -> [N, C, 2H, 2W]
  // F.interpolate(scale_factor=2.0, mode="nearest") passes the scale on, so do we.
  return at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}, 2.0, 2.0);
}

}  // namespace

at::Tensor DiffusersUNet::timestep_embedding(const at::Tensor& t) const {
  // get_timestep_embedding(t, C0, flip_sin_to_cos, downscale_freq_shift=freq_shift), always in
  // float32: freqs_k = exp(-ln(10000) * k / (half - shift)), then [sin, cos] (or [cos, sin]).
  const std::int64_t dim = config_.block_out_channels[0];
  const std::int64_t half = dim / 2;
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(t.device());
  at::Tensor exponent = at::arange(0, half, f32) * (-std::log(10000.0));  // [half]
  exponent = exponent / (static_cast<double>(half) - config_.freq_shift);
  at::Tensor args = t.to(at::kFloat).unsqueeze(1) * exponent.exp().unsqueeze(0);  // [N, half]
  at::Tensor emb = at::cat({args.sin(), args.cos()}, -1);                         // [N, 2 half]
  if (config_.flip_sin_to_cos) {
    emb = at::cat({emb.slice(1, half), emb.slice(1, 0, half)}, -1);
  }
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);  // [N, dim]
  return emb;
}

at::Tensor DiffusersUNet::run_resnet(const Resnet& r, const at::Tensor& x, const at::Tensor& temb,
                                     core::Padding pad_mode) const {
  at::Tensor input = x;                                        // [N, Cin, H, W]
  at::Tensor h = activation_in_place(group_norm(r.norm1, x));  // [N, Cin, H, W]
  if (r.resample == Resample::Up) {
    input = upsample2x(input);  // [N, Cin, 2H, 2W]
    h = upsample2x(h);
  } else if (r.resample == Resample::Down) {
    // Downsample2D(use_conv=False): a 2x2 average pool, on the shortcut as well.
    input = at::avg_pool2d(input, {2, 2}, {2, 2});  // [N, Cin, H/2, W/2]
    h = at::avg_pool2d(h, {2, 2}, {2, 2});
  }
  h = conv2d(conv_routes_, pad_mode, h, r.conv1.weight, r.conv1.bias, 1, 1);  // [N, Cout, H', W']
  // The block applies act_fn to the time embedding itself before projecting it.
  at::Tensor t = at::linear(activation(temb), r.time_emb_proj.weight, r.time_emb_proj.bias)
                     .unsqueeze(-1)
                     .unsqueeze(-1);  // [N, Cout or 2 Cout, 1, 1]
  if (config_.resnet_time_scale_shift == UNet2DTimeNorm::ScaleShift) {
    std::vector<at::Tensor> scale_shift = at::chunk(t, 2, 1);  // 2 x [N, Cout, 1, 1]
    h = group_norm(r.norm2, h);
    h = h * (1 + scale_shift[0]) + scale_shift[1];
  } else {
    h = group_norm(r.norm2, h.add_(t));  // h is conv1's fresh output
  }
  h = conv2d(conv_routes_, pad_mode, activation_in_place(h), r.conv2.weight, r.conv2.bias, 1,
             1);  // [N, Cout, H', W']
  if (r.conv_shortcut) {
    input =
        conv2d(conv_routes_, pad_mode, input, r.conv_shortcut->weight, r.conv_shortcut->bias, 1, 0);
  }
  at::Tensor out = h.add_(input);  // input + h: conv2's fresh output takes the sum
  // Dividing by 1 is exact, so skipping it changes nothing.
  if (r.output_scale_factor != 1.0) out = out / r.output_scale_factor;
  return out;
}

at::Tensor DiffusersUNet::run_attention(const Attention& a, const at::Tensor& x) const {
  // AttnProcessor2_0 on a 4-D input: self-attention over the H*W positions.
  const std::int64_t n = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = x.view({n, c, height * width});  // [N, C, HW]
  if (a.group_norm) h = group_norm(*a.group_norm, h);
  h = h.transpose(1, 2);                        // [N, HW, C]
  auto heads_view = [&](const at::Tensor& y) {  // [N, HW, heads*d] -> [N, heads, HW, d]
    return y.view({n, -1, a.heads, a.dim_head}).transpose(1, 2);
  };
  at::Tensor q = heads_view(at::linear(h, a.to_q.weight, a.to_q.bias));
  at::Tensor k = heads_view(at::linear(h, a.to_k.weight, a.to_k.bias));
  at::Tensor v = heads_view(at::linear(h, a.to_v.weight, a.to_v.bias));
  // Default scale 1/sqrt(d), as Attention's scale_qk gives. LibTorch's CPU attention kernel in
  // bf16 ran at a fraction of its float32 speed without AMX (google/ddpm-cifar10-32's
  // architecture at 32x32: half the network's time, against 3% in float32), so bf16 runs on
  // the CPU attend in float32: cheap casts of small tensors, and no less precise.
  at::Tensor o;  // [N, heads, HW, d]
  if (q.scalar_type() == at::kBFloat16 && q.device().is_cpu()) {
    o = at::scaled_dot_product_attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat))
            .to(at::kBFloat16);
  } else {
    o = at::scaled_dot_product_attention(q, k, v);
  }
  o = o.transpose(1, 2).reshape({n, -1, a.heads * a.dim_head});  // [N, HW, heads*d]
  o = at::linear(o, a.to_out.weight, a.to_out.bias);             // [N, HW, C]
  o = o.transpose(-1, -2).reshape({n, c, height, width});        // [N, C, H, W]
  o = o + x;                                                     // residual_connection=True
  if (a.rescale_output_factor != 1.0) o = o / a.rescale_output_factor;
  return o;
}

// ---- forward --------------------------------------------------------------------------------

at::Tensor DiffusersUNet::forward(const at::Tensor& x_in, const at::Tensor& t_in,
                                  const core::Conditioning& cond) const {
  const UNet2DConfig& c = config_;
  check_conditioning(cond, c.num_class_embeds, /*allow_mean=*/true, /*circular_ok=*/true, kWhat);
  const core::Padding pad_mode = cond.padding;
  if (cond.self_cond && cond.self_cond->defined()) {
    throw Error(std::string(kWhat) + ": this network has no self-conditioning input");
  }
  if (x_in.dim() != 4 || x_in.size(1) != c.in_channels) {
    throw Error(std::string(kWhat) + ": input has shape " + shape_string(x_in.sizes().vec()) +
                ", expected [N, " + std::to_string(c.in_channels) + ", H, W]");
  }
  const std::int64_t factor = c.downsampling_factor();
  if (x_in.size(2) % factor != 0 || x_in.size(3) % factor != 0 || x_in.size(2) == 0 ||
      x_in.size(3) == 0) {
    throw Error(std::string(kWhat) + ": image size " + std::to_string(x_in.size(3)) + "x" +
                std::to_string(x_in.size(2)) + " is not a positive multiple of " +
                std::to_string(factor) + " (2^(stages - 1))");
  }
  const std::int64_t n = x_in.size(0);
  const c10::TensorOptions options = params_.options();
  at::Tensor x = x_in.to(options.device(), options.dtype().toScalarType());  // [N, Cin, H, W]

  // Timesteps: a scalar or [1] is broadcast to the batch, as `t * ones(N)` does in diffusers.
  at::Tensor t = t_in.to(options.device()).reshape({-1});
  if (t.size(0) == 1 && n != 1) {
    t = t.expand({n});
  } else if (t.size(0) != n) {
    throw Error(std::string(kWhat) + ": timesteps have shape " + shape_string(t_in.sizes().vec()) +
                ", expected [" + std::to_string(n) + "]");
  }

  if (c.center_input_sample) x = 2 * x - 1.0;

  // Time MLP: Linear, SiLU, Linear (always SiLU here, whatever act_fn says).
  at::Tensor temb = timestep_embedding(t).to(options.dtype().toScalarType());  // [N, C0]
  temb = at::linear(temb, time_linear_1_.weight, time_linear_1_.bias);
  temb = at::linear(at::silu(temb), time_linear_2_.weight, time_linear_2_.bias);  // [N, T]
  if (class_embedding_.defined()) {
    // diffusers: emb = emb + class_embedding(class_labels), after the time MLP.
    at::Tensor labels = cond.class_labels.reshape({-1});  // [N] or [1]
    if (labels.size(0) == 1 && n != 1) labels = labels.expand({n});
    if (labels.size(0) != n) {
      throw Error(std::string(kWhat) + ": " + std::to_string(labels.size(0)) +
                  " class labels for a batch of " + std::to_string(n));
    }
    temb = temb + class_rows(labels).to(temb.scalar_type());  // [N, T]
  }

  at::Tensor h =
      conv2d(conv_routes_, pad_mode, x, conv_in_.weight, conv_in_.bias, 1, 1);  // [N, C0, H, W]
  std::vector<at::Tensor> skips{h};  // consumed from the back on the way up

  for (const Block& block : down_blocks_) {
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      h = run_resnet(block.resnets[j], h, temb, pad_mode);
      if (!block.attentions.empty()) h = run_attention(block.attentions[j], h);
      skips.push_back(h);
    }
    if (block.resample_conv) {
      if (block.zero_pad) {  // right, bottom
        h = pad_by_mode(h, pad_mode, 0, 1, 0, 1);
      }
      h = conv2d(conv_routes_, pad_mode, h, block.resample_conv->weight, block.resample_conv->bias,
                 block.resample_conv->stride, block.resample_conv->padding);  // [N, C, H/2, W/2]
      skips.push_back(h);
    } else if (block.resample_resnet) {
      h = run_resnet(*block.resample_resnet, h, temb, pad_mode);  // [N, C, H/2, W/2]
      skips.push_back(h);
    }
  }

  if (!mid_resnets_.empty()) {
    h = run_resnet(mid_resnets_[0], h, temb, pad_mode);
    if (mid_attention_) h = run_attention(*mid_attention_, h);
    h = run_resnet(mid_resnets_[1], h, temb, pad_mode);
  }

  for (const Block& block : up_blocks_) {
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      h = at::cat({h, skips.back()}, 1);  // [N, C + C_skip, H, W], running features first
      skips.pop_back();
      h = run_resnet(block.resnets[j], h, temb, pad_mode);
      if (!block.attentions.empty()) h = run_attention(block.attentions[j], h);
    }
    if (block.resample_conv) {
      h = upsample2x(h);  // [N, C, 2H, 2W]
      h = conv2d(conv_routes_, pad_mode, h, block.resample_conv->weight, block.resample_conv->bias,
                 1, 1);
    } else if (block.resample_resnet) {
      h = run_resnet(*block.resample_resnet, h, temb, pad_mode);  // [N, C, 2H, 2W]
    }
  }

  h = at::silu(group_norm(conv_norm_out_, h));  // [N, C0, H, W]
  return conv2d(conv_routes_, pad_mode, h, conv_out_.weight, conv_out_.bias, 1,
                1);  // [N, Cout, H, W]
}

}  // namespace gd::models
