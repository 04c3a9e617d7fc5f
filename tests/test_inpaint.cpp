// Inpainting and Make Seamless (core/inpaint.h, the engine's inpaint and make-seamless actions):
// RePaint's schedule by hand, the work area, the conditional distribution a fill draws from on
// Gaussian-mixture data with a closed-form denoiser, and on the bundled model: known pixels
// untouched bit for bit, a seed reproduces the fill, Make Seamless tiles and keeps the input
// outside its band, every bad input a one-line error naming its field.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/inpaint.h"
#include "core/schedule.h"
#include "engine/gimp_diffusion.h"
#include "tests/gaussian_mixture.h"

namespace {

using gd::core::InpaintOptions;
using gd::core::PipelineModel;

// --- RePaint's schedule and the work area: pure functions -------------------------------------

// diffusers' RePaintScheduler with 5 steps, jump length 2, 2 samplings: jumps after reaching
// levels 5 - 0 and 5 - 2 (t = 0 and 2 in its count-down), each jumping back 2 levels once.
TEST(RepaintLevels, FollowsDiffusersJumps) {
  const std::vector<int> expected = {0, 1, 2, 3, 2, 1, 2, 3, 4, 5, 4, 3, 4, 5};
  EXPECT_EQ(gd::core::repaint_levels(5, 2, 2), expected);
  EXPECT_EQ(gd::core::repaint_network_calls(5, 2, 2), 9);
}

TEST(RepaintLevels, OneSamplingIsThePlainChain) {
  const std::vector<int> expected = {0, 1, 2, 3, 4};
  EXPECT_EQ(gd::core::repaint_levels(4, 10, 1), expected);
}

// The RePaint paper's count: steps + jumps * (resample - 1) * jump_length reverse steps, with a
// jump every jump_length levels below steps - jump_length.
TEST(RepaintLevels, NetworkCallsFollowTheJumps) {
  EXPECT_EQ(gd::core::repaint_network_calls(50, 10, 10), 50 + 4 * 9 * 10);
  EXPECT_EQ(gd::core::repaint_network_calls(25, 10, 3), 25 + 2 * 2 * 10);
  const std::vector<int> levels = gd::core::repaint_levels(25, 10, 3);
  EXPECT_EQ(levels.front(), 0);
  EXPECT_EQ(levels.back(), 25);
  for (std::size_t i = 1; i < levels.size(); ++i) EXPECT_EQ(std::abs(levels[i] - levels[i - 1]), 1);
}

TEST(WorkArea, BoundsPlusMarginOnTheDownsamplingGrid) {
  // A 10x6 hole at (40, 50) in 200x100 (h x w), margin 16, factor 8.
  const gd::core::Rect r = gd::core::inpaint_work_area({40, 50, 10, 6}, 16, 8, 200, 100);
  EXPECT_LE(r.y, 40 - 16);
  EXPECT_LE(r.x, 50 - 16);
  EXPECT_GE(r.y + r.height, 40 + 10 + 16);
  EXPECT_GE(r.x + r.width, 50 + 6 + 16);
  EXPECT_EQ(r.height % 8, 0);
  EXPECT_EQ(r.width % 8, 0);
  EXPECT_LT(r.height, 10 + 2 * 16 + 8);  // the cost follows the hole, not the canvas
  // Clipped at the image's edges, still a multiple of 8 where the image allows.
  const gd::core::Rect edge = gd::core::inpaint_work_area({0, 95, 4, 5}, 16, 8, 200, 100);
  EXPECT_EQ(edge.y, 0);
  EXPECT_EQ(edge.x + edge.width, 100);
  EXPECT_EQ(edge.width % 8, 0);
  // An image smaller than the grid: the whole image.
  const gd::core::Rect small = gd::core::inpaint_work_area({1, 1, 1, 1}, 16, 8, 5, 6);
  EXPECT_EQ(small.height, 5);
  EXPECT_EQ(small.width, 6);
}

TEST(SeamlessBand, CrossCentredOnTheOffsetSeams) {
  const at::Tensor m = gd::core::seamless_band_mask(64, 48, 8);  // [1, 1, 64, 48]
  // Rows 28..35 and columns 20..27: the seams lie between rows 31|32 and columns 23|24.
  EXPECT_EQ(m[0][0][28][0].item<float>(), 1.0f);
  EXPECT_EQ(m[0][0][35][0].item<float>(), 1.0f);
  EXPECT_EQ(m[0][0][27][0].item<float>(), 0.0f);
  EXPECT_EQ(m[0][0][36][0].item<float>(), 0.0f);
  EXPECT_EQ(m[0][0][0][20].item<float>(), 1.0f);
  EXPECT_EQ(m[0][0][0][27].item<float>(), 1.0f);
  EXPECT_EQ(m[0][0][0][19].item<float>(), 0.0f);
  EXPECT_EQ(m.sum().item<float>(), 8 * 48 + 8 * 64 - 64);
}

// --- The conditional distribution, with a closed-form denoiser --------------------------------

// Two isotropic Gaussians over a 2x2 one-channel "image": the top row is known, the bottom row
// is filled. Given the known row k, the bottom row is drawn from the mixture of the components'
// bottom halves with posterior weights w_j ~ w_j N(k; mu_j,top, s^2 I): per coordinate the mean
// sum_j w_j mu_j and the variance s^2 + sum_j w_j mu_j^2 - mean^2.
struct Conditional {
  gd::test::GaussianMixture mixture;
  at::Tensor known_row;     // [2] model space
  at::Tensor mean, stddev;  // [2] the closed form, for the bottom row
};

Conditional conditional(double known_value) {
  Conditional c;
  c.mixture.weights = {0.5, 0.5};
  c.mixture.spread = 0.15;
  c.mixture.means = at::tensor({0.4, 0.4, 0.4, -0.4, -0.4, -0.4, -0.4, 0.4}, at::kDouble)
                        .reshape({2, 1, 2, 2})
                        .to(at::kFloat);
  c.known_row = at::full({2}, known_value, at::kDouble);
  const at::Tensor mu = c.mixture.means.to(at::kDouble).reshape({2, 4});  // [K, 4]
  const double s2 = c.mixture.spread * c.mixture.spread;
  const at::Tensor logw =
      at::tensor(c.mixture.weights, at::kDouble).log() -
      (mu.narrow(1, 0, 2) - c.known_row.unsqueeze(0)).pow(2).sum(1) / (2 * s2);  // [K]
  const at::Tensor w = at::softmax(logw, 0).unsqueeze(1);                        // [K, 1]
  const at::Tensor bottom = mu.narrow(1, 2, 2);                                  // [K, 2]
  c.mean = (w * bottom).sum(0);
  c.stddev = (s2 + (w * bottom.pow(2)).sum(0) - c.mean.pow(2)).sqrt();
  return c;
}

PipelineModel mixture_model(const gd::test::GaussianMixture& mixture,
                            const gd::core::ScheduleConfig& schedule) {
  PipelineModel m;
  m.schedule = schedule;
  m.channels = 1;
  m.native_width = m.native_height = 2;
  const gd::core::ModelFn fn = mixture.as_model(
      gd::core::cumulative_alphas(gd::core::make_betas(schedule)), schedule.prediction_type);
  m.network = [fn](const at::Tensor& x, const at::Tensor& t, const gd::core::Conditioning&) {
    return fn(x, t, std::nullopt);
  };
  return m;
}

// Fills the bottom row of n copies of the known row; returns the filled rows [n, 2] in model
// space, and checks the known row came back exactly.
at::Tensor fill_bottom_rows(const Conditional& c, const InpaintOptions& options, int n) {
  gd::core::ScheduleConfig schedule;
  schedule.clip_sample = false;
  const PipelineModel model = mixture_model(c.mixture, schedule);
  at::Tensor image = at::zeros({n, 1, 2, 2});
  image.narrow(2, 0, 1).copy_(((c.known_row.to(at::kFloat) + 1) / 2).reshape({1, 1, 1, 2}));
  image.narrow(2, 1, 1).fill_(0.5);
  at::Tensor mask = at::zeros({1, 1, 2, 2});
  mask.narrow(2, 1, 1).fill_(1.0);
  const at::Tensor out = gd::core::inpaint(model, image, mask, options);
  EXPECT_TRUE(at::equal(out.narrow(2, 0, 1), image.narrow(2, 0, 1)));
  return (out.narrow(2, 1, 1).reshape({n, 2}) * 2 - 1).to(at::kDouble);
}

struct Moments {
  double mean = 0.0, stddev = 0.0;  // of the first filled coordinate (the second mirrors it)
};

Moments fill_moments(const Conditional& c, const std::string& sampler, int resample) {
  at::NoGradGuard no_grad;
  InpaintOptions options;
  options.sampler = sampler;
  options.steps = 100;
  options.resample = resample;
  options.seed = 7;
  const at::Tensor filled = fill_bottom_rows(c, options, 4000);  // [n, 2]
  // The mixture is symmetric: the second coordinate is the first's mirror image.
  EXPECT_NEAR(filled.select(1, 1).mean().item<double>(), -filled.select(1, 0).mean().item<double>(),
              0.03);
  return {filled.select(1, 0).mean().item<double>(), filled.select(1, 0).std().item<double>()};
}

// A known row that picks one component (posterior weight 1 - 1e-9): with RePaint's resampling
// (100 steps, jumps of 10, 10 samplings) the fill has that component's mean and spread. Without
// resampling the fill ignores the known row too often: measured, 12% of the fills come from the
// other component (mean 0.31 for 0.40).
TEST(InpaintMixture, KnownPartPicksTheComponent) {
  const Conditional c = conditional(0.3);
  const double m = c.mean[0].item<double>(), s = c.stddev[0].item<double>();
  const Moments repaint = fill_moments(c, "ddpm", 10);
  EXPECT_NEAR(repaint.mean, m, 0.03);
  EXPECT_NEAR(repaint.stddev, s, 0.2 * s);
  const Moments plain = fill_moments(c, "ddpm", 1);
  EXPECT_GT(std::abs(plain.mean - m), 2 * std::abs(repaint.mean - m))
      << "resampling must bring the fill closer to the conditional";
}

TEST(InpaintMixture, DdimWithJumpsDrawsTheConditionalToo) {
  const Conditional c = conditional(0.3);
  const double m = c.mean[0].item<double>(), s = c.stddev[0].item<double>();
  const Moments repaint = fill_moments(c, "ddim", 10);
  EXPECT_NEAR(repaint.mean, m, 0.05);
  EXPECT_NEAR(repaint.stddev, s, 0.3 * s);
}

// A known row between the components: the conditional is bimodal with weights 0.81 : 0.19 (mean
// 0.245). RePaint leans the right way but under-weights the known part, a limit of the method
// (the known part is re-noised independently of the sample at each step): measured, mean 0.077
// with 10 samplings, 0.031 without (docs/inpainting.md).
TEST(InpaintMixture, AmbiguousKnownPartLeansTheRightWay) {
  const Conditional c = conditional(0.02);
  const double m = c.mean[0].item<double>();
  const Moments repaint = fill_moments(c, "ddpm", 10);
  const Moments plain = fill_moments(c, "ddpm", 1);
  EXPECT_GT(repaint.mean, 0.03);
  EXPECT_LT(repaint.mean, m);
  EXPECT_GT(repaint.mean, plain.mean + 0.02);
}

// --- The bundled model through the engine -----------------------------------------------------

gd::Request bundled_request(gd::Action action) {
  gd::Request r;
  r.action = action;
  r.model_path = GD_BUNDLED_MODEL_DIR;
  r.device = "cpu";
  r.steps = 10;
  r.resample = 1;
  r.class_name = "3";
  return r;
}

const gd::Model& bundled() {
  static const gd::Model model = gd::load_model(bundled_request(gd::Action::Inpaint));
  return model;
}

// A texture that does not tile: horizontal stripes whose brightness ramps from left to right.
at::Tensor ramp_texture(std::int64_t h, std::int64_t w) {
  at::Tensor x = at::linspace(0.15, 0.85, w).reshape({1, 1, 1, w}).expand({1, 3, h, w});
  at::Tensor rows = at::arange(h, at::kFloat).reshape({1, 1, h, 1});
  return (x + 0.1 * at::sin(rows * 0.8)).clamp(0, 1).contiguous();
}

at::Tensor centre_hole(std::int64_t h, std::int64_t w, std::int64_t side) {
  at::Tensor mask = at::zeros({1, 1, h, w});
  mask.narrow(2, (h - side) / 2, side).narrow(3, (w - side) / 2, side).fill_(1.0);
  return mask;
}

TEST(InpaintBundled, KnownPixelsIdenticalAndSeedReproduces) {
  at::NoGradGuard no_grad;
  const at::Tensor image = ramp_texture(48, 40);
  at::Tensor mask = centre_hole(48, 40, 12);
  mask[0][0][2][3] = 0.5;  // a feathered pixel away from the hole: blended
  gd::Request r = bundled_request(gd::Action::Inpaint);
  r.context_margin = 8;
  r.seed = 11;
  const at::Tensor a = gd::run(bundled(), r, image, mask).image;
  const at::Tensor b = gd::run(bundled(), r, image, mask).image;
  r.seed = 12;
  const at::Tensor other = gd::run(bundled(), r, image, mask).image;
  ASSERT_EQ(a.sizes(), image.sizes());
  const at::Tensor keep = (mask == 0).expand_as(image);
  EXPECT_TRUE(at::equal(a.masked_select(keep), image.masked_select(keep)));
  EXPECT_TRUE(at::equal(a, b)) << "the same seed gives the same fill";
  EXPECT_FALSE(at::equal(a, other)) << "another seed, another fill";
  const at::Tensor hole = (mask == 1).expand_as(image);
  EXPECT_GT((a.masked_select(hole) - image.masked_select(hole)).abs().max().item<float>(), 0.01f);
}

// Mean absolute difference across the wrap (last column to first, last row to first) and
// between neighbouring columns and rows inside the image.
struct Gradients {
  double wrap = 0.0, interior = 0.0;
};

Gradients gradients(const at::Tensor& x) {
  const std::int64_t h = x.size(2), w = x.size(3);
  const at::Tensor dx = (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1)).abs();
  const at::Tensor dy = (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1)).abs();
  const at::Tensor wx = (x.narrow(3, 0, 1) - x.narrow(3, w - 1, 1)).abs();
  const at::Tensor wy = (x.narrow(2, 0, 1) - x.narrow(2, h - 1, 1)).abs();
  Gradients g;
  g.wrap = (wx.mean().item<double>() + wy.mean().item<double>()) / 2;
  g.interior = (dx.mean().item<double>() + dy.mean().item<double>()) / 2;
  return g;
}

