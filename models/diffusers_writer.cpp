#include "models/diffusers_writer.h"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "core/error.h"

namespace gd::models {

using nlohmann::ordered_json;

namespace {

const char* kDiffusersVersion = "0.31.0";  // any version with these keys reads the folder

const char* activation_name(UNet2DActivation act) {
  switch (act) {
    case UNet2DActivation::SiLU: return "silu";
    case UNet2DActivation::Mish: return "mish";
    case UNet2DActivation::GELU: return "gelu";
    case UNet2DActivation::ReLU: return "relu";
  }
  return "silu";
}

}  // namespace

std::string unet2d_config_json(const UNet2DConfig& c) {
  ordered_json j;
  j["_class_name"] = "UNet2DModel";
  j["_diffusers_version"] = kDiffusersVersion;
  j["act_fn"] = activation_name(c.act_fn);
  j["add_attention"] = c.add_attention;
  if (c.attention_head_dim) j["attention_head_dim"] = *c.attention_head_dim;
  else j["attention_head_dim"] = nullptr;
  if (c.attn_norm_num_groups) j["attn_norm_num_groups"] = *c.attn_norm_num_groups;
  else j["attn_norm_num_groups"] = nullptr;
  j["block_out_channels"] = c.block_out_channels;
  j["center_input_sample"] = c.center_input_sample;
  j["class_embed_type"] = nullptr;
  ordered_json down = ordered_json::array(), up = ordered_json::array();
  for (auto b : c.down_blocks)
    down.push_back(b == UNet2DBlock::Attention ? "AttnDownBlock2D" : "DownBlock2D");
  for (auto b : c.up_blocks)
    up.push_back(b == UNet2DBlock::Attention ? "AttnUpBlock2D" : "UpBlock2D");
  j["down_block_types"] = down;
  j["downsample_padding"] = c.downsample_padding;
  j["downsample_type"] = c.downsample_type == UNet2DResample::Conv ? "conv" : "resnet";
  j["dropout"] = 0.0;
  j["flip_sin_to_cos"] = c.flip_sin_to_cos;
  j["freq_shift"] = c.freq_shift;
  j["in_channels"] = c.in_channels;
  j["layers_per_block"] = c.layers_per_block;
  j["mid_block_scale_factor"] = c.mid_block_scale_factor;
  if (c.mid_block) j["mid_block_type"] = "UNetMidBlock2D";
  else j["mid_block_type"] = nullptr;
  j["norm_eps"] = c.norm_eps;
  j["norm_num_groups"] = c.norm_num_groups;
  if (c.num_class_embeds > 0) j["num_class_embeds"] = c.num_class_embeds;
  else j["num_class_embeds"] = nullptr;
  j["num_train_timesteps"] = nullptr;
  j["out_channels"] = c.out_channels;
  j["resnet_time_scale_shift"] =
      c.resnet_time_scale_shift == UNet2DTimeNorm::Default ? "default" : "scale_shift";
  if (c.sample_height > 0 && c.sample_height == c.sample_width) {
    j["sample_size"] = c.sample_height;
  } else if (c.sample_height > 0) {
    j["sample_size"] = {c.sample_height, c.sample_width};
  } else {
    j["sample_size"] = nullptr;
  }
  if (c.time_embedding_dim > 0) j["time_embedding_dim"] = c.time_embedding_dim;
  else j["time_embedding_dim"] = nullptr;
  j["time_embedding_type"] = "positional";
  j["up_block_types"] = up;
  j["upsample_type"] = c.upsample_type == UNet2DResample::Conv ? "conv" : "resnet";
  return j.dump(2) + "\n";
}

std::string scheduler_config_json(const core::ScheduleConfig& s) {
  ordered_json j;
  j["_class_name"] = "DDPMScheduler";
  j["_diffusers_version"] = kDiffusersVersion;
  j["beta_end"] = s.beta_end;
  const bool given = s.beta_schedule == core::BetaSchedule::Given;
  j["beta_schedule"] = given ? "linear" : core::beta_schedule_name(s.beta_schedule);
  j["beta_start"] = s.beta_start;
  j["clip_sample"] = s.clip_sample;
  j["clip_sample_range"] = s.clip_sample_range;
  j["dynamic_thresholding_ratio"] = s.dynamic_thresholding_ratio;
  j["num_train_timesteps"] = s.num_train_timesteps;
  j["prediction_type"] = core::prediction_type_name(s.prediction_type);
  j["rescale_betas_zero_snr"] = false;
  j["sample_max_value"] = s.sample_max_value;
  j["steps_offset"] = s.steps_offset;
  j["thresholding"] = s.thresholding;
  j["timestep_spacing"] = core::timestep_spacing_name(s.timestep_spacing);
  if (given) j["trained_betas"] = s.given_betas;
  else j["trained_betas"] = nullptr;
  j["variance_type"] = s.variance_type;
  return j.dump(2) + "\n";
}

std::string safetensors_bytes(const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::map<std::string, at::Tensor> sorted;
  for (const auto& [name, t] : tensors) {
    if (!sorted.emplace(name, t).second)
      throw Error("safetensors: duplicate tensor '" + name + "'");
    if (!at::isFloatingType(t.scalar_type())) {
      throw Error("safetensors: tensor '" + name + "' is not floating point");
    }
  }
  ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::vector<at::Tensor> data;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    at::Tensor f = t.detach().to(at::kCPU, at::kFloat).contiguous();
    const std::uint64_t bytes = static_cast<std::uint64_t>(f.numel()) * 4;
    header[name] = {
        {"dtype", "F32"}, {"shape", f.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(f);
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  const std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  static_assert(sizeof(float) == 4, "float32");
  const std::uint32_t probe = 1;
  const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
  for (const at::Tensor& f : data) {
    const char* p = static_cast<const char*>(f.data_ptr());
    const std::size_t size = static_cast<std::size_t>(f.numel()) * 4;
    if (little) {
      out.append(p, size);
    } else {
      for (std::size_t i = 0; i < size; i += 4) {
        for (int k = 3; k >= 0; --k) out.push_back(p[i + k]);
      }
    }
  }
  return out;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path + ": cannot create (" + std::strerror(errno) + ")");
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                  std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw Error(path + ": write failed (" + std::strerror(ok ? errno : err) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    throw Error(path + ": cannot rename into place (" + std::strerror(e) + ")");
  }
}

void write_diffusers_folder(const std::string& dir, const UNet2DConfig& config,
                            const core::ScheduleConfig& schedule,
                            const std::vector<std::pair<std::string, at::Tensor>>& weights) {
  config.validate("model configuration");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir)) {
    throw Error(dir + ": cannot create the model folder (" + ec.message() + ")");
  }
  const std::filesystem::path d(dir);
  // Weights first: a folder with a config but no weights would look loadable.
  write_file_atomic((d / "diffusion_pytorch_model.safetensors").string(),
                    safetensors_bytes(weights));
  write_file_atomic((d / "scheduler_config.json").string(), scheduler_config_json(schedule));
  write_file_atomic((d / "config.json").string(), unet2d_config_json(config));
}

}  // namespace gd::models
