// Inpainting: regenerating the masked pixels of an image so that they continue the others, and
// Make Seamless, which inpaints the seams of a texture offset by half its size.
//
// RePaint (Lugmayr et al. 2022): the reverse process runs on the work area; after each step the
// known pixels are replaced by the original noised to the new step's level, and every
// jump_length steps the sample is noised back up jump_length levels (q(x_t | x_t')) and those
// steps run again, resample - 1 times, so the generated part is harmonised with the known part.
// The schedule of jumps is diffusers' RePaintScheduler's (jump_length 10, jump_n_sample
// `resample`). Each step is DDIM's generalised step (Song et al. 2021, eq. 12): eta 1 is DDPM's
// posterior (the "ddpm" sampler), the "ddim" sampler uses the run's eta. Multistep and
// sigma-space samplers (dpmpp_2m, euler, euler_a) carry state a jump back would invalidate, so
// they are refused.
//
//   InpaintOptions options;                  // RunOptions + resample, context margin
//   at::Tensor out = inpaint(model, image, mask, options);   // mask 1: regenerate
//   at::Tensor tile = make_seamless(model, image, 32, options);
//
// Noise comes from the run's CPU generator (the initial noise first, then one draw per step
// and per jump back), so a seed reproduces the fill on any device.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/pipeline.h"

namespace gd::core {

// Measured on the bundled model (docs/inpainting.md): the resamplings per jump by default.
inline constexpr int kDefaultResample = 3;
inline constexpr int kJumpLength = 10;  // RePaint's and diffusers' default
// Inpainting's default steps: the jumps multiply the network calls (about 2 * resample - 1
// calls per step), so fewer steps than ddim's 50.
inline constexpr int kDefaultInpaintSteps = 25;

struct InpaintOptions : RunOptions {
  int resample = 0;  // RePaint's jump_n_sample, 1 (no jumps) to 20; 0: kDefaultResample
  // Pixels of known context around the mask's bounds that the work area includes; -1: the
  // default (default_context_margin).
  int context_margin = -1;
};

// The levels the sample visits, RePaint's schedule (diffusers' RePaintScheduler.set_timesteps):
// level i is the i-th of `steps` timesteps (0 the noisiest), level `steps` the clean image.
// Starts at 0, ends at steps; consecutive levels differ by one: +1 is a reverse step, -1 a jump
// back (noising). resample 1 has no jumps.
std::vector<int> repaint_levels(int steps, int jump_length, int resample);

// The reverse steps (network calls) of repaint_levels(steps, jump_length, resample).
int repaint_network_calls(int steps, int jump_length, int resample);

// Half the model's native size (32 when unknown), a multiple of the downsampling factor.
int default_context_margin(const PipelineModel& model);

// Which samplers can inpaint; throws gd::Error naming the sampler and why otherwise.
void check_inpaint_sampler(const std::string& sampler);
// The sampler of an inpainting run: options.sampler, or "ddpm" when the model's own default
// cannot re-noise (dpmpp_2m, euler, euler_a).
std::string inpaint_sampler(const PipelineModel& model, const std::string& sampler);

// A rectangle of an image: rows [y, y + height), columns [x, x + width).
struct Rect {
  std::int64_t y = 0, x = 0, height = 0, width = 0;
};

// The part of an image of height x width that a mask's nonzero pixels (bounds given as `bounds`)
// need: the bounds grown by `margin` on every side, clipped to the image, then grown (within
// the image) to multiples of `factor` where the image allows it.
Rect inpaint_work_area(const Rect& bounds, std::int64_t margin, std::int64_t factor,
                       std::int64_t height, std::int64_t width);

// The bounds of the nonzero pixels of a mask [N or 1, 1, H, W] over the batch; height 0 when
// the mask is empty.
Rect mask_bounds(const at::Tensor& mask);

// Checks an inpainting mask [N or 1, 1, H, W] against an image [N, C, H, W]: same size, values
// in [0, 1], not empty, not everything (that is Generate). Throws gd::Error with one line.
void check_inpaint_mask(const at::Tensor& image, const at::Tensor& mask);

// image [N, C, H, W] and mask [N or 1, 1, H, W] in [0, 1] (1: regenerate, between: blend).
// Returns [N, C, H, W] in [0, 1]: where the mask is 0 the input's values exactly. Only the work
// area (mask bounds + context margin) goes through the network, unless options.seamless, where
// the whole canvas does with circular padding. Class-conditional models without a class take
// the class that best fits the known part of the work area.
at::Tensor inpaint(const PipelineModel& model, const at::Tensor& image, const at::Tensor& mask,
                   const InpaintOptions& options);

// The mask Make Seamless inpaints on an image offset by half its size: the rows and columns
// within band / 2 of the centre lines (where the original's edges now meet). [1, 1, H, W].
at::Tensor seamless_band_mask(std::int64_t height, std::int64_t width, std::int64_t band);

// Make Seamless' default band: a quarter of the smaller side (at least 2 pixels).
std::int64_t default_seamless_band(std::int64_t height, std::int64_t width);

// Checks Make Seamless' band: at least 2 pixels and at most half the smaller side.
void check_seamless_band(std::int64_t band, std::int64_t height, std::int64_t width);

// A texture that tiles: image offset by half its size (wrapping), the band across the central
// seams inpainted with circular padding, offset back. Outside the band the result is the input
// exactly. Sizes that are not multiples of the model's downsampling factor are stretched (as a
// torus) to the next multiples for the fill, which is resampled back into the band.
at::Tensor make_seamless(const PipelineModel& model, const at::Tensor& image, std::int64_t band,
                         const InpaintOptions& options);

}  // namespace gd::core