TEST(MakeSeamlessBundled, TilesAndKeepsTheInputOutsideTheBand) {
  at::NoGradGuard no_grad;
  const at::Tensor image = ramp_texture(64, 64);
  const Gradients before = gradients(image);
  ASSERT_GT(before.wrap, 5 * before.interior) << "the input must not tile already";
  gd::Request r = bundled_request(gd::Action::MakeSeamless);
  r.band = 16;
  r.seed = 3;
  const at::Tensor out = gd::run(bundled(), r, image).image;
  const Gradients after = gradients(out);
  EXPECT_LE(after.wrap, 1.1 * after.interior)
      << "wrap " << after.wrap << ", interior " << after.interior;
  // Outside the band (rows and columns more than 8 from the edges) the input exactly.
  const at::Tensor inside = out.narrow(2, 8, 48).narrow(3, 8, 48);
  EXPECT_TRUE(at::equal(inside, image.narrow(2, 8, 48).narrow(3, 8, 48)));
  const at::Tensor band_mask =
      gd::core::seamless_band_mask(64, 64, 16).roll({-32, -32}, {2, 3}).expand_as(image);
  const at::Tensor keep = band_mask == 0;
  EXPECT_TRUE(at::equal(out.masked_select(keep), image.masked_select(keep)));
}

