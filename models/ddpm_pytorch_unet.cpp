// Reproduces denoising_diffusion_pytorch.Unet.forward (package 2.x, checked against 2.3.1):
// same op order as the Python modules, so float32 results agree to ~1e-6.
#include "models/ddpm_pytorch_unet.h"
#include "models/circular_pad.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <set>
#include <sstream>

#include "core/error.h"

namespace gd::models {

namespace {

const char* kWhat = "denoising-diffusion-pytorch Unet";

// ---- inference helpers --------------------------------------------------------------------

const RawTensor* find(const TensorMap& weights, const std::string& key) {
  auto it = weights.find(key);
  return it == weights.end() ? nullptr : &it->second;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The shape of tensor `prefix + name`, which must have exactly `ndim` dimensions, or a
// gd::Error naming the key.
std::vector<std::int64_t> need(const TensorMap& weights, const std::string& prefix,
                               const std::string& name, std::size_t ndim) {
  const std::string key = prefix + name;
  const RawTensor* raw = find(weights, key);
  if (!raw) {
    throw Error(std::string(kWhat) + ": missing tensor '" + key +
                "' (not a denoising-diffusion-pytorch 2.x Unet state dict)");
  }
  if (raw->shape.size() != ndim) {
    throw Error(std::string(kWhat) + ": tensor '" + key + "' has shape " +
                shape_string(raw->shape) + ", expected " + std::to_string(ndim) + " dimensions");
  }
  return raw->shape;
}

// Older package versions have other key layouts whose forward pass differs; loading them into
// the 2.x network would run but give wrong images, so they are refused by name.
void reject_old_layouts(const TensorMap& weights, const std::string& prefix) {
  std::string wrapper_key, groupnorm_key;
  for (const auto& [key, raw] : weights) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string name = key.substr(prefix.size());
    if (wrapper_key.empty() && name.find(".fn.") != std::string::npos) wrapper_key = key;
    if (groupnorm_key.empty() &&
        (ends_with(name, "block1.norm.weight") || ends_with(name, "block2.norm.weight"))) {
      groupnorm_key = key;
    }
  }
  if (!wrapper_key.empty()) {
    throw Error(std::string(kWhat) + ": key '" + wrapper_key +
                "' is the Residual(PreNorm(...)) attention layout of denoising-diffusion-pytorch "
                "< 1.8.0, which is not supported (only 2.x checkpoints load)");
  }
  if (!find(weights, prefix + "mid_attn.mem_kv") &&
      find(weights, prefix + "mid_attn.to_qkv.weight")) {
    throw Error(std::string(kWhat) + ": no attention memory key/values ('" + prefix +
                "mid_attn.mem_kv'): checkpoint from denoising-diffusion-pytorch 1.8.x "
                "(before 1.9.0), which is not supported (only 2.x checkpoints load)");
  }
  if (!groupnorm_key.empty()) {
    throw Error(std::string(kWhat) + ": key '" + groupnorm_key +
                "' is a GroupNorm block of denoising-diffusion-pytorch 1.9-1.x (before 2.0.0, "
                "which switched to RMSNorm 'norm.g'); this layout is not supported");
  }
}

std::int64_t exact_div(std::int64_t value, std::int64_t divisor, const std::string& key) {
  if (divisor <= 0 || value % divisor != 0) {
    throw Error(std::string(kWhat) + ": tensor '" + key + "' has " + std::to_string(value) +
                " channels, not a multiple of dim = " + std::to_string(divisor));
  }
  return value / divisor;
}

// ---- forward helpers ----------------------------------------------------------------------

// The package's RMSNorm is F.normalize over channels (L2 norm clamped at 1e-12), times g and
// sqrt(C). Its pieces, so that callers can fold g, sqrt(C) and what follows into one small
// per-channel factor and rewrite their own activations in place: a third of this network's time
// went to whole-activation passes and allocations around its convolutions (docs/benchmarks.md).

// 1 / max(|x|, 1e-12) over channels: [N, 1, H, W], small beside x.
at::Tensor inverse_norm(const at::Tensor& x) {  // x: [N, C, H, W]
  return at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, /*keepdim=*/true)
      .clamp_min_(1e-12)
      .reciprocal_();
}

// g sqrt(C): [1, C, 1, 1].
at::Tensor norm_gain(const at::Tensor& g) { return g * std::sqrt(static_cast<double>(g.size(1))); }

// RMSNorm of x, rewriting x (which the caller owns and no longer needs).
at::Tensor rms_norm_(at::Tensor x, const at::Tensor& g) {  // [N, C, H, W]
  return x.mul_(inverse_norm(x)).mul_(norm_gain(g));
}

// RMSNorm of x into a new tensor (x is still needed).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& g) {  // [N, C, H, W]
  return at::mul(x, inverse_norm(x)).mul_(norm_gain(g));
}

}  // namespace

