// The trainer: a diffusers UNet2DModel trained on random crops of a folder of PNGs, with the
// semantics of denoising-diffusion-pytorch's Trainer (random crops of textures with flips and
// 90-degree rotations, AdamW, gradient accumulation and clipping, an EMA of the weights,
// periodic checkpoints and sample grids).
//
// OUT ends up a diffusers model folder (config.json, diffusion_pytorch_model.safetensors with the
// EMA weights, scheduler_config.json), rewritten at every checkpoint. The training state lives in
// OUT/training/: checkpoint.pt (weights, EMA, optimizer, step, RNG state and the settings; always
// replaced through a rename) and samples/sample-STEP.png.
//
// Every random number of the run (initial weights, crops, timesteps, noise) comes from one CPU
// generator seeded with the settings' seed, and its state is saved in the checkpoint, so an
// interrupted run resumed with `resume` continues exactly as if it had not stopped. On the CPU
// that is bit for bit; on CUDA the random numbers are the same, still drawn on the CPU, but
// cuDNN's kernels are not bit-reproducible. A run may move between devices at a resume: the
// checkpoint is read onto whichever device the run continues on.
#pragma once

#include "training/train_settings.h"

namespace gd::training {

// Runs (or, with settings.resume, continues) the run in settings.out up to settings.steps.
// Everything is read and checked (data, --init model, the run folder) before the first file
// is written. Progress goes to `log` (may be empty: silent). Throws gd::Error.
void train(TrainSettings settings, const TrainLog& log);

}  // namespace gd::training
