// Defaults and rules follow diffusers' UNet2DModel.__init__, get_down_block / get_up_block
// and UNetMidBlock2D (checked at diffusers commit 58eb52c0, 0.40.0.dev0).
#include "models/diffusers_config.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <sstream>

#include "core/error.h"

namespace gd::models {

namespace {

using nlohmann::json;

// Upper bounds that no real checkpoint comes near; they keep a corrupt config.json from asking
// for terabytes of zero-filled parameters before the weights are even read.
constexpr std::int64_t kMaxChannels = 1 << 16;
constexpr std::int64_t kMaxStages = 16;
constexpr std::int64_t kMaxLayers = 64;

std::string quoted(const json& value) { return value.dump(); }

// Typed access to the keys of one config.json object; every failure names the file and key.
class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw Error(source_ + ": '" + key + "' " + problem);
  }

  // nullptr when the key is absent; a JSON null is returned as is.
  const json* find(const std::string& key) const {
    auto it = root_.find(key);
    return it == root_.end() ? nullptr : &*it;
  }
  // Absent and null both mean "use the default" for keys where diffusers treats None so.
  const json* find_non_null(const std::string& key) const {
    const json* value = find(key);
    return value && !value->is_null() ? value : nullptr;
  }

  std::int64_t integer_value(const std::string& key, const json& value) const {
    if (!value.is_number_integer()) fail(key, "must be an integer, got " + quoted(value));
    if (value.is_number_unsigned() &&
        value.get<std::uint64_t>() >
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(key, "is out of range: " + quoted(value));
    }
    return value.get<std::int64_t>();
  }

  std::int64_t integer(const std::string& key, std::int64_t fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    return integer_value(key, *value);
  }

  double number(const std::string& key, double fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_number()) fail(key, "must be a number, got " + quoted(*value));
    return value->get<double>();
  }

  bool boolean(const std::string& key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_boolean()) fail(key, "must be true or false, got " + quoted(*value));
    return value->get<bool>();
  }

  // A string, or `fallback` when the key is absent or null.
  std::string string_or(const std::string& key, const std::string& fallback) const {
    const json* value = find_non_null(key);
    if (!value) return fallback;
    if (!value->is_string()) fail(key, "must be a string, got " + quoted(*value));
    return value->get<std::string>();
  }

  std::vector<json> list(const std::string& key) const {
    const json* value = find(key);
    if (!value) return {};
    if (!value->is_array()) fail(key, "must be a list, got " + quoted(*value));
    return std::vector<json>(value->begin(), value->end());
  }

 private:
  const json& root_;
  const std::string& source_;
};

// diffusers strips a "UNetRes" prefix from block type names before matching them.
std::string strip_unetres(const std::string& name) {
  const std::string prefix = "UNetRes";
  return name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
}

std::vector<UNet2DBlock> parse_block_types(const ConfigReader& reader, const std::string& key,
                                           const char* plain, const char* attention,
                                           const std::vector<UNet2DBlock>& fallback) {
  if (!reader.find(key)) return fallback;
  std::vector<UNet2DBlock> blocks;
  const std::vector<json> items = reader.list(key);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string item_key = key + "[" + std::to_string(i) + "]";
    if (!items[i].is_string()) {
      reader.fail(item_key, "must be a block type name, got " + quoted(items[i]));
    }
    const std::string name = strip_unetres(items[i].get<std::string>());
    if (name == plain) {
      blocks.push_back(UNet2DBlock::Plain);
    } else if (name == attention) {
      blocks.push_back(UNet2DBlock::Attention);
    } else {
      reader.fail(item_key, "is " + quoted(items[i]) + ", which is not supported (expected " +
                                plain + " or " + attention + ")");
    }
  }
  return blocks;
}

UNet2DResample parse_resample(const ConfigReader& reader, const std::string& key) {
  // get_down_block / get_up_block turn None into "conv".
  const std::string value = reader.string_or(key, "conv");
  if (value == "conv") return UNet2DResample::Conv;
  if (value == "resnet") return UNet2DResample::Resnet;
  reader.fail(key,
              "is \"" + value + "\", which is not supported (expected \"conv\" or \"resnet\")");
}

