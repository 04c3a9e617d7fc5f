#!/usr/bin/env python3
"""bf16 against fp32 on one model: how far apart the outputs are, and whether it shows.

The measurement behind `--precision auto`'s CPU choice (issue 20, docs/numerics.md). Run it
inside the build environment after a build:

  tools/env python3 tools/quality/bf16_vs_fp32.py --model models/checkpoints/gimp-patterns \\
      --work build/bf16-vs-fp32 [--size 128] [--count 32] [--json PATH]

What it measures (every run through the CLI, exactly as a user's run; only --precision differs):

  generate   sets of COUNT seamless textures (dpmpp_2m, 20 steps, the model's own guidance):
             set A, seeds 1..N, one CLI call per seed, in fp32 and in bf16; set B, one CLI call
             of --batch N with seed 100001 (other noise, drawn alike for both precisions), in
             fp32 and in bf16.
             - PSNR of each bf16 image against the fp32 image of the same noise (float32
               outputs, peak 1): how much bf16 moves one image. Sampling amplifies small
               differences, so this is a distance between two images, not a quality loss.
             - texture SWD (tools/quality/texture_swd.py's measurement: Laplacian-pyramid 7x7
               patches, sliced Wasserstein x1000, worst detail level) between independent sets:
               "noise" pairs are fp32 A - fp32 B and bf16 A - bf16 B (two draws of the same
               precision); "cross" pairs are bf16 A - fp32 B and fp32 A - bf16 B. bf16 draws
               textures like fp32 when the cross values lie within the noise values. The
               same-noise pairs (bf16 A - fp32 A, bf16 B - fp32 B) are printed too.
  denoise    the held-out textures (tests/data/heldout-textures, never trained on), tiled to
             SIZE, with Gaussian noise sigma 10, 25 and 50 of 255 from three noise seeds each,
             rounded to 8 bits; denoised with the sigma given (dpmpp_2m, the default steps, one
             batched CLI call per sigma). PSNR of each result against the clean image for
             fp32 and for bf16: the "PSNR loss" is fp32's minus bf16's, per image, in dB.
  speed      the sampling loop's time per image (from the CLI's last progress line), median
             over each set; contaminated by whatever else runs on the machine.

The decision rule (issue 20): bf16 is accurate enough when the mean PSNR loss on denoise is at
most 0.5 dB and the mean cross SWD is at most the largest noise SWD. The script prints the
figures and the verdict; it asserts nothing.

Outputs are cached in WORK/<precision>-<kind>-<set>/ (an interrupted run keeps what it made).
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import texture_swd as swd_lib  # noqa: E402  (the same SWD as the model card's table)
sys.path.insert(0, os.path.dirname(HERE))
from image_tensors import read_images, write_images  # noqa: E402

DEFAULT_CLI = os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli")
HELDOUT = os.path.join(REPO, "tests", "data", "heldout-textures")
SAMPLER, STEPS = "dpmpp_2m", 20
SIGMAS = (10, 25, 50)  # of 255
NOISE_SEEDS = (1, 2, 3)


def fail(message):
    sys.exit(f"bf16_vs_fp32: error: {message}")


# ---------------------------------------------------------------- CLI runs

def loop_seconds(stderr):
    """The sampling loop's time from the last progress line (steps done / rate)."""
    runs = re.findall(r"(\d+)/(\d+), ([\d.]+) \w+s/s", stderr)
    if not runs or float(runs[-1][2]) == 0:
        return float("nan")
    return int(runs[-1][0]) / float(runs[-1][2])