// Any size: 60x44 is off the bundled model's grid of 8, so the torus is stretched for the fill.
TEST(MakeSeamlessBundled, AnySizeTilesToo) {
  at::NoGradGuard no_grad;
  const at::Tensor image = ramp_texture(44, 60);
  gd::Request r = bundled_request(gd::Action::MakeSeamless);
  r.band = 12;
  r.seed = 4;
  const at::Tensor out = gd::run(bundled(), r, image).image;
  ASSERT_EQ(out.sizes(), image.sizes());
  const Gradients after = gradients(out);
  EXPECT_LE(after.wrap, 1.1 * after.interior)
      << "wrap " << after.wrap << ", interior " << after.interior;
  const at::Tensor keep =
      gd::core::seamless_band_mask(44, 60, 12).roll({-22, -30}, {2, 3}).expand_as(image) == 0;
  EXPECT_TRUE(at::equal(out.masked_select(keep), image.masked_select(keep)));
}

// Expects run() to fail with a one-line RequestError about `field` containing `needle`, and the
// input tensors unchanged.
void expect_run_error(const gd::Request& r, const at::Tensor& image, const at::Tensor& mask,
                      const std::string& field, const std::string& needle) {
  const at::Tensor image_before = image.clone();
  try {
    gd::run(bundled(), r, image, mask);
    ADD_FAILURE() << "no error; expected one about " << field;
  } catch (const gd::RequestError& e) {
    EXPECT_EQ(e.field(), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
  EXPECT_TRUE(at::equal(image, image_before));
}

TEST(InpaintBundled, BadInputsAreOneLineErrors) {
  at::NoGradGuard no_grad;
  const at::Tensor image = ramp_texture(32, 32);
  gd::Request r = bundled_request(gd::Action::Inpaint);
  expect_run_error(r, image, at::zeros({1, 1, 32, 32}), "mask", "empty");
  expect_run_error(r, image, at::ones({1, 1, 32, 32}), "mask", "use generate");
  expect_run_error(r, image, centre_hole(32, 24, 8), "mask", "the mask is 24x32");
  expect_run_error(r, image, at::Tensor(), "mask", "needs a mask");
  r.sampler = "dpmpp_2m";
  expect_run_error(r, image, centre_hole(32, 32, 8), "sampler", "dpmpp_2m cannot inpaint");
  r.sampler = "euler_a";
  expect_run_error(r, image, centre_hole(32, 32, 8), "sampler", "euler_a cannot inpaint");
  r.sampler = "";
  r.resample = 21;
  expect_run_error(r, image, centre_hole(32, 32, 8), "resample", "resample");
  gd::Request s = bundled_request(gd::Action::MakeSeamless);
  s.band = 17;
  expect_run_error(s, image, at::Tensor(), "band", "wider than half");
}

// The plan names the sampler inpainting uses (the bundled model's own, dpmpp_2m, cannot) and
// the network calls RePaint's jumps cost.
TEST(InpaintBundled, PlanSaysTheSamplerAndTheCalls) {
  gd::Request r = bundled_request(gd::Action::Inpaint);
  r.steps = 0;
  r.resample = 0;
  const gd::Plan plan = gd::check_request(bundled(), r, {1, 3, 32, 32}, {1, 1, 32, 32});
  EXPECT_EQ(plan.sampler, "ddpm");
  EXPECT_EQ(plan.steps, gd::core::kDefaultInpaintSteps);
  const int calls = gd::core::repaint_network_calls(plan.steps, gd::core::kJumpLength,
                                                    gd::core::kDefaultResample);
  EXPECT_NE(plan.repaint.find(std::to_string(calls) + " network calls"), std::string::npos)
      << plan.repaint;
}

}  // namespace
