// Tiled sampling (core/tiling.h): the window layout, one window being the untiled run bit for
// bit, the fused output equal to an independent implementation of the fusion formula, per-axis
// circular padding, seamless tiled textures, and cancel between windows.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/pipeline.h"
#include "core/tiling.h"
#include "models/model_loader.h"
#include "models/pipeline_model.h"
#include "tests/test_util.h"

using gd::core::AxisWindows;
using gd::core::Padding;
using gd::core::TileLayout;
using gd::test::data_path;
using gd::test::max_abs_diff;

namespace {

struct Fixture {
  gd::models::LoadedModel loaded;
  gd::core::PipelineModel model;
};

Fixture open(const std::string& path) {
  Fixture f;
  gd::models::LoadOptions options;
  f.loaded = gd::models::load_model(path, options);
  f.model = gd::models::pipeline_model(f.loaded, options);
  return f;
}

const char* kTinyModels[] = {"diffusers-tiny/model", "lucidrains-tiny/model-1.pt"};

// Every pixel of the axis is covered, neighbours overlap by at least `overlap`, starts are
// multiples of the factor.
void expect_covering(const AxisWindows& a, std::int64_t overlap, std::int64_t factor) {
  ASSERT_GE(a.count(), 1);
  std::vector<int> covered(static_cast<std::size_t>(a.length), 0);
  for (std::int64_t i = 0; i < a.count(); ++i) {
    const std::int64_t s = a.starts[static_cast<std::size_t>(i)];
    EXPECT_EQ(s % factor, 0);
    EXPECT_TRUE(a.wraps || s + a.size <= a.length);
    for (std::int64_t u = 0; u < a.size; ++u)
      ++covered[static_cast<std::size_t>((s + u) % a.length)];
    if (a.count() > 1 && (a.wraps || i + 1 < a.count())) {
      const std::int64_t next =
          i + 1 < a.count() ? a.starts[static_cast<std::size_t>(i + 1)] : a.starts[0] + a.length;
      EXPECT_GE(s + a.size - next, overlap) << "window " << i;
    }
  }
  for (int c : covered) EXPECT_GE(c, 1);
}

// The fusion formula written out independently: every window gathered with wrapped index
// tensors, weighted with ramps computed here, accumulated with index_put_ and divided by the
// weight sum. The padding of a window: circular along an axis only when one window spans it.
gd::core::NetworkFn reference_fusion(gd::core::NetworkFn network, const TileLayout& l) {
  return
      [network, l](const at::Tensor& x, const at::Tensor& t, const gd::core::Conditioning& cond) {
        const std::int64_t n = x.size(0), h = x.size(2), w = x.size(3), o = l.overlap;
        auto ramp = [o](const AxisWindows& a, std::int64_t i) {  // [size]
          std::vector<float> r;
          for (std::int64_t u = 0; u < a.size; ++u) {
            float v = 1.0f;
            if (a.count() > 1 && o > 0) {
              if (a.wraps || i > 0) v = std::min(v, (u + 0.5f) / static_cast<float>(o));
              if (a.wraps || i + 1 < a.count())
                v = std::min(v, (static_cast<float>(a.size) - u - 0.5f) / static_cast<float>(o));
            }
            r.push_back(v);
          }
          return at::tensor(r);
        };
        auto index = [](const AxisWindows& a, std::int64_t i) {
          return (at::arange(a.size, at::kLong) + a.starts[static_cast<std::size_t>(i)]) % a.length;
        };
        gd::core::Conditioning c = cond;
        const bool wrap_w = gd::core::wraps_width(cond.padding) && l.cols.count() == 1;
        const bool wrap_h = gd::core::wraps_height(cond.padding) && l.rows.count() == 1;
        c.padding = gd::core::padding_wrapping(wrap_w, wrap_h);
        at::Tensor sum, weights = at::zeros({h, w});
        for (std::int64_t i = 0; i < l.rows.count(); ++i) {
          for (std::int64_t j = 0; j < l.cols.count(); ++j) {
            const at::Tensor rows = index(l.rows, i), cols = index(l.cols, j);
            if (cond.self_cond) {
              c.self_cond = cond.self_cond->index_select(2, rows).index_select(3, cols);
            }
            const at::Tensor out =
                network(x.index_select(2, rows).index_select(3, cols), t, c).to(at::kFloat);
            if (!sum.defined()) sum = at::zeros({n, out.size(1), h, w});
            const at::Tensor weight = at::outer(ramp(l.rows, i), ramp(l.cols, j));  // [sy, sx]
            const at::Tensor r = rows.view({-1, 1}).expand({l.rows.size, l.cols.size});
            const at::Tensor k = cols.view({1, -1}).expand({l.rows.size, l.cols.size});
            weights.index_put_({r, k}, weight, /*accumulate=*/true);
            const at::Tensor part = (out * weight).permute({2, 3, 0, 1});  // [sy, sx, N, C]
            at::Tensor view = sum.permute({2, 3, 0, 1});                   // [H, W, N, C]
            view.index_put_({r, k}, part, /*accumulate=*/true);
          }
        }
        return sum / weights;
      };
}

}  // namespace