// An integer that may be null (nullopt), with `fallback` when absent.
std::optional<std::int64_t> optional_integer(const ConfigReader& reader, const std::string& key,
                                             std::optional<std::int64_t> fallback) {
  const json* value = reader.find(key);
  if (!value) return fallback;
  if (value->is_null()) return std::nullopt;
  return reader.integer_value(key, *value);
}

}  // namespace

// ---- derived values -------------------------------------------------------------------------

std::int64_t UNet2DConfig::time_embed_dim() const {
  // diffusers: `time_embedding_dim or block_out_channels[0] * 4`, so 0 also means the default.
  if (time_embedding_dim > 0) return time_embedding_dim;
  return block_out_channels.empty() ? 0 : 4 * block_out_channels[0];
}

std::int64_t UNet2DConfig::downsampling_factor() const {
  return std::int64_t{1} << (block_out_channels.empty() ? 0 : block_out_channels.size() - 1);
}

std::int64_t UNet2DConfig::attention_dim_head(std::int64_t channels) const {
  return attention_head_dim ? *attention_head_dim : channels;
}

std::int64_t UNet2DConfig::attention_heads(std::int64_t channels) const {
  const std::int64_t dim_head = attention_dim_head(channels);
  return dim_head > 0 ? channels / dim_head : 0;
}

std::optional<std::int64_t> UNet2DConfig::mid_attention_groups() const {
  if (attn_norm_num_groups) return attn_norm_num_groups;
  if (resnet_time_scale_shift == UNet2DTimeNorm::Default) return norm_num_groups;
  return std::nullopt;
}

// ---- validation -----------------------------------------------------------------------------

void UNet2DConfig::validate(const std::string& source) const {
  auto fail = [&](const std::string& key, const std::string& problem) {
    throw Error(source + ": '" + key + "' " + problem);
  };
  auto check_range = [&](const std::string& key, std::int64_t value, std::int64_t lo,
                         std::int64_t hi) {
    if (value < lo || value > hi) {
      fail(key, "is " + std::to_string(value) + ", expected " + std::to_string(lo) + " to " +
                    std::to_string(hi));
    }
  };

  const std::int64_t stages = num_stages();
  if (stages == 0) fail("block_out_channels", "must list at least one stage");
  check_range("block_out_channels", stages, 1, kMaxStages);
  if (static_cast<std::int64_t>(down_blocks.size()) != stages) {
    fail("down_block_types", "has " + std::to_string(down_blocks.size()) +
                                 " entries but block_out_channels has " + std::to_string(stages));
  }
  if (static_cast<std::int64_t>(up_blocks.size()) != stages) {
    fail("up_block_types", "has " + std::to_string(up_blocks.size()) +
                               " entries but down_block_types has " + std::to_string(stages));
  }
  check_range("in_channels", in_channels, 1, kMaxChannels);
  check_range("out_channels", out_channels, 1, kMaxChannels);
  check_range("layers_per_block", layers_per_block, 1, kMaxLayers);
  check_range("downsample_padding", downsample_padding, 0, 16);
  check_range("norm_num_groups", norm_num_groups, 1, kMaxChannels);
  check_range("time_embedding_dim", time_embedding_dim, 0, 4 * kMaxChannels);
  if (!(norm_eps > 0.0)) fail("norm_eps", "must be positive");
  if (mid_block_scale_factor == 0.0) fail("mid_block_scale_factor", "must not be 0");

  for (std::int64_t i = 0; i < stages; ++i) {
    const std::string key = "block_out_channels[" + std::to_string(i) + "]";
    const std::int64_t channels = block_out_channels[i];
    check_range(key, channels, 1, kMaxChannels);
    // Every GroupNorm runs over a block width or a sum of block widths, so this covers them all.
    if (channels % norm_num_groups != 0) {
      fail(key, "is " + std::to_string(channels) +
                    ", not divisible by norm_num_groups = " + std::to_string(norm_num_groups));
    }
  }

  if (attention_head_dim) check_range("attention_head_dim", *attention_head_dim, 1, kMaxChannels);
  auto check_heads = [&](std::int64_t channels, const std::string& where) {
    if (attention_heads(channels) < 1) {
      fail("attention_head_dim", "is " + std::to_string(attention_dim_head(channels)) +
                                     ", wider than the " + std::to_string(channels) +
                                     " channels of " + where + " (no attention head left)");
    }
  };
  for (std::int64_t i = 0; i < stages; ++i) {
    if (down_blocks[i] == UNet2DBlock::Attention) {
      check_heads(block_out_channels[i], "down block " + std::to_string(i));
    }
    if (up_blocks[i] == UNet2DBlock::Attention) {
      check_heads(block_out_channels[stages - 1 - i], "up block " + std::to_string(i));
    }
  }
  if (mid_block && add_attention) {
    const std::int64_t channels = block_out_channels.back();
    check_heads(channels, "the mid block");
    if (attn_norm_num_groups) {
      check_range("attn_norm_num_groups", *attn_norm_num_groups, 1, kMaxChannels);
      if (channels % *attn_norm_num_groups != 0) {
        fail("attn_norm_num_groups", "is " + std::to_string(*attn_norm_num_groups) +
                                         ", not a divisor of the mid block's " +
                                         std::to_string(channels) + " channels");
      }
    }
  }
}

