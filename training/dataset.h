// The training images: a folder of PNGs read once into memory, and random batches of crops cut
// from them with flips and 90-degree rotations (denoising-diffusion-pytorch's augmentation for
// textures, which have no up or left).
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace gd::training {

struct Dataset {
  std::vector<at::Tensor> images;  // [3, H, W] float32 in [-1, 1]
  std::vector<std::string> names;  // the file names without .png, relative to the folder: the
                                   // class names of a --classes run (image i is class i)
};

// Every .png under `dir` (recursively, sorted by path, so class numbers do not depend on the
// order the file system lists them in). Gray is repeated into RGB; alpha is dropped. Images
// smaller than size x size are refused, unless `tile`: then each is repeated until any crop
// fits (seamless textures). Errors name the file and the CLI option to change.
Dataset load_dataset(const std::string& dir, int size, bool tile);

// [batch, 3, size, size]: random image, random crop, random flips, random 90-degree rotation,
// every choice drawn from `gen` (so a resumed run cuts the same crops). `labels` receives each
// crop's image index ([batch] int64), the class of --classes runs.
at::Tensor random_batch(const std::vector<at::Tensor>& images, int batch, int size,
                        at::Generator& gen, at::Tensor* labels);

}  // namespace gd::training