// ---- config ---------------------------------------------------------------------------------

std::int64_t DdpmUnetConfig::downsample_factor() const {
  return std::int64_t{1} << (dim_mults.empty() ? 0 : dim_mults.size() - 1);
}

bool DdpmUnetConfig::operator==(const DdpmUnetConfig& o) const {
  return dim == o.dim && init_dim == o.init_dim && out_dim == o.out_dim && channels == o.channels &&
         self_condition == o.self_condition && learned_variance == o.learned_variance &&
         dim_mults == o.dim_mults && full_attn == o.full_attn && attn_heads == o.attn_heads &&
         attn_dim_head == o.attn_dim_head && learned_sinusoidal_cond == o.learned_sinusoidal_cond &&
         (!learned_sinusoidal_cond || learned_sinusoidal_dim == o.learned_sinusoidal_dim) &&
         sinusoidal_pos_emb_theta == o.sinusoidal_pos_emb_theta && num_mem_kv == o.num_mem_kv;
}

std::string DdpmUnetConfig::to_string() const {
  auto list = [](const auto& v) {
    std::ostringstream s;
    s << "(";
    for (std::size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
    s << ")";
    return s.str();
  };
  std::ostringstream s;
  s << std::boolalpha << "dim=" << dim << " init_dim=" << init_dim << " out_dim=" << out_dim
    << " channels=" << channels << " self_condition=" << self_condition
    << " learned_variance=" << learned_variance << " dim_mults=" << list(dim_mults)
    << " full_attn=" << list(full_attn) << " attn_heads=" << list(attn_heads)
    << " attn_dim_head=" << list(attn_dim_head)
    << " learned_sinusoidal_cond=" << learned_sinusoidal_cond;
  if (learned_sinusoidal_cond) s << " learned_sinusoidal_dim=" << learned_sinusoidal_dim;
  s << " theta=" << sinusoidal_pos_emb_theta << " num_mem_kv=" << num_mem_kv;
  return s.str();
}

DdpmUnetConfig make_ddpm_unet_config(std::int64_t dim, std::vector<std::int64_t> dim_mults,
                                     std::int64_t channels, bool self_condition,
                                     bool learned_variance) {
  DdpmUnetConfig c;
  c.dim = dim;
  c.init_dim = dim;
  c.channels = channels;
  c.self_condition = self_condition;
  c.learned_variance = learned_variance;
  c.out_dim = channels * (learned_variance ? 2 : 1);
  const std::size_t stages = dim_mults.size();
  c.dim_mults = std::move(dim_mults);
  c.full_attn.assign(stages, false);
  if (stages > 0) c.full_attn.back() = true;
  c.attn_heads.assign(stages, 4);
  c.attn_dim_head.assign(stages, 32);
  return c;
}

DdpmUnetConfig infer_ddpm_unet_config(const TensorMap& weights, const std::string& p) {
  reject_old_layouts(weights, p);
  DdpmUnetConfig c;

  const auto init_conv = need(weights, p, "init_conv.weight", 4);    // [init_dim, in, 7, 7]
  const auto final_conv = need(weights, p, "final_conv.weight", 4);  // [out, init_dim, 1, 1]
  const auto time1 = need(weights, p, "time_mlp.1.weight", 2);       // [4 dim, fourier_dim]
  c.init_dim = init_conv[0];
  c.out_dim = final_conv[0];
  c.dim = exact_div(time1[0], 4, p + "time_mlp.1.weight");

  if (const RawTensor* fourier = find(weights, p + "time_mlp.0.weights")) {
    if (fourier->shape.size() != 1 || fourier->shape[0] + fourier->shape[0] + 1 != time1[1]) {
      throw Error(std::string(kWhat) + ": tensor '" + p + "time_mlp.0.weights' has shape " +
                  shape_string(fourier->shape) + " but '" + p + "time_mlp.1.weight' takes " +
                  std::to_string(time1[1]) + " features");
    }
    c.learned_sinusoidal_cond = true;
    c.learned_sinusoidal_dim = fourier->shape[0] * 2;
  } else if (time1[1] != c.dim) {
    throw Error(std::string(kWhat) + ": tensor '" + p + "time_mlp.1.weight' has shape " +
                shape_string(time1) + ": a sinusoidal time embedding of dim " +
                std::to_string(c.dim) + " needs " + std::to_string(c.dim) + " input features");
  }

  // Input = channels, or 2 * channels with self-conditioning; output = channels, or
  // 2 * channels with learned variance (the package accepts no model with both).
  const std::int64_t in = init_conv[1], out = c.out_dim;
  if (in == 2 * out) {
    c.channels = out;
    c.self_condition = true;
  } else if (out == 2 * in) {
    c.channels = in;
    c.learned_variance = true;
  } else {
    c.channels = in;  // plain, or an explicit out_dim
  }

  std::set<std::int64_t> stage_ids;
  const std::string downs = p + "downs.";
  for (auto it = weights.lower_bound(downs); it != weights.end(); ++it) {
    if (it->first.compare(0, downs.size(), downs) != 0) break;
    const std::string rest = it->first.substr(downs.size());
    std::size_t used = 0;
    try {
      stage_ids.insert(std::stoll(rest, &used));
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0) throw Error(std::string(kWhat) + ": unexpected key '" + it->first + "'");
  }
  if (stage_ids.empty()) {
    throw Error(std::string(kWhat) + ": no '" + downs +
                "*' tensors (not a denoising-diffusion-pytorch Unet)");
  }
  const std::int64_t stages = static_cast<std::int64_t>(stage_ids.size());
  if (*stage_ids.begin() != 0 || *stage_ids.rbegin() != stages - 1) {
    throw Error(std::string(kWhat) + ": the '" + downs + "<i>' stages are not numbered 0.." +
                std::to_string(stages - 1));
  }

  c.dim_mults.clear();
  c.full_attn.clear();
  c.attn_heads.clear();
  c.attn_dim_head.clear();
  std::int64_t num_mem_kv = -1;
  for (std::int64_t i = 0; i < stages; ++i) {
    const std::string s = "downs." + std::to_string(i) + ".";
    const bool last = i == stages - 1;
    // Downsample = Sequential(Rearrange, Conv1x1) on all but the last stage, else a 3x3 conv.
    const std::string resample = s + (last ? "3.weight" : "3.1.weight");
    const auto conv = need(weights, p, resample, 4);
    c.dim_mults.push_back(exact_div(conv[0], c.dim, p + resample));

    // Full attention has one output conv ('to_out'); linear attention a conv + RMSNorm.
    const bool full = find(weights, p + s + "2.to_out.weight") != nullptr;
    if (!full && !find(weights, p + s + "2.to_out.0.weight")) {
      throw Error(std::string(kWhat) + ": missing tensor '" + p + s +
                  "2.to_out.weight' (full attention) or '" + p + s +
                  "2.to_out.0.weight' (linear attention)");
    }
    // mem_kv: full [2, heads, num_mem_kv, dim_head]; linear [2, heads, dim_head, num_mem_kv].
    const auto mem = need(weights, p, s + "2.mem_kv", 4);
    c.full_attn.push_back(full);
    c.attn_heads.push_back(mem[1]);
    c.attn_dim_head.push_back(full ? mem[3] : mem[2]);
    const std::int64_t mem_count = full ? mem[2] : mem[3];
    if (num_mem_kv >= 0 && mem_count != num_mem_kv) {
      throw Error(std::string(kWhat) + ": tensor '" + p + s + "2.mem_kv' has shape " +
                  shape_string(mem) + ": " + std::to_string(mem_count) +
                  " memory key/values where earlier stages have " + std::to_string(num_mem_kv));
    }
    num_mem_kv = mem_count;
  }
  c.num_mem_kv = num_mem_kv;
  return c;
}

// ---- network --------------------------------------------------------------------------------

DdpmUnet::Conv DdpmUnet::add_conv(const std::string& name, std::int64_t in, std::int64_t out,
                                  std::int64_t kernel, bool bias) {
  Conv conv;
  conv.weight = params_.add(name + ".weight", {out, in, kernel, kernel});
  if (bias) conv.bias = params_.add(name + ".bias", {out});
  conv.padding = kernel / 2;
  return conv;
}

DdpmUnet::ResnetBlock DdpmUnet::add_resnet(const std::string& name, std::int64_t in,
                                           std::int64_t out) {
  ResnetBlock b;
  b.mlp_weight = params_.add(name + ".mlp.1.weight", {out * 2, config_.time_dim()});
  b.mlp_bias = params_.add(name + ".mlp.1.bias", {out * 2});
  b.proj1 = add_conv(name + ".block1.proj", in, out, 3);
  b.norm1_g = params_.add(name + ".block1.norm.g", {1, out, 1, 1});
  b.proj2 = add_conv(name + ".block2.proj", out, out, 3);
  b.norm2_g = params_.add(name + ".block2.norm.g", {1, out, 1, 1});
  if (in != out) b.res_conv = add_conv(name + ".res_conv", in, out, 1);
  return b;
}

DdpmUnet::AttentionBlock DdpmUnet::add_attention(const std::string& name, std::int64_t dim,
                                                 bool full, std::int64_t heads,
                                                 std::int64_t dim_head) {
  AttentionBlock a;
  a.full = full;
  a.heads = heads;
  a.dim_head = dim_head;
  const std::int64_t hidden = heads * dim_head, mem = config_.num_mem_kv;
  a.mem_kv = full ? params_.add(name + ".mem_kv", {2, heads, mem, dim_head})
                  : params_.add(name + ".mem_kv", {2, heads, dim_head, mem});
  a.norm_g = params_.add(name + ".norm.g", {1, dim, 1, 1});
  a.to_qkv = params_.add(name + ".to_qkv.weight", {hidden * 3, dim, 1, 1});
  if (full) {
    a.to_out = add_conv(name + ".to_out", hidden, dim, 1);
  } else {
    a.to_out = add_conv(name + ".to_out.0", hidden, dim, 1);
    a.out_norm_g = params_.add(name + ".to_out.1.g", {1, dim, 1, 1});
  }
  return a;
}

DdpmUnet::DdpmUnet(const DdpmUnetConfig& config, c10::TensorOptions options)
    : config_(config), params_(options) {
  const DdpmUnetConfig& c = config_;
  const std::size_t stages = c.dim_mults.size();
  if (stages == 0 || c.full_attn.size() != stages || c.attn_heads.size() != stages ||
      c.attn_dim_head.size() != stages) {
    throw Error(std::string(kWhat) +
                ": configuration needs one full_attn / attn_heads / "
                "attn_dim_head entry per dim_mults stage: " +
                c.to_string());
  }
  if (c.learned_sinusoidal_cond ? c.learned_sinusoidal_dim % 2 != 0 : c.dim % 2 != 0 || c.dim < 4) {
    throw Error(std::string(kWhat) +
                ": the time embedding dimension must be even: " + c.to_string());
  }

  // dims = [init_dim, dim * m...]; stage i maps dims[i] -> dims[i + 1].
  std::vector<std::int64_t> dims{c.init_dim};
  for (std::int64_t m : c.dim_mults) dims.push_back(c.dim * m);

  // Registration follows the package's state-dict order.
  init_conv_ = add_conv("init_conv", c.input_channels(), c.init_dim, 7);
  const std::int64_t time_dim = c.time_dim();
  std::int64_t fourier_dim = c.dim;
  if (c.learned_sinusoidal_cond) {
    time_fourier_weights_ = params_.add("time_mlp.0.weights", {c.learned_sinusoidal_dim / 2});
    fourier_dim = c.learned_sinusoidal_dim + 1;
  }
  time_lin1_w_ = params_.add("time_mlp.1.weight", {time_dim, fourier_dim});
  time_lin1_b_ = params_.add("time_mlp.1.bias", {time_dim});
  time_lin2_w_ = params_.add("time_mlp.3.weight", {time_dim, time_dim});
  time_lin2_b_ = params_.add("time_mlp.3.bias", {time_dim});

  for (std::size_t i = 0; i < stages; ++i) {
    const std::string s = "downs." + std::to_string(i);
    const std::int64_t in = dims[i], out = dims[i + 1];
    const bool last = i + 1 == stages;
    Stage stage;
    stage.block1 = add_resnet(s + ".0", in, in);
    stage.block2 = add_resnet(s + ".1", in, in);
    stage.attn = add_attention(s + ".2", in, c.full_attn[i], c.attn_heads[i], c.attn_dim_head[i]);
    stage.rescale = !last;
    stage.resample = last ? add_conv(s + ".3", in, out, 3) : add_conv(s + ".3.1", in * 4, out, 1);
    downs_.push_back(std::move(stage));
  }
  for (std::size_t i = 0; i < stages; ++i) {
    const std::size_t j = stages - 1 - i;  // the up path walks the stages in reverse
    const std::string s = "ups." + std::to_string(i);
    const std::int64_t in = dims[j], out = dims[j + 1];
    const bool last = i + 1 == stages;
    Stage stage;
    stage.block1 = add_resnet(s + ".0", out + in, out);
    stage.block2 = add_resnet(s + ".1", out + in, out);
    stage.attn = add_attention(s + ".2", out, c.full_attn[j], c.attn_heads[j], c.attn_dim_head[j]);
    stage.rescale = !last;
    stage.resample = add_conv(last ? s + ".3" : s + ".3.1", out, in, 3);
    ups_.push_back(std::move(stage));
  }

  const std::int64_t mid = dims.back();
  mid_block1_ = add_resnet("mid_block1", mid, mid);
  mid_attn_ = add_attention("mid_attn", mid, true, c.attn_heads.back(), c.attn_dim_head.back());
  mid_block2_ = add_resnet("mid_block2", mid, mid);
  final_res_block_ = add_resnet("final_res_block", c.init_dim * 2, c.init_dim);
  final_conv_ = add_conv("final_conv", c.init_dim, c.out_dim, 1);
}

namespace {

// mode: wrap-around padding instead of zeros along the axes it wraps (seamless, tileable
// output; see Network).
at::Tensor conv(const ConvRoutes& routes, core::Padding mode, const at::Tensor& x,
                const at::Tensor& weight, const at::Tensor& bias, std::int64_t padding) {
  if (mode != core::Padding::Zeros && padding > 0) {
    return conv2d(routes, pad_by_mode(x, mode, padding, padding, padding, padding), weight, bias, 1,
                  0);
  }
  return conv2d(routes, x, weight, bias, /*stride=*/1, padding);
}

// The package's linear attention: queries softmaxed over the features of a head (times
// dim_head^-0.5), keys over the positions and the num_mem_kv learned slots, context = k v^T per
// head, out = context^T q. Computed on the rows the channels-last convolution wrote (position
// by position, features contiguous) instead of in the package's [N, heads, d, HW] layout: every
// product reads its operands in place with BLAS strides and writes straight into a
// channels-last output. The package's layout cost three full copies, a strided softmax and a
// slow transposed product: at 128x128 this block took 40% of the network's time.
// qkv: [N, 3 heads d, H, W]; mem_kv: [2, heads, d, M]. Returns [N, heads d, H, W].
at::Tensor linear_attention(const at::Tensor& qkv, const at::Tensor& mem_kv, std::int64_t heads,
                            std::int64_t d) {
  const std::int64_t n = qkv.size(0), h = qkv.size(2), w = qkv.size(3), hidden = heads * d;
  const std::int64_t positions = h * w, slots = mem_kv.size(3);
  const at::Tensor rows =
      qkv.permute({0, 2, 3, 1}).reshape({n, positions, 3, hidden});  // [N, P, 3, hidden]
  const at::Tensor mem = mem_kv.permute({0, 3, 1, 2}).reshape({2, 1, slots, hidden});
  // Keys and values with the slots first, as the package concatenates them: [N, M + P, hidden].
  const at::Tensor k =
      at::cat({mem[0].expand({n, slots, hidden}), rows.select(2, 1)}, 1).softmax(1);
  const at::Tensor v = at::cat({mem[1].expand({n, slots, hidden}), rows.select(2, 2)}, 1);
  const at::Tensor q = rows.select(2, 0)
                           .reshape({n, positions, heads, d})
                           .softmax(-1)
                           .mul_(std::pow(static_cast<double>(d), -0.5));  // [N, P, heads, d]
  at::Tensor out = at::empty({n, positions, hidden}, q.options());         // [N, P, hidden]
  at::parallel_for(0, n * heads, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const std::int64_t b = i / heads, offset = (i % heads) * d;
      const at::Tensor context =
          at::mm(k[b].narrow(1, offset, d).t(), v[b].narrow(1, offset, d));  // [d, d]
      at::Tensor out_rows = out[b].narrow(1, offset, d);                     // [P, d]
      at::mm_out(out_rows, q[b].select(1, i % heads), context);
    }
  });
  return out.view({n, h, w, hidden}).permute({0, 3, 1, 2});  // channels-last strides
}

}  // namespace