// ---- parsing --------------------------------------------------------------------------------

UNet2DConfig parse_unet2d_config(const std::string& json_text, const std::string& source) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(source + ": invalid JSON: " + e.what());
  }
  if (!root.is_object()) throw Error(source + ": expected a JSON object, got " + root.type_name());
  const ConfigReader reader(root, source);
  UNet2DConfig c;

  if (const json* cls = reader.find_non_null("_class_name")) {
    if (!cls->is_string() || cls->get<std::string>() != "UNet2DModel") {
      reader.fail(
          "_class_name",
          "is " + quoted(*cls) + ", not UNet2DModel (only pixel-space UNet2DModel is supported)");
    }
  }

  // sample_size: int, [height, width], or None.
  if (const json* size = reader.find_non_null("sample_size")) {
    if (size->is_array()) {
      if (size->size() != 2) reader.fail("sample_size", "must be an integer or [height, width]");
      c.sample_height = reader.integer_value("sample_size", (*size)[0]);
      c.sample_width = reader.integer_value("sample_size", (*size)[1]);
    } else {
      c.sample_height = c.sample_width = reader.integer_value("sample_size", *size);
    }
    if (c.sample_height < 1 || c.sample_width < 1) reader.fail("sample_size", "must be positive");
  }

  c.in_channels = reader.integer("in_channels", c.in_channels);
  c.out_channels = reader.integer("out_channels", c.out_channels);
  c.center_input_sample = reader.boolean("center_input_sample", c.center_input_sample);

  const std::string time_type = reader.string_or("time_embedding_type", "positional");
  if (time_type != "positional") {
    reader.fail("time_embedding_type",
                "is \"" + time_type + "\", which is not supported (only \"positional\")");
  }
  c.freq_shift = reader.number("freq_shift", c.freq_shift);
  c.flip_sin_to_cos = reader.boolean("flip_sin_to_cos", c.flip_sin_to_cos);

  c.down_blocks = parse_block_types(reader, "down_block_types", "DownBlock2D", "AttnDownBlock2D",
                                    c.down_blocks);
  c.up_blocks =
      parse_block_types(reader, "up_block_types", "UpBlock2D", "AttnUpBlock2D", c.up_blocks);

  if (const json* mid = reader.find("mid_block_type")) {
    if (mid->is_null()) {
      c.mid_block = false;
    } else if (!mid->is_string() || mid->get<std::string>() != "UNetMidBlock2D") {
      reader.fail(
          "mid_block_type",
          "is " + quoted(*mid) + ", which is not supported (expected \"UNetMidBlock2D\" or null)");
    }
  }

  if (reader.find("block_out_channels")) {
    c.block_out_channels.clear();
    const std::vector<json> items = reader.list("block_out_channels");
    for (std::size_t i = 0; i < items.size(); ++i) {
      c.block_out_channels.push_back(
          reader.integer_value("block_out_channels[" + std::to_string(i) + "]", items[i]));
    }
  }

  c.layers_per_block = reader.integer("layers_per_block", c.layers_per_block);
  c.mid_block_scale_factor = reader.number("mid_block_scale_factor", c.mid_block_scale_factor);
  c.downsample_padding = reader.integer("downsample_padding", c.downsample_padding);
  c.downsample_type = parse_resample(reader, "downsample_type");
  c.upsample_type = parse_resample(reader, "upsample_type");

  if (const json* dropout = reader.find_non_null("dropout")) {  // inference ignores it
    if (!dropout->is_number()) reader.fail("dropout", "must be a number, got " + quoted(*dropout));
  }

  const std::string act = reader.string_or("act_fn", "silu");
  if (act == "silu" || act == "swish") {
    c.act_fn = UNet2DActivation::SiLU;
  } else if (act == "mish") {
    c.act_fn = UNet2DActivation::Mish;
  } else if (act == "gelu") {
    c.act_fn = UNet2DActivation::GELU;
  } else if (act == "relu") {
    c.act_fn = UNet2DActivation::ReLU;
  } else {
    reader.fail("act_fn", "is \"" + act +
                              "\", which is not supported (expected silu, swish, "
                              "mish, gelu or relu)");
  }

  c.attention_head_dim = optional_integer(reader, "attention_head_dim", c.attention_head_dim);
  if (const json* groups = reader.find("norm_num_groups"); groups && groups->is_null()) {
    // UNet2DModel would pass None on to GroupNorm in the down blocks and fail there.
    reader.fail("norm_num_groups", "is null, which UNet2DModel cannot build");
  }
  c.norm_num_groups = reader.integer("norm_num_groups", c.norm_num_groups);
  c.attn_norm_num_groups = optional_integer(reader, "attn_norm_num_groups", std::nullopt);
  c.norm_eps = reader.number("norm_eps", c.norm_eps);

  const std::string time_norm = reader.string_or("resnet_time_scale_shift", "default");
  if (time_norm == "default") {
    c.resnet_time_scale_shift = UNet2DTimeNorm::Default;
  } else if (time_norm == "scale_shift") {
    c.resnet_time_scale_shift = UNet2DTimeNorm::ScaleShift;
  } else {
    reader.fail("resnet_time_scale_shift",
                "is \"" + time_norm +
                    "\", which is not supported (expected \"default\" or \"scale_shift\")");
  }

  c.add_attention = reader.boolean("add_attention", c.add_attention);

  // Class conditioning: only the plain embedding table (class_embed_type null with
  // num_class_embeds), whose labels are integers the pipelines can choose. "timestep" and
  // "identity" take labels as vectors or timesteps, which nothing here could supply.
  if (const json* v = reader.find_non_null("class_embed_type")) {
    reader.fail(
        "class_embed_type",
        "is " + quoted(*v) + "; only class_embed_type null (with num_class_embeds) is supported");
  }
  c.num_class_embeds = optional_integer(reader, "num_class_embeds", 0).value_or(0);
  if (c.num_class_embeds < 0 || c.num_class_embeds > 1000000) {
    reader.fail("num_class_embeds", "is " + std::to_string(c.num_class_embeds) +
                                        "; expected a class count from 1 to 1000000");
  }

  c.time_embedding_dim = optional_integer(reader, "time_embedding_dim", 0).value_or(0);

  c.validate(source);
  return c;
}

// ---- description ----------------------------------------------------------------------------

std::string describe_unet2d(const UNet2DConfig& c) {
  std::ostringstream s;
  s << c.num_stages() << " stages (";
  for (std::int64_t i = 0; i < c.num_stages(); ++i) {
    s << (i ? ", " : "") << c.block_out_channels[i];
    if (c.down_blocks[i] == UNet2DBlock::Attention) s << " attn";
  }
  s << "), " << c.layers_per_block << " resnets per block";
  if (!c.mid_block) {
    s << ", no mid block";
  } else {
    s << (c.add_attention ? ", mid attention" : ", mid without attention");
  }
  if (c.attention_head_dim) {
    s << ", head dim " << *c.attention_head_dim;
  } else {
    s << ", one attention head";
  }
  s << ", " << c.norm_num_groups << " groups";
  if (c.resnet_time_scale_shift == UNet2DTimeNorm::ScaleShift) s << ", scale-shift time norm";
  if (c.downsample_type == UNet2DResample::Resnet || c.upsample_type == UNet2DResample::Resnet) {
    s << ", resnet resampling in attention blocks";
  }
  return s.str();
}

}  // namespace gd::models