TEST(TileLayout, WindowsCoverTheCanvasWithTheirOverlap) {
  for (bool wrap : {false, true}) {
    for (std::int64_t length : {16, 40, 64, 200, 1000, 4096}) {
      for (std::int64_t size : {8, 16, 64, 256}) {
        for (std::int64_t overlap : {0, 4, 8}) {
          if (2 * overlap > size || size - overlap < 8) continue;
          SCOPED_TRACE(std::to_string(length) + " " + std::to_string(size) + " " +
                       std::to_string(overlap) + (wrap ? " wrap" : ""));
          const AxisWindows a = gd::core::axis_windows(length, size, overlap, 8, wrap);
          expect_covering(a, overlap, 8);
          if (size >= length) {
            EXPECT_EQ(a.count(), 1);
            EXPECT_EQ(a.size, length);
            EXPECT_FALSE(a.wraps);
          }
        }
      }
    }
  }
  EXPECT_THROW(gd::core::axis_windows(40, 12, 0, 8, false), gd::Error);  // not a multiple
  EXPECT_THROW(gd::core::axis_windows(40, 16, 9, 8, false), gd::Error);  // overlap > size / 2
}

TEST(TileLayout, FittedWindowsAreNoLargerThanAskedAndEveryPixelIsWeighted) {
  for (bool seamless : {false, true}) {
    const TileLayout l = gd::core::tile_layout(4096, 1000 / 8 * 8, 1024, 1024, 64, 8, seamless);
    EXPECT_LE(l.rows.size, 1024);
    EXPECT_LE(l.cols.size, 1024);
    expect_covering(l.rows, 64, 8);
    expect_covering(l.cols, 64, 8);
    const at::Tensor sum = gd::core::weight_sum(l);
    EXPECT_GT(sum.min().item<double>(), 0.0);
  }
  // The whole canvas: one window, whatever the overlap.
  EXPECT_TRUE(gd::core::tile_layout(96, 64, 0, 0, 64, 8, true).single());
  EXPECT_TRUE(gd::core::tile_layout(96, 64, 128, 128, 32, 8, false).single());
  // A window spanning one axis only.
  const TileLayout strip = gd::core::tile_layout(64, 256, 64, 64, 16, 8, true);
  EXPECT_EQ(strip.rows.count(), 1);
  EXPECT_GT(strip.cols.count(), 1);
  EXPECT_EQ(gd::core::window_padding(strip, Padding::Circular), Padding::CircularHeight);
  EXPECT_EQ(gd::core::window_padding(strip, Padding::Zeros), Padding::Zeros);
}

// One window over the whole canvas is today's run, bit for bit, for each action.
TEST(TiledPipeline, OneWindowIsTheUntiledRunExactly) {
  for (const char* name : kTinyModels) {
    SCOPED_TRACE(name);
    Fixture f = open(data_path(name));
    gd::core::GenerateOptions g;
    g.sampler = "ddim";
    g.steps = 5;
    g.seed = 11;
    g.width = 24;
    g.height = 16;
    const at::Tensor plain = gd::core::generate(f.model, g);
    gd::core::GenerateOptions one = g;
    one.tile_height = one.tile_width = 64;  // larger than the canvas
    one.tile_overlap = 8;
    EXPECT_TRUE(at::equal(gd::core::generate(f.model, one), plain));

    const at::Tensor image = at::rand({1, 3, 16, 24}, at::make_generator<at::CPUGeneratorImpl>(3));
    EXPECT_TRUE(at::equal(gd::core::img2img(f.model, image, 0.6, one),
                          gd::core::img2img(f.model, image, 0.6, g)));
    EXPECT_TRUE(at::equal(gd::core::denoise(f.model, image, 0.1, one).image,
                          gd::core::denoise(f.model, image, 0.1, g).image));
  }
}

