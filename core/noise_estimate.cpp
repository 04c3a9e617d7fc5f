#include "core/noise_estimate.h"

#include <string>

#include "core/error.h"

namespace gd::core {

namespace {

std::string shape_text(const at::Tensor& t) {
  std::string text = "[";
  for (int64_t i = 0; i < t.dim(); ++i) text += (i > 0 ? ", " : "") + std::to_string(t.size(i));
  return text + "]";
}

}  // namespace

double estimate_noise_sigma(const at::Tensor& image) {
  if (!image.defined()) throw Error("noise estimate: no image given");
  if (image.dim() != 3 && image.dim() != 4) {
    throw Error("noise estimate: image has shape " + shape_text(image) +
                ", expected [C, H, W] or [N, C, H, W]");
  }
  if (!at::isFloatingType(image.scalar_type())) {
    throw Error(std::string("noise estimate: image dtype is ") +
                c10::toString(image.scalar_type()) + ", expected a floating-point type");
  }
  at::Tensor x = image.dim() == 3 ? image.unsqueeze(0) : image;
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (n < 1 || c < 1)
    throw Error("noise estimate: image of shape " + shape_text(image) + " is empty");
  if (h < kNoiseEstimateMinSide || w < kNoiseEstimateMinSide) {
    throw Error("noise estimate: image is " + std::to_string(w) + "x" + std::to_string(h) +
                ", smaller than the " + std::to_string(kNoiseEstimateMinSide) + "x" +
                std::to_string(kNoiseEstimateMinSide) + " minimum");
  }
  // Half and bfloat16 would round the small differences below; double is exact but slower
  // and buys nothing at the 1e-4 precision a median of noisy samples has.
  if (x.scalar_type() != at::kDouble) x = x.to(at::kFloat);
  if (!at::isfinite(x).all().item<bool>()) {
    throw Error("noise estimate: image contains NaN or infinite values");
  }

  // 2x2 blocks over the even part of the image.
  const int64_t h2 = h / 2 * 2, w2 = w / 2 * 2;
  at::Tensor even = x.narrow(2, 0, h2).narrow(3, 0, w2);
  using at::indexing::None;
  using at::indexing::Slice;
  at::Tensor a = even.index({Slice(), Slice(), Slice(0, None, 2), Slice(0, None, 2)});
  at::Tensor b = even.index({Slice(), Slice(), Slice(0, None, 2), Slice(1, None, 2)});
  at::Tensor d = even.index({Slice(), Slice(), Slice(1, None, 2), Slice(0, None, 2)});
  at::Tensor e = even.index({Slice(), Slice(), Slice(1, None, 2), Slice(1, None, 2)});
  // (a - b) - (d - e): grouped so a constant image gives exactly 0, not rounding residue.
  at::Tensor hh = ((a - b) - (d - e)).mul_(0.5).abs_().flatten();
  // at::median returns the lower of the two middle values for even counts; with thousands of
  // coefficients the difference to the mean of the two is far below the estimate's spread.
  const double median = at::median(hh).item<double>();
  constexpr double kMedianAbsStdNormal = 0.6744897501960817;  // Phi^-1(3/4)
  return median / kMedianAbsStdNormal;
}

}  // namespace gd::core
