// denoising-diffusion-pytorch Trainer checkpoints: pick the Unet weights, infer the Unet
// configuration and the diffusion settings (schedule name, objective) from what is stored.
#include "models/ddpm_pytorch_checkpoint.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "models/tensor_convert.h"
#include "models/torch_zip_reader.h"

namespace gd::models {

namespace {

const char* const kUnetPrefix = "model.";               // in ckpt["model"]
const char* const kEmaUnetPrefix = "ema_model.model.";  // in ckpt["ema"]

// Buffers every 2.x GaussianDiffusion registers (loss_weight is handled on its own).
const char* const kScheduleBuffers[] = {"betas",
                                        "alphas_cumprod",
                                        "alphas_cumprod_prev",
                                        "sqrt_alphas_cumprod",
                                        "sqrt_one_minus_alphas_cumprod",
                                        "log_one_minus_alphas_cumprod",
                                        "sqrt_recip_alphas_cumprod",
                                        "sqrt_recipm1_alphas_cumprod",
                                        "posterior_variance",
                                        "posterior_log_variance_clipped",
                                        "posterior_mean_coef1",
                                        "posterior_mean_coef2"};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// ---- beta schedules, recomputed the way the package does (float64 ATen ops) -----------------

at::Tensor betas_from_alphas_cumprod(at::Tensor ac) {  // [T + 1] -> [T]
  ac = ac / ac[0];
  at::Tensor betas = 1 - (ac.slice(0, 1) / ac.slice(0, 0, -1));
  return at::clamp(betas, 0, 0.999);
}

at::Tensor linear_betas(std::int64_t timesteps) {
  const double scale = 1000.0 / static_cast<double>(timesteps);
  return at::linspace(scale * 0.0001, scale * 0.02, timesteps, at::kDouble);
}

at::Tensor cosine_betas(std::int64_t timesteps) {
  const double s = 0.008;
  at::Tensor t = at::linspace(0, timesteps, timesteps + 1, at::kDouble) / timesteps;
  at::Tensor ac = at::pow(at::cos((t + s) / (1 + s) * M_PI * 0.5), 2);
  return betas_from_alphas_cumprod(ac);
}

at::Tensor sigmoid_betas(std::int64_t timesteps) {
  const std::int64_t start = -3, end = 3, tau = 1;
  at::Tensor t = at::linspace(0, timesteps, timesteps + 1, at::kDouble) / timesteps;
  // The package builds these two with torch.tensor(float): float32 0-d tensors, which do not
  // promote the float64 expression but do round the constants.
  at::Tensor v_start = at::scalar_tensor(static_cast<double>(start) / tau, at::kFloat).sigmoid();
  at::Tensor v_end = at::scalar_tensor(static_cast<double>(end) / tau, at::kFloat).sigmoid();
  at::Tensor ac = (-((t * (end - start) + start) / tau).sigmoid() + v_end) / (v_end - v_start);
  return betas_from_alphas_cumprod(ac);
}

bool close_f32(const at::Tensor& computed_f64, const at::Tensor& stored) {
  at::Tensor rounded = computed_f64.to(at::kFloat);
  return rounded.sizes() == stored.sizes() &&
         at::allclose(rounded, stored.to(at::kFloat), /*rtol=*/1e-5, /*atol=*/1e-9);
}

// ---- objective from loss_weight ---------------------------------------------------------------

struct ObjectiveMatch {
  std::string name;
  bool clipped = false;
  double gamma = 0.0;
};

// `implied` is what the objective's formula says min(snr, gamma) is. It matches when each
// entry equals snr (not clipped) or one constant gamma that snr reaches or exceeds.
std::optional<ObjectiveMatch> match_objective(const std::string& name,
                                              const std::vector<double>& implied,
                                              const std::vector<double>& snr) {
  const double rtol = 1e-3;  // float32 storage and betas widened from float32
  auto near = [&](double a, double b) { return std::abs(a - b) <= rtol * std::abs(b); };
  ObjectiveMatch match{name, false, 0.0};
  double gamma_sum = 0.0;
  int clipped_count = 0;
  for (std::size_t i = 0; i < snr.size(); ++i) {
    if (near(implied[i], snr[i])) continue;
    if (clipped_count == 0) match.gamma = implied[i];
    if (!(match.gamma > 0) || !near(implied[i], match.gamma) || snr[i] < match.gamma * (1 - rtol)) {
      return std::nullopt;
    }
    gamma_sum += implied[i];
    ++clipped_count;
  }
  if (clipped_count > 0) {
    match.clipped = true;
    match.gamma = gamma_sum / clipped_count;
    for (std::size_t i = 0; i < snr.size(); ++i) {
      if (near(implied[i], snr[i]) && snr[i] > match.gamma * (1 + rtol)) return std::nullopt;
    }
  }
  return match;
}

const char* const kObjectiveHint =
    "set the objective explicitly (DdpmLoadOptions::objective: pred_noise, pred_x0 or pred_v)";

void infer_objective(DdpmDiffusionSettings& settings, const TensorMap& state,
                     const at::Tensor& betas64, const std::string& source) {
  auto it = state.find("loss_weight");
  if (it == state.end()) {
    const bool old = state.count("p2_loss_weight") > 0;
    throw Error(
        source + ": no 'loss_weight' buffer" +
        (old ? std::string(" (found 'p2_loss_weight': a pre-1.6 denoising-diffusion-pytorch "
                           "checkpoint)")
             : std::string()) +
        ", so the objective cannot be inferred; " + kObjectiveHint);
  }
  const at::Tensor lw_t = to_tensor(it->second).to(at::kDouble).contiguous();
  if (lw_t.dim() != 1 || lw_t.size(0) != settings.num_timesteps) {
    throw Error(source + ": buffer 'loss_weight' has shape " + shape_string(it->second.shape) +
                ", expected [" + std::to_string(settings.num_timesteps) + "]");
  }
  // The package derives loss_weight from snr = ac / (1 - ac) with ac in float64.
  const at::Tensor ac_t = at::cumprod(1 - betas64, 0).contiguous();
  std::vector<double> snr, as_noise, as_x0, as_v;
  for (std::int64_t i = 0; i < settings.num_timesteps; ++i) {
    const double ac = ac_t.data_ptr<double>()[i], lw = lw_t.data_ptr<double>()[i];
    const double s = ac / (1 - ac);
    snr.push_back(s);
    as_noise.push_back(lw * s);    // pred_noise: loss_weight = min(snr, g) / snr
    as_x0.push_back(lw);           // pred_x0:    loss_weight = min(snr, g)
    as_v.push_back(lw * (s + 1));  // pred_v:     loss_weight = min(snr, g) / (snr + 1)
  }
  std::vector<ObjectiveMatch> matches;
  for (auto m : {match_objective("pred_noise", as_noise, snr),
                 match_objective("pred_x0", as_x0, snr), match_objective("pred_v", as_v, snr)}) {
    if (m) matches.push_back(*m);
  }
  // Two formulas can only both fit when one of them needs clipping; the unclipped one wins.
  if (matches.size() > 1) {
    std::vector<ObjectiveMatch> unclipped;
    for (const auto& m : matches)
      if (!m.clipped) unclipped.push_back(m);
    matches = unclipped;
  }
  if (matches.size() != 1) {
    throw Error(source + ": the 'loss_weight' buffer matches " +
                (matches.empty() ? std::string("none") : std::string("more than one")) +
                " of pred_noise / pred_x0 / pred_v (with or without min-SNR clipping), so the "
                "objective cannot be inferred; " +
                kObjectiveHint);
  }
  settings.objective = matches[0].name;
  settings.min_snr_loss_weight = matches[0].clipped;
  if (matches[0].clipped) settings.min_snr_gamma = matches[0].gamma;
}

// The "prefix*" tensors of `state`, prefix stripped.
TensorMap strip_prefix(const TensorMap& state, const std::string& prefix) {
  TensorMap out;
  for (const auto& [key, raw] : state) {
    if (starts_with(key, prefix)) out.emplace(key.substr(prefix.size()), raw);
  }
  return out;
}

}  // namespace

const char* ddpm_weights_name(DdpmWeights weights) {
  return weights == DdpmWeights::Ema ? "ema" : "model";
}

const at::Tensor& DdpmDiffusionSettings::buffer(const std::string& name) const {
  auto it = buffers.find(name);
  if (it == buffers.end()) throw Error("diffusion settings: no buffer '" + name + "'");
  return it->second;
}

DdpmDiffusionSettings infer_ddpm_diffusion_settings(const TensorMap& state,
                                                    const std::optional<std::string>& objective,
                                                    const std::string& source) {
  DdpmDiffusionSettings settings;
  for (const auto& [key, raw] : state) {
    if (!starts_with(key, kUnetPrefix)) settings.buffers.emplace(key, to_tensor(raw));
  }
  auto betas_it = settings.buffers.find("betas");
  if (betas_it == settings.buffers.end()) {
    throw Error(source + ": no 'betas' buffer: not a GaussianDiffusion state dict");
  }
  settings.num_timesteps = betas_it->second.numel();
  for (const char* name : kScheduleBuffers) {
    auto it = settings.buffers.find(name);
    if (it == settings.buffers.end()) {
      throw Error(source + ": GaussianDiffusion buffer '" + name + "' is missing");
    }
    const at::Tensor& b = it->second;
    if (b.dim() != 1 || b.size(0) != settings.num_timesteps || !b.is_floating_point()) {
      throw Error(source + ": buffer '" + name + "' has shape " + shape_string(b.sizes().vec()) +
                  ", expected a float vector of " + std::to_string(settings.num_timesteps) +
                  " timesteps");
    }
  }
  if (settings.num_timesteps < 2) {
    throw Error(source + ": 'betas' has " + std::to_string(settings.num_timesteps) +
                " entries; a diffusion schedule needs at least 2");
  }

  const at::Tensor stored = betas_it->second.to(at::kDouble).contiguous();  // [T]
  settings.betas.assign(stored.data_ptr<double>(), stored.data_ptr<double>() + stored.numel());

  // Identify the schedule; keep its float64 betas, which loss_weight was derived from.
  at::Tensor betas64 = stored;
  settings.beta_schedule = "custom";
  const std::int64_t T = settings.num_timesteps;
  const std::pair<const char*, at::Tensor> candidates[] = {
      {"linear", linear_betas(T)}, {"cosine", cosine_betas(T)}, {"sigmoid", sigmoid_betas(T)}};
  for (const auto& [name, betas] : candidates) {
    if (close_f32(betas, betas_it->second)) {
      settings.beta_schedule = name;
      betas64 = betas;
      break;
    }
  }

  if (objective) {
    if (*objective != "pred_noise" && *objective != "pred_x0" && *objective != "pred_v") {
      throw Error(source + ": unknown objective '" + *objective +
                  "' (expected pred_noise, pred_x0 or pred_v)");
    }
    settings.objective = *objective;
    settings.objective_inferred = false;
  } else {
    infer_objective(settings, state, betas64, source);
  }
  return settings;
}

bool is_ddpm_trainer_checkpoint(const PickleValue& ckpt) {
  if (ckpt.kind != PickleValue::Kind::Dict) return false;
  const PickleValue* model = dict_lookup(ckpt, "model");
  if (!model || model->kind != PickleValue::Kind::Dict) return false;
  const PickleValue* betas = dict_lookup(*model, "betas");
  const PickleValue* conv = dict_lookup(*model, "model.init_conv.weight");
  return betas && conv && betas->kind == PickleValue::Kind::Tensor &&
         conv->kind == PickleValue::Kind::Tensor;
}

DdpmCheckpoint load_ddpm_checkpoint_tensors(const PickleValue& ckpt, const DdpmLoadOptions& options,
                                            const std::string& source) {
  const std::string not_trainer =
      ": not a denoising-diffusion-pytorch Trainer checkpoint (expected a dict with 'model' "
      "and 'ema' entries, as Trainer.save writes)";
  if (ckpt.kind != PickleValue::Kind::Dict) {
    throw Error(source + not_trainer + "; found a " + kind_name(ckpt.kind));
  }
  const PickleValue* model = dict_lookup(ckpt, "model");
  if (!model || model->kind != PickleValue::Kind::Dict) {
    const bool bare = dict_lookup(ckpt, "betas") || dict_lookup(ckpt, "init_conv.weight") ||
                      dict_lookup(ckpt, "model.init_conv.weight");
    throw Error(source + not_trainer +
                (bare ? "; this looks like a bare state dict without the Trainer wrapper"
                      : "; there is no 'model' entry"));
  }

  DdpmCheckpoint result;
  result.weights = options.weights;
  if (const PickleValue* step = dict_lookup(ckpt, "step");
      step && step->kind == PickleValue::Kind::Int) {
    result.step = step->integer;
  }
  if (const PickleValue* v = dict_lookup(ckpt, "version");
      v && v->kind == PickleValue::Kind::String) {
    result.package_version = v->text;
  }

  const TensorMap model_state = state_dict_tensors(*model, source + " ['model']");
  result.diffusion =
      infer_ddpm_diffusion_settings(model_state, options.objective, source + " ['model']");

  TensorMap ema_state;  // keeps the chosen map alive while we infer
  const TensorMap* weights_state = &model_state;
  std::string prefix = kUnetPrefix, where = source + " ['model']";
  if (options.weights == DdpmWeights::Ema) {
    const PickleValue* ema = dict_lookup(ckpt, "ema");
    if (!ema || ema->kind == PickleValue::Kind::None) {
      throw Error(source + ": the checkpoint has no EMA weights ('ema' entry " +
                  (ema ? std::string("is None") : std::string("missing")) +
                  "); load the online weights instead (weights = model)");
    }
    ema_state = state_dict_tensors(*ema, source + " ['ema']");
    weights_state = &ema_state;
    prefix = kEmaUnetPrefix;
    where = source + " ['ema']";
    if (!ema_state.count(prefix + "init_conv.weight")) {
      throw Error(where + ": no '" + prefix +
                  "init_conv.weight': the EMA state dict does not "
                  "hold an ema_model Unet");
    }
  }
  if (!weights_state->count(prefix + "init_conv.weight")) {
    throw Error(where + ": no '" + prefix + "init_conv.weight'" + not_trainer.substr(1));
  }
  try {
    result.unet = infer_ddpm_unet_config(*weights_state, prefix);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  result.unet_weights = strip_prefix(*weights_state, prefix);
  return result;
}

DdpmCheckpoint load_ddpm_checkpoint(const std::string& path, const DdpmLoadOptions& options) {
  const PickleValue ckpt = read_torch_checkpoint(path);
  return load_ddpm_checkpoint_tensors(ckpt, options, path);
}

std::unique_ptr<DdpmUnet> make_ddpm_unet(const DdpmCheckpoint& ckpt, c10::TensorOptions options,
                                         const std::string& source) {
  auto unet = std::make_unique<DdpmUnet>(ckpt.unet, options);
  unet->params()->load(ckpt.unet_weights, "",
                       source + " (" + ddpm_weights_name(ckpt.weights) + " weights)");
  return unet;
}

}  // namespace gd::models
