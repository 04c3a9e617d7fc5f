// Which class of a class-conditional model fits an image best, for the actions that start from
// an image (img2img, denoise). The idea is the diffusion classifier of Li et al. 2023 ("Your
// Diffusion Model is Secretly a Zero-Shot Classifier"): noise the image to a few timesteps with
// fixed noise, ask the network for the clean image under every class, and take the class whose
// prediction comes closest to the image, summed over the timesteps.
//
//   std::vector<std::int64_t> k = best_fitting_classes(model, x, 0);  // x: [N, C, H, W] in [-1, 1]
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "core/pipeline.h"

namespace gd::core {

// Side of the centred crop the classes are compared on: the fit costs classes x timesteps
// network calls at this size, whatever the image's size (about 5.5 s on 2 CPU cores for the
// bundled model's 147 classes).
constexpr std::int64_t kClassFitCrop = 32;
// Timesteps compared: evenly spread above `min_timestep`, at 1/3 and 2/3 of the way to the last
// training timestep. Measured on the held-out patterns (denoise, sigma given): fitting at high
// noise levels chose better classes than near the image's own level, whose fit follows the
// image's noise more than its colours and structure.
constexpr int kClassFitTimesteps = 2;

// One class per image of x ([N, C, H, W] in model space [-1, 1]). min_timestep: the noise level
// the image already has (denoise), so that the added noise dominates it; 0 for clean images.
// The noise is drawn from a fixed seed, so the choice depends on the image only. Throws
// gd::Error for an unconditional model. on_call, if set, is
// called after each network call with (calls done, calls in all); returning false throws
// gd::Cancelled.
std::vector<std::int64_t> best_fitting_classes(const PipelineModel& model, const at::Tensor& x,
                                               int min_timestep, const StepFn& on_call = {});

}  // namespace gd::core
