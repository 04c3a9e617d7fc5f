// Pixel buffers to the engine's [N, C, H, W] tensors and back; the model summary for the dialog.
#include "plugin/engine_bridge.h"

#include <ATen/ATen.h>

#include <cstdio>

#include "core/device.h"
#include "core/guidance.h"
#include "core/pipeline.h"
#include "models/model_header.h"
#include "models/model_info.h"

namespace gd::plugin {

namespace {

// Colour [1, C, H, W] and alpha [1, 1, H, W] (undefined without alpha) of an interleaved buffer.
struct Split {
  at::Tensor colour, alpha;
};

Split split(const PixelBuffer& image) {
  if (image.channels < 1 || image.channels > 4 ||
      image.pixels.size() !=
          static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw Error("internal error: malformed pixel buffer");
  }
  at::Tensor hwc = at::from_blob(const_cast<float*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kFloat);
  at::Tensor nchw = hwc.permute({2, 0, 1}).unsqueeze(0).clone();  // [1, C, H, W]
  Split s;
  const int colour_channels = image.has_alpha ? image.channels - 1 : image.channels;
  s.colour = nchw.narrow(1, 0, colour_channels).contiguous();
  if (image.has_alpha) s.alpha = nchw.narrow(1, colour_channels, 1).contiguous();
  return s;
}

PixelBuffer join(const at::Tensor& colour, const at::Tensor& alpha) {
  at::Tensor x = alpha.defined() ? at::cat({colour.to(at::kCPU, at::kFloat), alpha}, 1)
                                 : colour.to(at::kCPU, at::kFloat);
  x = x.clamp(0, 1);
  if (!at::isfinite(x).all().item<bool>()) {
    throw Error("the model produced non-finite values (it diverged); nothing was changed");
  }
  at::Tensor hwc = x[0].permute({1, 2, 0}).contiguous();  // [H, W, C]
  PixelBuffer out;
  out.height = static_cast<int>(hwc.size(0));
  out.width = static_cast<int>(hwc.size(1));
  out.channels = static_cast<int>(hwc.size(2));
  out.has_alpha = alpha.defined();
  out.pixels.assign(hwc.data_ptr<float>(), hwc.data_ptr<float>() + hwc.numel());
  return out;
}

std::string summary_text(const models::ModelInfo& info, const std::string& device) {
  std::string t = info.architecture.empty() ? std::string("model") : info.architecture;
  t += std::string(" (") + models::format_name(info.format) + ")";
  if (info.native_width > 0 && info.native_height > 0) {
    t += ", native size " + std::to_string(info.native_width) + "x" +
         std::to_string(info.native_height);
  }
  const int c = info.in_channels;
  t += ", " + std::string(c == 1 ? "gray" : c == 3 ? "RGB" : std::to_string(c) + " channels");
  if (info.downsampling_factor > 1)
    t += ", sizes padded to multiples of " + std::to_string(info.downsampling_factor);
  if (info.parameter_count > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fM", info.parameter_count / 1e6);
    t += ", " + std::string(buf) + " parameters";
  }
  if (info.num_classes > 0) t += ", " + std::to_string(info.num_classes) + " classes";
  const std::string guidance = core::describe_guidance(info.generate_guidance);
  if (!guidance.empty()) t += ", Generate default " + guidance;
  return t + ", device " + device;
}

}  // namespace

PixelBuffer run_on_pixels(const Model& model, const Request& request, const PixelBuffer* input,
                          int channels, const Callbacks& callbacks, Result* details,
                          const PixelBuffer* mask) {
  Split in;
  if (input) in = split(*input);
  const at::Tensor mask_tensor = mask ? split(*mask).colour : at::Tensor();  // [1, 1, H, W]
  Result result = run(model, request, in.colour, mask_tensor, callbacks);
  at::Tensor colour = result.image;
  if (!input) colour = core::from_model_channels(colour, channels);  // [1, channels, H, W]
  PixelBuffer out = join(colour, in.alpha);
  if (details) {
    result.image = at::Tensor();
    *details = std::move(result);
  }
  return out;
}

std::string describe_model(const std::string& model_path, const std::string& device) {
  // The device shown is where a run would go.
  // The header read: config files and weight shapes, no weights (the dialog asks again after
  // every pause in typing).
  return summary_text(models::read_model_info(model_path), core::parse_device(device).str());
}

}  // namespace gd::plugin