// Several windows: the tiled pipeline equals the same pipeline whose network is the reference
// fusion above, for plain and seamless runs and for the three actions.
TEST(TiledPipeline, FusionEqualsTheFormula) {
  for (const char* name : kTinyModels) {
    SCOPED_TRACE(name);
    Fixture f = open(data_path(name));
    const std::int64_t factor = f.model.downsampling_factor;
    for (bool seamless : {false, true}) {
      SCOPED_TRACE(seamless ? "seamless" : "plain");
      gd::core::GenerateOptions tiled;
      tiled.sampler = "dpmpp_2m";
      tiled.steps = 4;
      tiled.seed = 5;
      tiled.width = 40;
      tiled.height = 24;
      tiled.seamless = seamless;
      tiled.tile_height = tiled.tile_width = 16;
      tiled.tile_overlap = 4;
      tiled.windows_per_call = 2;
      const TileLayout layout = gd::core::tile_layout(24, 40, 16, 16, 4, factor, seamless);
      ASSERT_GT(layout.count(), 2);
      gd::core::PipelineModel reference = f.model;
      reference.network = reference_fusion(f.model.network, layout);
      gd::core::GenerateOptions plain = tiled;
      plain.tile_height = plain.tile_width = 0;
      const at::Tensor got = gd::core::generate(f.model, tiled);
      EXPECT_LE(max_abs_diff(got, gd::core::generate(reference, plain)), 1e-5);
      // Tiling changes the result (the windows see less than the canvas).
      EXPECT_GT(max_abs_diff(got, gd::core::generate(f.model, plain)), 1e-4);

      const at::Tensor image =
          at::rand({1, 3, 24, 40}, at::make_generator<at::CPUGeneratorImpl>(9));
      EXPECT_LE(max_abs_diff(gd::core::img2img(f.model, image, 0.7, tiled),
                             gd::core::img2img(reference, image, 0.7, plain)),
                1e-5);
      if (!seamless) {  // denoise has no seamless mode
        EXPECT_LE(max_abs_diff(gd::core::denoise(f.model, image, 0.2, tiled).image,
                               gd::core::denoise(reference, image, 0.2, plain).image),
                  1e-5);
      }
    }
  }
}

// A window that spans one axis of a seamless canvas wraps along that axis only: shifting the
// input circularly along it shifts the output, along the other it does not.
TEST(TiledPipeline, OneAxisCircularPaddingWrapsThatAxisOnly) {
  for (const char* name : kTinyModels) {
    SCOPED_TRACE(name);
    Fixture f = open(data_path(name));
    const at::Tensor x = at::randn({1, 3, 16, 16}, at::make_generator<at::CPUGeneratorImpl>(2));
    const at::Tensor t = at::full({1}, 50, at::kLong);
    gd::core::Conditioning cond;
    auto forward = [&](const at::Tensor& v) { return f.loaded.network->forward(v, t, cond); };
    auto shift_x = [](const at::Tensor& v) { return at::roll(v, {6}, {3}); };
    auto shift_y = [](const at::Tensor& v) { return at::roll(v, {6}, {2}); };
    cond.padding = Padding::CircularWidth;
    EXPECT_LE(max_abs_diff(forward(shift_x(x)), shift_x(forward(x))), 1e-5);
    EXPECT_GT(max_abs_diff(forward(shift_y(x)), shift_y(forward(x))), 1e-3);
    cond.padding = Padding::CircularHeight;
    EXPECT_LE(max_abs_diff(forward(shift_y(x)), shift_y(forward(x))), 1e-5);
    EXPECT_GT(max_abs_diff(forward(shift_x(x)), shift_x(forward(x))), 1e-3);
  }
}

// Progress counts windows, and a cancel takes effect between windows: after the first call.
TEST(TiledPipeline, ProgressCountsWindowsAndCancelStopsBetweenThem) {
  Fixture f = open(data_path("diffusers-tiny/model"));
  gd::core::GenerateOptions g;
  g.sampler = "ddim";
  g.steps = 3;
  g.width = 40;
  g.height = 24;
  g.tile_height = g.tile_width = 16;
  g.tile_overlap = 4;
  std::vector<std::pair<int, int>> seen;
  g.on_window = [&seen](int done, int total) {
    seen.emplace_back(done, total);
    return true;
  };
  gd::core::generate(f.model, g);
  const int windows = static_cast<int>(gd::core::tile_layout(24, 40, 16, 16, 4, 2, false).count());
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(3 * windows));
  EXPECT_EQ(seen.front(), std::make_pair(1, windows));
  EXPECT_EQ(seen.back(), std::make_pair(windows, windows));

  int calls = 0;
  g.on_window = [&calls](int, int) {
    ++calls;
    return false;
  };
  EXPECT_THROW(gd::core::generate(f.model, g), gd::Cancelled);
  EXPECT_EQ(calls, 1);
}