at::Tensor DdpmUnet::time_embedding(const at::Tensor& t) const {
  at::Tensor emb;  // [N, fourier_dim], float32 like the package
  if (config_.learned_sinusoidal_cond) {
    // RandomOrLearnedSinusoidalPosEmb: [t, sin(2 pi t w), cos(2 pi t w)].
    at::Tensor x = t.reshape({-1, 1});                                         // [N, 1]
    at::Tensor freqs = x * time_fourier_weights_.reshape({1, -1}) * 2 * M_PI;  // [N, D/2]
    emb = at::cat({x.to(freqs.scalar_type()), freqs.sin(), freqs.cos()}, -1);
  } else {
    // SinusoidalPosEmb: frequencies theta^(-k / (half - 1)), computed in float32 from a
    // float64 constant exactly as the package does.
    const std::int64_t half = config_.dim / 2;
    const double step = std::log(config_.sinusoidal_pos_emb_theta) / static_cast<double>(half - 1);
    at::Tensor freqs = at::exp(at::arange(half, t.options().dtype(at::kLong)) * -step);  // [half]
    at::Tensor args = t.reshape({-1, 1}) * freqs.reshape({1, -1});  // [N, half]
    emb = at::cat({args.sin(), args.cos()}, -1);                    // [N, dim]
  }
  emb = emb.to(time_lin1_w_.scalar_type());
  at::Tensor h = at::gelu(at::linear(emb, time_lin1_w_, time_lin1_b_));  // [N, 4 dim]
  return at::linear(h, time_lin2_w_, time_lin2_b_);                      // [N, 4 dim]
}

