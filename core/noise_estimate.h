// Blind estimate of the additive white Gaussian noise level of an image, for the denoise
// pipeline: it picks the diffusion timestep whose noise level matches the image.
//
// Method (Donoho & Johnstone 1994, "Ideal spatial adaptation by wavelet shrinkage"): the finest
// diagonal Haar wavelet band HH = (x[2i,2j] - x[2i,2j+1] - x[2i+1,2j] + x[2i+1,2j+1]) / 2 of
// each 2x2 block. The Haar transform is orthonormal, so white noise of standard deviation
// sigma gives HH coefficients of standard deviation sigma, while smooth image content cancels
// (a linear ramp gives exactly 0). Edges and texture give a minority of large coefficients;
// the median absolute value ignores them: sigma = median(|HH|) / 0.6745, 0.6745 being the
// median of |z| for z ~ N(0, 1).
//
// Channels are combined by taking the median over the coefficients of all channels (and all
// images of a batch) together, not a median of per-channel estimates: the pipeline needs one
// sigma for the whole image, noise of this model has the same sigma in every channel, and
// pooling gives C times the samples (less variance on small images). Texture is usually
// shared by the channels (it is mostly luminance), so per-channel medians would not be more
// robust to it.
//
// Known biases:
//  - Texture, fine detail and hard edges overestimate sigma: when more than a small share of
//    the 2x2 blocks carry real high-frequency content, the median itself rises (a clean photo
//    of foliage or fabric can read as several 1/255 of noise).
//  - Clipping underestimates: noise pushed below 0 or above 1 and clamped is lost, so images
//    with large dark or bright areas read low at high sigma.
//  - Spatially correlated noise (JPEG, demosaicing, resized or denoised images) has less
//    energy in the finest band than its pixel variance and reads low.
//  - 8-bit quantization alone contributes about 1/255/sqrt(12) on textured content and close
//    to nothing on flat areas.
//  - Odd widths or heights drop the last column or row.
// The value range is not checked: any finite float image works, and sigma is in its units.
#pragma once

#include <ATen/ATen.h>

namespace gd::core {

// Smallest side accepted: 8 pixels give a 4x4 block band, 16 coefficients per channel; fewer
// make the median meaningless.
constexpr int kNoiseEstimateMinSide = 8;

// `image`: [C, H, W] or [N, C, H, W], a floating-point dtype, color channels only (the caller
// drops alpha). Returns sigma in the image's units (0..1 images: 25/255 noise gives ~0.098).
// Constant images give 0. Throws gd::Error for another rank, a non-float dtype, a side below
// kNoiseEstimateMinSide, no channels or images, or a NaN or infinite value.
double estimate_noise_sigma(const at::Tensor& image);

}  // namespace gd::core
