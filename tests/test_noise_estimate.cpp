// The blind noise estimator (core/noise_estimate.h) against images with known added noise.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/noise_estimate.h"

using gd::core::estimate_noise_sigma;

namespace {

constexpr double kPi = 3.14159265358979323846;
const std::vector<double> kSigmas = {0.0, 5.0 / 255, 10.0 / 255, 25.0 / 255, 50.0 / 255};

// Smooth [C, H, W] images in 0.2..0.8 (noise below is not clipped, as the estimator's
// contract is about additive noise; clipping bias is documented in the header).
at::Tensor gradient(int64_t c, int64_t h, int64_t w) {
  at::Tensor y = at::linspace(0.0, 1.0, h, at::kFloat).view({1, h, 1});
  at::Tensor x = at::linspace(0.0, 1.0, w, at::kFloat).view({1, 1, w});
  at::Tensor ch = at::linspace(0.0, 1.0, c, at::kFloat).view({c, 1, 1});
  return 0.2 + 0.3 * x + 0.2 * y + 0.1 * ch;
}

// Low-frequency waves with different phases per channel. A sum f(x) + g(y) has no diagonal
// detail at all (HH cancels it exactly), so a product and a diagonal wave are included to give
// the band some (small) real content.
at::Tensor sinusoids(int64_t c, int64_t h, int64_t w) {
  at::Tensor y = at::arange(h, at::kFloat).view({1, h, 1}) / static_cast<double>(h);
  at::Tensor x = at::arange(w, at::kFloat).view({1, 1, w}) / static_cast<double>(w);
  at::Tensor phase = at::arange(c, at::kFloat).view({c, 1, 1});
  return 0.5 + 0.15 * at::sin(2 * kPi * 2 * x + phase) * at::cos(2 * kPi * 1.5 * y + 0.5 * phase) +
         0.1 * at::sin(2 * kPi * 3 * (x + y) + phase);
}

at::Tensor with_noise(const at::Tensor& clean, double sigma, uint64_t seed) {
  at::manual_seed(seed);
  return clean + sigma * at::randn(clean.sizes(), at::kFloat);
}

// Within 15 % of sigma, or 1/255 for sigma near zero.
double tolerance(double sigma) { return std::max(0.15 * sigma, 1.0 / 255); }

std::string error_of(const at::Tensor& image) {
  try {
    estimate_noise_sigma(image);
  } catch (const gd::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(NoiseEstimate, MatchesKnownSigmaOnSmoothImages) {
  struct Case {
    const char* name;
    at::Tensor clean;
  };
  const Case cases[] = {{"gradient", gradient(3, 128, 128)},
                        {"sinusoids", sinusoids(3, 128, 128)},
                        {"gray sinusoids", sinusoids(1, 96, 160)}};
  uint64_t seed = 17;
  for (const Case& c : cases) {
    for (double sigma : kSigmas) {
      double estimate = estimate_noise_sigma(with_noise(c.clean, sigma, seed++));
      EXPECT_NEAR(estimate, sigma, tolerance(sigma))
          << c.name << ", sigma " << sigma * 255 << "/255";
      if (sigma > 0) {
        // Relative error is in fact far below the 15 % allowed: about 1/sqrt(coefficients).
        EXPECT_NEAR(estimate / sigma, 1.0, 0.15) << c.name << ", sigma " << sigma * 255 << "/255";
      }
    }
  }
}

TEST(NoiseEstimate, MonotonicInSigma) {
  at::Tensor clean = sinusoids(3, 64, 64);
  at::manual_seed(5);
  at::Tensor noise = at::randn(clean.sizes(), at::kFloat);
  double previous = -1.0;
  for (double sigma : {0.0, 1.0 / 255, 5.0 / 255, 10.0 / 255, 25.0 / 255, 50.0 / 255, 80.0 / 255}) {
    double estimate = estimate_noise_sigma(clean + sigma * noise);
    EXPECT_GT(estimate, previous) << "sigma " << sigma * 255 << "/255";
    previous = estimate;
  }
  // Independent noise draws too, at well separated levels.
  previous = -1.0;
  uint64_t seed = 100;
  for (double sigma : kSigmas) {
    double estimate = estimate_noise_sigma(with_noise(clean, sigma, seed++));
    EXPECT_GT(estimate, previous) << "sigma " << sigma * 255 << "/255";
    previous = estimate;
  }
}

TEST(NoiseEstimate, ConstantImageGivesZero) {
  EXPECT_EQ(estimate_noise_sigma(at::full({3, 32, 32}, 0.5, at::kFloat)), 0.0);
  EXPECT_EQ(estimate_noise_sigma(at::zeros({1, 8, 8}, at::kFloat)), 0.0);
  // A different constant per channel, and per image of a batch.
  at::Tensor levels = at::tensor({0.1f, 0.7f, 1.0f}).view({1, 3, 1, 1});
  EXPECT_EQ(estimate_noise_sigma(levels.expand({2, 3, 16, 24}).contiguous()), 0.0);
  // A linear ramp has no diagonal detail either.
  EXPECT_LT(estimate_noise_sigma(gradient(3, 64, 64)), 1e-6);
}

TEST(NoiseEstimate, MultiChannelBatchAndDtypes) {
  const double sigma = 10.0 / 255;
  at::Tensor rgb = with_noise(sinusoids(3, 64, 64), sigma, 7);
  const double from_rgb = estimate_noise_sigma(rgb);
  EXPECT_NEAR(from_rgb, sigma, tolerance(sigma));
  // Each channel alone agrees.
  for (int64_t ch = 0; ch < 3; ++ch) {
    EXPECT_NEAR(estimate_noise_sigma(rgb.narrow(0, ch, 1)), sigma, tolerance(sigma))
        << "channel " << ch;
  }
  // [N, C, H, W]: one sigma for the batch; a batch of one equals the [C, H, W] form.
  EXPECT_DOUBLE_EQ(estimate_noise_sigma(rgb.unsqueeze(0)), from_rgb);
  at::Tensor batch = at::stack({rgb, with_noise(gradient(3, 64, 64), sigma, 8)});
  EXPECT_NEAR(estimate_noise_sigma(batch), sigma, tolerance(sigma));
  // Non-contiguous views, double and half precision.
  EXPECT_NEAR(estimate_noise_sigma(rgb.transpose(1, 2)), sigma, tolerance(sigma));
  EXPECT_NEAR(estimate_noise_sigma(rgb.to(at::kDouble)), sigma, tolerance(sigma));
  EXPECT_NEAR(estimate_noise_sigma(rgb.to(at::kHalf)), sigma, tolerance(sigma));
  // Odd sides: the last row and column are left out.
  EXPECT_NEAR(estimate_noise_sigma(with_noise(sinusoids(3, 63, 65), sigma, 9)), sigma,
              tolerance(sigma));
}

TEST(NoiseEstimate, TextureOverestimates) {
  // The documented bias, pinned down: a pixel-level checkerboard is all diagonal detail, so a
  // noiseless image reads as heavy noise. Callers must not trust the estimate on such content.
  at::Tensor y = at::arange(32, at::kLong).view({32, 1});
  at::Tensor x = at::arange(32, at::kLong).view({1, 32});
  at::Tensor checker = ((x + y) % 2).to(at::kFloat).mul(0.2).add(0.4).unsqueeze(0);
  EXPECT_GT(estimate_noise_sigma(checker), 50.0 / 255);
}

TEST(NoiseEstimate, RefusesBadInput) {
  EXPECT_NE(error_of(at::zeros({3, 7, 64})).find("image is 64x7, smaller than the 8x8 minimum"),
            std::string::npos);
  EXPECT_NE(error_of(at::zeros({1, 3, 64, 4})).find("smaller than the 8x8 minimum"),
            std::string::npos);
  EXPECT_NE(
      error_of(at::zeros({64, 64})).find("shape [64, 64], expected [C, H, W] or [N, C, H, W]"),
      std::string::npos);
  EXPECT_NE(error_of(at::zeros({3, 16, 16}, at::kByte)).find("expected a floating-point type"),
            std::string::npos);
  EXPECT_NE(error_of(at::zeros({0, 16, 16})).find("is empty"), std::string::npos);
  at::Tensor nan = at::zeros({1, 16, 16});
  nan[0][3][4] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(error_of(nan).find("NaN or infinite"), std::string::npos);
  EXPECT_NE(error_of(at::Tensor()).find("no image"), std::string::npos);
}