at::Tensor DdpmUnet::run_resnet(const ResnetBlock& b, const at::Tensor& x, core::Padding pad_mode,
                                const at::Tensor& time_emb) const {
  // (scale, shift) from the time embedding modulate the first block after its norm:
  // silu(norm(h) (scale + 1) + shift), with the norm's gain folded into the factor.
  at::Tensor ss = at::linear(at::silu(time_emb), b.mlp_weight, b.mlp_bias);  // [N, 2 C]
  ss = ss.reshape({ss.size(0), ss.size(1), 1, 1});                           // [N, 2 C, 1, 1]
  auto chunks = ss.chunk(2, 1);
  const at::Tensor factor = norm_gain(b.norm1_g) * (chunks[0] + 1);                 // [N, C, 1, 1]
  at::Tensor h = conv(conv_routes_, pad_mode, x, b.proj1.weight, b.proj1.bias, 1);  // [N, C, H, W]
  h.mul_(inverse_norm(h));
  at::silu_(at::addcmul_out(h, chunks[1], h, factor));
  h = rms_norm_(conv(conv_routes_, pad_mode, h, b.proj2.weight, b.proj2.bias, 1), b.norm2_g);
  at::silu_(h);
  if (!b.res_conv) return h.add_(x);
  return h.add_(conv(conv_routes_, pad_mode, x, b.res_conv->weight, b.res_conv->bias, 0));
}