def run_cli(cli, args):
    r = subprocess.run([cli] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
        fail(f"gimp-diffusion-cli {args[0]} failed (exit {r.returncode}): {last}")
    return loop_seconds(r.stderr)


def generate_batch(a, precision, name, seed):
    """One CLI call of --batch COUNT: [N, 3, S, S] float32 images, and its loop time per image."""
    folder = os.path.join(a.work, f"{precision}-generate-{name}-{a.size}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"batch-{a.count}-seed-{seed}.safetensors")
    times = []
    if not os.path.exists(path):
        tmp = path + ".part.safetensors"
        loop = run_cli(a.cli, [
            "generate", "--model", a.model, "--width", str(a.size), "--height", str(a.size),
            "--batch", str(a.count), "--sampler", SAMPLER, "--steps", str(STEPS), "--seed",
            str(seed), "--seamless", "--precision", precision, "-o", tmp])
        os.replace(tmp, path)
        times = [loop / a.count]
        print(f"{precision} {name} batch: loop {loop:.1f} s", file=sys.stderr)
    return read_images(path), times


def generate_set(a, precision, name, seeds):
    """[N, 3, S, S] float32 images of `seeds`, and the loop time of each run made now."""
    folder = os.path.join(a.work, f"{precision}-generate-{name}-{a.size}")
    os.makedirs(folder, exist_ok=True)
    images, times = [], []
    for seed in seeds:
        path = os.path.join(folder, f"seed-{seed:04d}.safetensors")
        if not os.path.exists(path):
            tmp = path + ".part.safetensors"
            times.append(run_cli(a.cli, [
                "generate", "--model", a.model, "--width", str(a.size), "--height", str(a.size),
                "--sampler", SAMPLER, "--steps", str(STEPS), "--seed", str(seed), "--seamless",
                "--precision", precision, "-o", tmp]))
            os.replace(tmp, path)
            print(f"{precision} {name} seed {seed}: loop {times[-1]:.1f} s", file=sys.stderr)
        images.append(read_images(path)[0])
    return np.stack(images), times


def noisy_cases(size):
    """Clean [N, 3, S, S] and, per sigma, the noisy 8-bit versions (same order)."""
    paths = swd_lib.png_paths(HELDOUT)
    clean = [swd_lib.prepare(swd_lib.load_rgb(p), size)[:size, :size] for p in paths]
    clean = np.stack([c.transpose(2, 0, 1) for c in clean for _ in NOISE_SEEDS])
    noisy = {}
    for sigma in SIGMAS:
        out = []
        for i, img in enumerate(clean):
            rng = np.random.default_rng([sigma, i % len(NOISE_SEEDS), i // len(NOISE_SEEDS)])
            n = img + rng.standard_normal(img.shape).astype(np.float32) * sigma / 255.0
            out.append(np.round(np.clip(n, 0, 1) * 255.0) / 255.0)
        noisy[sigma] = np.stack(out).astype(np.float32)
    return clean, noisy


def denoise_set(a, precision, noisy):
    """Denoised images per sigma, one batched call each."""
    folder = os.path.join(a.work, f"{precision}-denoise-{a.size}")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for sigma, images in noisy.items():
        path = os.path.join(folder, f"sigma-{sigma}.safetensors")
        if not os.path.exists(path):
            inp = os.path.join(folder, f"noisy-{sigma}.safetensors")
            write_images(inp, images)
            tmp = path + ".part.safetensors"
            run_cli(a.cli, ["denoise", "--model", a.model, "-i", inp, "-o", tmp,
                            "--sigma", f"{sigma / 255.0:.6f}", "--precision", precision])
            os.replace(tmp, path)
            print(f"{precision} denoise sigma {sigma}: done", file=sys.stderr)
        out[sigma] = read_images(path)
    return out


# ---------------------------------------------------------------- figures

def psnr(a, b):
    """Per image, peak 1, over all pixels and channels."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-20))


def swd_worst_detail(desc_a, desc_b, levels, dirs):
    vals = [swd_lib.swd(desc_a[l], desc_b[l], dirs[l]) for l in range(levels)]
    return max(vals[:-1]), vals


def stats(values):
    v = np.asarray(values, dtype=np.float64)
    return f"mean {v.mean():.2f}, median {np.median(v):.2f}, min {v.min():.2f}, max {v.max():.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(REPO, "models", "checkpoints", "gimp-patterns"))
    ap.add_argument("--work", required=True, help="folder for the outputs (a cache)")
    ap.add_argument("--size", type=int, default=128, help="16 x a power of 2, at least 32")
    ap.add_argument("--count", type=int, default=32, help="images per generated set")
    ap.add_argument("--skip-denoise", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--cli", default=DEFAULT_CLI)
    a = ap.parse_args()
    levels = int(round(math.log2(a.size / swd_lib.COARSEST))) + 1
    if a.size < 32 or swd_lib.COARSEST << (levels - 1) != a.size:
        fail(f"--size must be 16 times a power of 2, at least 32 (got {a.size})")
    if not os.access(a.cli, os.X_OK):
        fail(f"gimp-diffusion-cli not found: {a.cli}")
    n = a.count
    # Interleave the precisions so that machine load hits both alike.
    sets, times = {}, {"fp32": [], "bf16": []}
    for precision in ("fp32", "bf16"):
        sets[f"{precision} A"], t = generate_set(a, precision, "A", range(1, n + 1))
        times[precision] += t
    for precision in ("fp32", "bf16"):
        sets[f"{precision} B"], t = generate_batch(a, precision, "B", 100001)
        times[precision + " (batch, per image)"] = t

    pairs_psnr = np.concatenate([psnr(sets[f"bf16 {s}"], sets[f"fp32 {s}"]) for s in "AB"])
    hwc = {k: [img.transpose(1, 2, 0) for img in swd_lib.quantize(v)] for k, v in sets.items()}
    desc = {k: swd_lib.descriptors(v, k, levels) for k, v in hwc.items()}
    dirs = [swd_lib.directions(l) for l in range(levels)]
    noise_pairs = [("fp32 A", "fp32 B"), ("bf16 A", "bf16 B")]
    cross_pairs = [("bf16 A", "fp32 B"), ("fp32 A", "bf16 B")]
    same_pairs = [("bf16 A", "fp32 A"), ("bf16 B", "fp32 B")]
    rows = {}
    for kind, pairs in (("noise", noise_pairs), ("cross", cross_pairs), ("same seeds", same_pairs)):
        for x, y in pairs:
            rows[(kind, x, y)] = swd_worst_detail(desc[x], desc[y], levels, dirs)

    denoise = None
    if not a.skip_denoise:
        clean, noisy = noisy_cases(a.size)
        out = {p: denoise_set(a, p, noisy) for p in ("fp32", "bf16")}
        denoise = {}
        for sigma in SIGMAS:
            p32, p16 = psnr(out["fp32"][sigma], clean), psnr(out["bf16"][sigma], clean)
            denoise[sigma] = {"fp32": p32, "bf16": p16, "loss": p32 - p16,
                              "between": psnr(out["bf16"][sigma], out["fp32"][sigma])}

    level_names = [f"{a.size >> l}px" for l in range(levels)]
    print(f"# bf16 vs fp32: {a.model}, {a.size}x{a.size}\n")
    print(f"Generate: {n} images per set, {SAMPLER} {STEPS} steps, --seamless, the model's "
          f"guidance.\n")
    print(f"PSNR of bf16 against fp32 from the same noise ({len(pairs_psnr)} images): "
          f"{stats(pairs_psnr)} dB\n")
    print("| pair | kind | " + " | ".join(level_names) + " | worst detail |")
    print("|---|---|" + "---|" * (levels + 1))
    for (kind, x, y), (worst, vals) in rows.items():
        cells = " | ".join(f"{v:.1f}" for v in vals)
        print(f"| {x} - {y} | {kind} | {cells} | **{worst:.1f}** |")
    noise = [rows[("noise",) + p][0] for p in noise_pairs]
    cross = [rows[("cross",) + p][0] for p in cross_pairs]
    print(f"\nSWD worst detail: noise {stats(noise)}; cross {stats(cross)}")
    verdict_swd = float(np.mean(cross)) <= max(noise)
    verdict_psnr = True
    if denoise:
        print(f"\nDenoise ({len(clean)} images: {len(clean) // len(NOISE_SEEDS)} held-out "
              f"textures x {len(NOISE_SEEDS)} noise seeds, per sigma), PSNR against the clean "
              f"image, dB:\n")
        print("| sigma | fp32 | bf16 | loss (fp32 - bf16), mean | worst loss | bf16 vs fp32 |")
        print("|---|---|---|---|---|---|")
        losses = []
        for sigma, d in denoise.items():
            losses.append(d["loss"])
            print(f"| {sigma}/255 | {d['fp32'].mean():.2f} | {d['bf16'].mean():.2f} | "
                  f"{d['loss'].mean():+.3f} | {d['loss'].max():+.3f} | "
                  f"{d['between'].mean():.1f} |")
        mean_loss = float(np.concatenate(losses).mean())
        verdict_psnr = mean_loss <= 0.5
        print(f"\nMean denoise PSNR loss: {mean_loss:+.3f} dB")
    for p, t in times.items():
        if t:
            print(f"Loop time per generated image, {p}: median {np.median(t):.2f} s "
                  f"({len(t)} runs made now)")
    verdict = verdict_swd and verdict_psnr
    print(f"\nVerdict: {'bf16 is within' if verdict else 'bf16 is NOT within'} the rule "
          f"(mean denoise PSNR loss <= 0.5 dB: {verdict_psnr}; mean cross SWD <= largest "
          f"noise SWD: {verdict_swd})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"size": a.size, "count": n, "psnr_same_seed": pairs_psnr.tolist(),
                       "swd": {" | ".join(k): v[1] for k, v in rows.items()},
                       "denoise": {str(s): {k: v.tolist() for k, v in d.items()}
                                   for s, d in (denoise or {}).items()},
                       "loop_seconds": times, "verdict": verdict}, f, indent=1)


if __name__ == "__main__":
    main()
