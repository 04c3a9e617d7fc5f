// plan_tiles: how a request's canvas goes through the network within its memory budget, decided
// before anything large is allocated.
#include <ATen/ATen.h>

#include <algorithm>

#include "core/class_fit.h"
#include "core/memory_estimate.h"
#include "core/pipeline.h"
#include "engine/model_impl.h"

namespace gd::engine_internal {

namespace {

constexpr std::int64_t kMinWindow = 64;       // the smallest automatic window side
constexpr std::int64_t kDefaultOverlap = 64;  // at most a quarter of the window
// Windows are batched up to this many pixels per call: larger calls are no faster on the CPU.
constexpr std::int64_t kMaxPixelsPerCall = 512 * 512;
constexpr double kFloatBytes = 4.0;

// The sampler's own tensors, per image pixel of the canvas (and a fixed part): at their peak,
// and while the network runs (its activations come on top of those only).
struct Linear {
  double fixed = 0.0, per_pixel = 0.0;
  double at(double pixels) const { return fixed + per_pixel * pixels; }
};
struct CanvasMemory {
  Linear peak, during_calls;
};

int output_channels(const Model& model) {
  return model.impl().pipeline.channels * (model.info().learned_variance ? 2 : 1);
}

// What the request's pipeline holds on a side x side canvas of one image, with a stand-in
// network on the CPU (zeros) in place of the model's: at its peak, and at most while the network
// runs (the stand-in reads the meter as it is called).
struct Held {
  double peak = 0.0, during_calls = 0.0;
};

Held pipeline_held(const Model& model, const Request& r, const core::RunOptions& run,
                   std::int64_t side) {
  core::PipelineModel probe = model.impl().pipeline;
  const int channels = output_channels(model);
  const at::Tensor image = at::rand({1, probe.channels, side, side});  // the input, not counted
  core::MemoryMeter meter;
  Held held;
  probe.network = [channels, &meter, &held](const at::Tensor& x, const at::Tensor&,
                                            const core::Conditioning&) {
    held.during_calls = std::max(held.during_calls, static_cast<double>(meter.current()));
    return at::zeros({x.size(0), channels, x.size(2), x.size(3)}, x.options());
  };
  probe.device = c10::Device(c10::kCPU);
  probe.dtype = at::kFloat;
  if (r.action == Action::Generate) {
    core::GenerateOptions g;
    static_cast<core::RunOptions&>(g) = run;
    g.width = g.height = static_cast<int>(side);
    core::generate(probe, g);
  } else if (r.action == Action::Img2img) {
    core::img2img(probe, image, 1.0, run);
  } else {
    core::denoise(probe, image, 0.1, run);
  }
  held.peak = static_cast<double>(meter.peak());
  return held;
}

Linear through(double p1, double m1, double p2, double m2) {
  Linear l;
  l.per_pixel = std::max(0.0, (m2 - m1) / (p2 - p1));
  l.fixed = std::max(0.0, m1 - l.per_pixel * p1);
  return l;
}

CanvasMemory measure_canvas(const Model& model, const Request& r, core::RunOptions run) {
  const core::PipelineModel& m = model.impl().pipeline;
  run.on_step = nullptr;
  run.on_class_fit = nullptr;
  run.on_classes = nullptr;
  run.on_window = nullptr;
  run.tile_height = run.tile_width = 0;
  // A few steps hold what many do (multistep samplers keep one earlier output).
  run.steps = 4;
  if (m.num_classes > 0 && run.class_label < 0) run.class_label = 0;  // no class search
  const std::int64_t side = core::canvas_side(m, kMinWindow);
  const double p1 = static_cast<double>(side * side), p2 = 4.0 * p1;
  const Held small = pipeline_held(model, r, run, side);
  const Held large = pipeline_held(model, r, run, 2 * side);
  CanvasMemory c;
  c.peak = through(p1, small.peak, p2, large.peak);
  c.during_calls = through(p1, small.during_calls, p2, large.during_calls);
  return c;
}

// What the estimate depends on besides the layout.
struct Facts {
  const Model* model = nullptr;
  const Request* request = nullptr;
  RunSize size;
  CanvasMemory canvas;
  bool guided = false;
  bool best_fit = false;
  std::int64_t max_batched_guidance_pixels = 0;
};

// The estimated peak bytes a run adds, with the margins: the sampler's own peak, or what it
// holds during a network call plus the call, whichever is larger.
double estimate(const Facts& f, const core::TileLayout& l, std::int64_t per_call) {
  const core::NetworkMemory& net = f.model->impl().network_memory;
  const double n = static_cast<double>(f.size.batch);
  const double pixels = static_cast<double>(l.rows.length * l.cols.length);
  const double c_in = f.model->impl().pipeline.channels, c_out = output_channels(*f.model);
  double input = 0.0;
  if (f.request->action != Action::Generate) {  // the input image and its float32 copy
    input = 2.0 * kFloatBytes * n * c_in * static_cast<double>(f.size.height * f.size.width);
  }
  double during = f.canvas.during_calls.fixed + n * f.canvas.during_calls.per_pixel * pixels;
  double call = 0.0;
  if (l.single()) {
    const bool doubled =
        f.guided && f.size.batch * l.rows.length * l.cols.length <= f.max_batched_guidance_pixels;
    call = net.bytes(f.size.batch * (doubled ? 2 : 1), l.rows.length * l.cols.length);
  } else {
    during += kFloatBytes * (n * c_out + 1.0) * pixels;  // the fused sum and the weights
    const std::int64_t images = per_call * f.size.batch;
    const std::int64_t window = l.rows.size * l.cols.size;
    call = net.bytes(images, window) +  // and the gathered windows, their outputs, weighted
           kFloatBytes * static_cast<double>(images * window) * 2.0 * (c_in + c_out);
  }
  if (f.best_fit) {  // core/class_fit.h: crops of at most kClassFitCrop, 2^18 pixels per call
    const std::int64_t h = std::min(l.rows.length, core::kClassFitCrop);
    const std::int64_t w = std::min(l.cols.length, core::kClassFitCrop);
    const std::int64_t chunk = std::max<std::int64_t>(1, (1 << 18) / (h * w));
    call = std::max(call, net.bytes(std::min<std::int64_t>(chunk, f.model->num_classes()), h * w));
  }
  const double own = f.canvas.peak.fixed + n * f.canvas.peak.per_pixel * pixels;
  return input + std::max(core::kMemoryMargin * own,
                          core::kMemoryMargin * during + core::kNetworkMemoryMargin * call);
}

std::string size_text(std::int64_t w, std::int64_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

core::MemoryBudget budget_of(const Request& r, const c10::Device& device) {
  if (r.max_memory.empty()) return core::device_budget(device);
  core::MemoryBudget b;
  b.bytes = parse_memory_size(r.max_memory);
  b.source = "given";
  return b;
}

void check_tile_fields(const Request& r) {
  if (r.tile_size < -1 || r.tile_size > 65536) {
    throw RequestError(
        "tile_size", "tile size must be a window side in pixels, 0 (automatic) or -1 (never tile)");
  }
  if (r.tile_overlap && (*r.tile_overlap < 0 || *r.tile_overlap > 4096)) {
    throw RequestError("tile_overlap", "tile overlap must be from 0 to 4096 pixels");
  }
  if (r.tile_overlap && r.tile_size > 0 && 2 * *r.tile_overlap > r.tile_size) {
    throw RequestError("tile_overlap", "tile overlap " + std::to_string(*r.tile_overlap) +
                                           " is more than half the window (" +
                                           std::to_string(r.tile_size) + ")");
  }
}

}  // namespace

TilePlan plan_tiles(const Model& model, const Request& r, const RunSize& size,
                    const core::RunOptions& run, bool guided, bool best_fit) {
  check_tile_fields(r);
  const core::PipelineModel& m = model.impl().pipeline;
  const models::ModelInfo& info = model.info();
  const std::int64_t factor = std::max(1, m.downsampling_factor);
  const std::int64_t height = core::canvas_side(m, size.height);
  const std::int64_t width = core::canvas_side(m, size.width);

  Facts facts;
  facts.model = &model;
  facts.request = &r;
  facts.size = size;
  facts.guided = guided;
  facts.best_fit = best_fit;
  facts.max_batched_guidance_pixels = run.max_batched_guidance_pixels;
  facts.canvas = measure_canvas(model, r, run);

  TilePlan plan;
  plan.budget = budget_of(r, model.impl().pipeline.device);
  auto with_windows = [&](std::int64_t sy, std::int64_t sx) {
    TilePlan p = plan;
    const std::int64_t smaller = std::min(sy, sx);
    p.tile_height = sy;
    p.tile_width = sx;
    p.overlap = r.tile_overlap ? *r.tile_overlap : std::min(kDefaultOverlap, smaller / 4);
    p.layout = core::tile_layout(height, width, sy, sx, p.overlap, factor, r.seamless);
    p.estimate = estimate(facts, p.layout, 1);
    return p;
  };
  auto fits = [&](const TilePlan& p) {
    return p.estimate <= static_cast<double>(plan.budget.bytes);
  };

  const bool native = info.attention && info.native_height > 0 && info.native_width > 0;
  if (r.tile_size == -1) {
    plan = with_windows(height, width);
  } else if (r.tile_size > 0) {
    plan = with_windows(r.tile_size, r.tile_size);
  } else if (native) {
    plan = with_windows(info.native_height, info.native_width);
  } else {
    plan = with_windows(height, width);
    if (!fits(plan)) {  // the largest square window that fits, by bisection in factor units
      const std::int64_t lo_side =
          std::min(std::max(height, width), core::canvas_side(m, kMinWindow));
      std::int64_t lo = lo_side / factor, hi = std::max(height, width) / factor;
      plan = with_windows(lo * factor, lo * factor);
      while (fits(plan) && lo < hi) {
        const std::int64_t mid = (lo + hi + 1) / 2;
        TilePlan p = with_windows(mid * factor, mid * factor);
        if (fits(p)) {
          lo = mid;
          plan = p;
        } else {
          hi = mid - 1;
        }
      }
    }
  }
  if (!fits(plan)) {
    const std::string windows =
        plan.layout.single()
            ? "in one pass"
            : "even with " + size_text(plan.layout.cols.size, plan.layout.rows.size) + " windows";
    throw RequestError(
        "max_memory",
        std::to_string(size.batch) + " image" + (size.batch > 1 ? "s" : "") + " of " +
            size_text(size.width, size.height) + (size.batch > 1 ? " need" : " needs") +
            " an estimated " + format_bytes(plan.estimate) + " " + windows + ", over the " +
            format_bytes(static_cast<double>(plan.budget.bytes)) + " budget (" +
            plan.budget.source + "): allow more memory, use smaller windows or a smaller size",
        /*about_model=*/true);
  }
  // Batch windows while the budget allows and calls stay small.
  const std::int64_t window = plan.layout.rows.size * plan.layout.cols.size;
  while (plan.per_call < plan.layout.count() &&
         (plan.per_call + 1) * size.batch * window <= kMaxPixelsPerCall) {
    const double more = estimate(facts, plan.layout, plan.per_call + 1);
    if (more > static_cast<double>(plan.budget.bytes)) break;
    ++plan.per_call;
    plan.estimate = more;
  }
  return plan;
}

std::string TilePlan::describe() const {
  std::string text;
  if (layout.single()) {
    text = "the whole canvas in one pass";
  } else {
    text = std::to_string(layout.count()) + " windows of " +
           size_text(layout.cols.size, layout.rows.size) + " (overlap " +
           std::to_string(layout.overlap) +
           (layout.rows.wraps || layout.cols.wraps ? ", wrapping" : "") + ") per network pass, " +
           std::to_string(per_call) + " per call";
  }
  return text + "; estimated peak " + format_bytes(estimate) + " of a " +
         format_bytes(static_cast<double>(budget.bytes)) + " budget (" + budget.source + ")";
}

}  // namespace gd::engine_internal

namespace gd {

std::int64_t parse_memory_size(const std::string& text) {
  try {
    return core::parse_memory_size(text);
  } catch (const RequestError&) {
    throw;
  } catch (const Error& e) {
    throw RequestError("max_memory", e.what());
  }
}

std::string format_bytes(double bytes) { return core::format_bytes(bytes); }

}  // namespace gd