at::Tensor DdpmUnet::run_attention(const AttentionBlock& a, const at::Tensor& x) const {
  const std::int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  const std::int64_t heads = a.heads, d = a.dim_head;
  const at::Tensor qkv = conv(conv_routes_, core::Padding::Zeros, rms_norm(x, a.norm_g), a.to_qkv,
                              {}, 0);  // [N, 3 heads d, H, W]
  if (!a.full) {
    at::Tensor out = linear_attention(qkv, a.mem_kv, heads, d);  // [N, heads d, H, W]
    return rms_norm_(
        conv(conv_routes_, core::Padding::Zeros, out, a.to_out.weight, a.to_out.bias, 0),
        a.out_norm_g);
  }
  // Softmax attention over HW positions plus num_mem_kv learned key/value slots (the lowest
  // resolution only, so the package's layout is kept). Channels split as (heads, d), heads
  // outermost.
  auto parts = qkv.chunk(3, 1);
  const at::Tensor q = parts[0].reshape({n, heads, d, h * w}).transpose(-1, -2);  // [N,heads,HW,d]
  const at::Tensor k = at::cat({a.mem_kv[0].unsqueeze(0).expand({n, heads, -1, d}),
                                parts[1].reshape({n, heads, d, h * w}).transpose(-1, -2)},
                               -2);  // [N, heads, M + HW, d]
  const at::Tensor v = at::cat({a.mem_kv[1].unsqueeze(0).expand({n, heads, -1, d}),
                                parts[2].reshape({n, heads, d, h * w}).transpose(-1, -2)},
                               -2);
  const double scale = std::pow(static_cast<double>(d), -0.5);
  const at::Tensor attn =
      (at::einsum("bhid,bhjd->bhij", {q, k}) * scale).softmax(-1);  // [N, heads, HW, M + HW]
  at::Tensor out = at::einsum("bhij,bhjd->bhid", {attn, v});        // [N, heads, HW, d]
  out = out.permute({0, 1, 3, 2}).reshape({n, heads * d, h, w});
  return conv(conv_routes_, core::Padding::Zeros, out, a.to_out.weight, a.to_out.bias, 0);
}

