#!/usr/bin/env python3
"""One run of a reference implementation's own sampling loop, timed: the other side of
tools/benchmark/vs_reference.py (which starts this script in a fresh process per run, with
diffusers or denoising-diffusion-pytorch and the offline stand-ins on PYTHONPATH).

  reference_loops.py diffusers --model DIR --size S --batch N --steps N --seed S
      [--class K --guidance W --guidance-below T] [--settings default|best] [--threads T] -o OUT
      UNet2DModel.from_pretrained(DIR) and DPMSolverMultistepScheduler (dpmpp_2m: from the
      folder's scheduler config, algorithm_type dpmsolver++, solver_order 2), the loop of
      diffusers' pipelines: randn_tensor from torch.Generator().manual_seed(S), then per
      timestep scale_model_input, unet(...).sample, scheduler.step(..., generator=g);
      image = (x / 2 + 0.5).clamp(0, 1). With --guidance (class-conditional models), steps
      whose timestep is below T evaluate the class and the mean of all class embeddings (an
      extra embedding row holding that mean) in two calls and combine them as
      u + W (c - u): the engine's guidance (core/guidance.h), written on diffusers' loop.
  reference_loops.py lucidrains --model CKPT --size S --batch N --steps N --seed S [...] -o OUT
      denoising-diffusion-pytorch: Unet and GaussianDiffusion rebuilt from the Trainer
      checkpoint's 'model' entry (the constructor arguments are in CKPT + ".json", written by
      vs_reference.py), sampling_timesteps=N, then torch.manual_seed(S) and
      GaussianDiffusion.sample(batch_size=N): the package's own DDIM loop.

--settings default: the code as shipped (contiguous weights, torch's own thread count, glibc's
default malloc; diffusers under torch.no_grad as its pipelines are, lucidrains' sample under its
own inference_mode). --settings best: weights channels-last, torch.inference_mode, the malloc
tuning of core/memory_policy.h (mallopt M_MMAP_MAX 0, M_TRIM_THRESHOLD INT_MAX) and --threads.

Writes the image ([N, 3, S, S] float32 in [0, 1]) to OUT (safetensors, tensor "image") and one
JSON line to stdout: import, load and loop seconds.
"""
import argparse
import ctypes
import json
import time

START = time.monotonic()


def tune_malloc():
    """core/memory_policy.h's reuse_freed_memory(), through ctypes."""
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)


def save_image(torch, path, image):
    from safetensors.torch import save_file
    save_file({"image": image.detach().to(torch.float32).contiguous()}, path)


def run_diffusers(a, torch):
    import diffusers
    from diffusers.utils.torch_utils import randn_tensor
    imported = time.monotonic()

    unet = diffusers.UNet2DModel.from_pretrained(a.model).eval()
    config = diffusers.DPMSolverMultistepScheduler.load_config(a.model)
    scheduler = diffusers.DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2)
    labels = mean_label = None
    if unet.config.num_class_embeds:
        labels = torch.full((a.batch,), a.class_index, dtype=torch.long)
        if a.guidance > 1:
            # One more embedding row, the mean of the others: the engine's unconditional.
            old = unet.class_embedding.weight.data
            mean = old.to(torch.float32).mean(0, keepdim=True).to(old.dtype)
            unet.class_embedding = torch.nn.Embedding.from_pretrained(torch.cat([old, mean]))
            mean_label = torch.full((a.batch,), old.shape[0], dtype=torch.long)
    if a.settings == "best":
        unet = unet.to(memory_format=torch.channels_last)
    loaded = time.monotonic()

    def network(x, t):
        if labels is None:
            return unet(x, t).sample
        c = unet(x, t, class_labels=labels).sample
        if mean_label is None or float(t) >= a.guidance_below:
            return c
        u = unet(x, t, class_labels=mean_label).sample
        return u + a.guidance * (c - u)

    mode = torch.inference_mode() if a.settings == "best" else torch.no_grad()
    with mode:
        start = time.monotonic()
        scheduler.set_timesteps(a.steps)
        g = torch.Generator().manual_seed(a.seed)
        size = (a.batch, unet.config.in_channels, a.size, a.size)
        x = randn_tensor(size, generator=g) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            out = network(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(out, t, x, generator=g).prev_sample
        image = (x / 2 + 0.5).clamp(0, 1)
        loop = time.monotonic() - start
    return imported, loaded, loop, image


def run_lucidrains(a, torch):
    from denoising_diffusion_pytorch.denoising_diffusion_pytorch import GaussianDiffusion, Unet
    imported = time.monotonic()

    with open(a.model + ".json") as f:
        kwargs = json.load(f)
    ckpt = torch.load(a.model, weights_only=True)
    diffusion = GaussianDiffusion(Unet(**kwargs["unet"]), image_size=a.size,
                                  sampling_timesteps=a.steps, **kwargs["diffusion"])
    diffusion.load_state_dict(ckpt["model"])
    diffusion.eval()
    if a.settings == "best":
        diffusion.model.to(memory_format=torch.channels_last)
    loaded = time.monotonic()

    # sample() is already under the package's own torch.inference_mode.
    start = time.monotonic()
    torch.manual_seed(a.seed)
    image = diffusion.sample(batch_size=a.batch)
    loop = time.monotonic() - start
    return imported, loaded, loop, image


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["diffusers", "lucidrains"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--class", dest="class_index", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--guidance-below", type=float, default=1e9)
    ap.add_argument("--settings", choices=["default", "best"], default="default")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    if a.settings == "best":
        tune_malloc()
    import torch
    if a.settings == "best" and a.threads > 0:
        torch.set_num_threads(a.threads)
    run = run_diffusers if a.kind == "diffusers" else run_lucidrains
    imported, loaded, loop, image = run(a, torch)
    save_image(torch, a.output, image)
    print(json.dumps({"import_s": imported - START, "load_s": loaded - imported, "loop_s": loop,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