at::Tensor DdpmUnet::forward(const at::Tensor& x_in, const at::Tensor& t,
                             const core::Conditioning& cond) const {
  const DdpmUnetConfig& c = config_;
  check_conditioning(cond, /*num_classes=*/0, /*allow_mean=*/false, /*circular_ok=*/true, kWhat);
  const core::Padding pad_mode = cond.padding;
  const std::optional<at::Tensor>& self_cond = cond.self_cond;
  if (x_in.dim() != 4 || x_in.size(1) != c.channels) {
    throw Error(std::string(kWhat) + ": input has shape " + shape_string(x_in.sizes().vec()) +
                ", expected [N, " + std::to_string(c.channels) + ", H, W]");
  }
  const std::int64_t factor = c.downsample_factor();
  if (x_in.size(2) % factor != 0 || x_in.size(3) % factor != 0) {
    throw Error(std::string(kWhat) + ": image size " + std::to_string(x_in.size(3)) + "x" +
                std::to_string(x_in.size(2)) + " is not a multiple of " + std::to_string(factor) +
                " (2^(stages - 1))");
  }
  if (t.dim() != 1 || t.size(0) != x_in.size(0)) {
    throw Error(std::string(kWhat) + ": timesteps have shape " + shape_string(t.sizes().vec()) +
                ", expected [" + std::to_string(x_in.size(0)) + "]");
  }

  at::Tensor x = x_in;  // [N, C, H, W]
  if (c.self_condition) {
    at::Tensor cond = self_cond ? *self_cond : at::zeros_like(x);
    if (cond.sizes() != x.sizes()) {
      throw Error(std::string(kWhat) + ": self-conditioning input has shape " +
                  shape_string(cond.sizes().vec()) + ", expected " + shape_string(x.sizes().vec()));
    }
    x = at::cat({cond, x}, 1);  // [N, 2 C, H, W], condition first
  }

  x = conv(conv_routes_, pad_mode, x, init_conv_.weight, init_conv_.bias,
           3);  // [N, init_dim, H, W]
  const at::Tensor r = x;
  const at::Tensor temb = time_embedding(t);  // [N, 4 dim]

  std::vector<at::Tensor> skips;  // two per stage, consumed in reverse on the way up
  for (const Stage& s : downs_) {
    x = run_resnet(s.block1, x, pad_mode, temb);
    skips.push_back(x);
    x = run_resnet(s.block2, x, pad_mode, temb);
    x = run_attention(s.attn, x).add_(x);
    skips.push_back(x);
    // Downsample: 'b c (h 2) (w 2) -> b (c 2 2) h w' is pixel_unshuffle, then a 1x1 conv.
    if (s.rescale) x = at::pixel_unshuffle(x, 2);
    x = conv(conv_routes_, pad_mode, x, s.resample.weight, s.resample.bias, s.resample.padding);
  }

  x = run_resnet(mid_block1_, x, pad_mode, temb);  // [N, mid, H / f, W / f]
  x = run_attention(mid_attn_, x).add_(x);
  x = run_resnet(mid_block2_, x, pad_mode, temb);

  for (const Stage& s : ups_) {
    x = at::cat({x, skips.back()}, 1);
    skips.pop_back();
    x = run_resnet(s.block1, x, pad_mode, temb);
    x = at::cat({x, skips.back()}, 1);
    skips.pop_back();
    x = run_resnet(s.block2, x, pad_mode, temb);
    x = run_attention(s.attn, x).add_(x);
    if (s.rescale) {
      x = at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}, 2.0, 2.0);  // [N, C, 2H, 2W]
    }
    x = conv(conv_routes_, pad_mode, x, s.resample.weight, s.resample.bias, s.resample.padding);
  }

  x = at::cat({x, r}, 1);  // [N, 2 init_dim, H, W]
  x = run_resnet(final_res_block_, x, pad_mode, temb);
  return conv(conv_routes_, pad_mode, x, final_conv_.weight, final_conv_.bias,
              0);  // [N, out_dim, H, W]
}

}  // namespace gd::models
