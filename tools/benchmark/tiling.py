#!/usr/bin/env python3
"""Tiled sampling on large canvases: time, peak memory and seams, through the CLI.

A benchmark, not a test: it prints figures (markdown rows) for docs/benchmarks.md and asserts
nothing. Run it inside the build root (tools/env) after building:

  tools/env python3 tools/benchmark/tiling.py sizes [--sizes 512,1024,2048,4096]
      [--precisions fp32,bf16] [--steps 20] [--max-memory 3.3G]
      seamless generate with dpmpp_2m: windows, threads, wall time, the sampling loop's time
      (from the progress lines) and its seconds per megapixel, peak RSS (the process's, from
      wait4) and the engine's estimate
  tools/env python3 tools/benchmark/tiling.py seams [--size 1024] [--tile 256] [--steps 20]
      mean absolute gradient across the window edges of a generated texture over the mean
      across every other row and column (1.0: edges look like the rest)
  tools/env python3 tools/benchmark/tiling.py denoise [--width 6000] [--height 4000] [--steps N]
      a synthetic noisy photograph (smooth random colour field, Gaussian noise sigma 0.05)
      denoised under the default budget: time and peak RSS

Needs numpy (in the build root). Scratch files go to build/tiling-bench/.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from png_files import encode_png  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tools"))
from image_tensors import read_images  # noqa: E402

SCRATCH = os.path.join(ROOT, "build", "tiling-bench")


def run_cli(cli, args):
    """Runs the CLI; returns (seconds, peak RSS in bytes, stderr text)."""
    start = time.monotonic()
    proc = subprocess.Popen([cli] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("failed: " + " ".join(args) + "\n" + err)
    return seconds, usage.ru_maxrss * 1024, err


def plan_facts(err):
    """The windows and the estimate from the CLI's plan line."""
    line = next((l for l in err.splitlines() if "estimated peak" in l), "")
    windows = re.search(r"(\d+) windows of (\d+)x(\d+)", line)
    estimate = re.search(r"estimated peak ([\d.]+) (GiB|MiB)", line)
    est = float(estimate.group(1)) * (2**30 if estimate.group(2) == "GiB" else 2**20) if estimate else 0
    return (windows.group(0) if windows else "1 (whole canvas)"), est


def threads(err):
    """The run's thread count, from its "N thread(s) (...)" line."""
    m = re.search(r": (\d+) threads? \(", err)
    return m.group(1) if m else "?"


def sampling_seconds(err):
    """The sampling loop's own time (without loading and checking), from the last progress line:
    done / rate, the rate counted from the first step."""
    last = [m for m in re.finditer(r"(\d+)/(\d+), ([\d.]+) \w+s/s", err)]
    if not last or float(last[-1].group(3)) == 0:
        return float("nan")
    return int(last[-1].group(1)) / float(last[-1].group(3))


def window_starts(err):
    line = next((l for l in err.splitlines() if "windows start at" in l), None)
    if not line:
        return [0], [0]
    m = re.search(r"rows ([\d ]+) and columns ([\d ]+)", line)
    return [int(v) for v in m.group(1).split()], [int(v) for v in m.group(2).split()]


def gib(b):
    return b / 2**30


def cmd_sizes(a):
    for precision in a.precisions.split(","):
        for size in [int(s) for s in a.sizes.split(",")]:
            args = ["generate", "--seamless", "--sampler", "dpmpp_2m", "--steps", str(a.steps),
                    "--width", str(size), "--height", str(size), "--seed", "1",
                    "--precision", precision, "-o", os.path.join(SCRATCH, f"sizes-{size}.png")]
            if a.max_memory:
                args += ["--max-memory", a.max_memory]
            seconds, rss, err = run_cli(a.cli, args)
            windows, est = plan_facts(err)
            mp = size * size / 1e6
            loop = sampling_seconds(err)
            print(f"| {precision} | {size}² | {windows} | {threads(err)} | {seconds:.0f} s | "
                  f"{loop:.0f} s | {loop / mp:.1f} s/MP | {gib(rss):.2f} GiB | {gib(est):.2f} GiB |",
                  flush=True)


def cmd_seams(a):
    out = os.path.join(SCRATCH, f"seams-{a.size}.safetensors")
    _, _, err = run_cli(a.cli, ["generate", "--sampler", "dpmpp_2m", "--steps", str(a.steps),
                                "--width", str(a.size), "--height", str(a.size), "--seed", str(a.seed),
                                "--tile-size", str(a.tile), "-o", out])
    windows, _ = plan_facts(err)
    rows, cols = window_starts(err)
    image = read_images(out)[0].astype(np.float64)  # [C, H, W]
    size_line = re.search(r"windows of (\d+)x(\d+)", err)
    wx, wy = int(size_line.group(1)), int(size_line.group(2))

    def ratio(axis, starts, window, length):
        # Gradient k: between pixel k - 1 and k along the axis; window edges at starts and ends.
        g = np.abs(np.diff(image, axis=axis)).mean(axis=(0, 2) if axis == 1 else (0, 1))  # [L-1]
        edges = sorted({s for s in starts if 0 < s < length} |
                       {s + window for s in starts if 0 < s + window < length})
        at_edges = np.array([g[e - 1] for e in edges])
        others = np.delete(g, [e - 1 for e in edges])
        return at_edges.mean() / others.mean(), len(edges)

    ry, ny = ratio(1, rows, wy, image.shape[1])
    rx, nx = ratio(2, cols, wx, image.shape[2])
    print(f"| {a.size}² | {windows} | rows: {ry:.3f} ({ny} edges) | columns: {rx:.3f} ({nx} edges) |")


def cmd_denoise(a):
    rng = np.random.default_rng(7)
    # A smooth colour field (a 60 x 40 random grid, bilinearly upsampled) plus fine detail, then
    # Gaussian noise: something like a photograph's mix of flat areas and texture.
    coarse = rng.random((3, 41, 61))
    ys = np.linspace(0, 40, a.height)
    xs = np.linspace(0, 60, a.width)
    y0 = np.minimum(ys.astype(int), 39)
    x0 = np.minimum(xs.astype(int), 59)
    fy = (ys - y0)[None, :, None]
    fx = (xs - x0)[None, None, :]
    c = coarse
    field = ((1 - fy) * (1 - fx) * c[:, y0][:, :, x0] + (1 - fy) * fx * c[:, y0][:, :, x0 + 1] +
             fy * (1 - fx) * c[:, y0 + 1][:, :, x0] + fy * fx * c[:, y0 + 1][:, :, x0 + 1])
    noisy = np.clip(field + rng.normal(0, 0.05, field.shape), 0, 1)
    path = os.path.join(SCRATCH, f"photo-{a.width}x{a.height}.png")
    samples = (noisy.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8).tobytes()
    encode_png(path, a.width, a.height, 3, 8, samples)
    args = ["denoise", "-i", path, "-o", os.path.join(SCRATCH, "photo-denoised.png")]
    if a.steps:
        args += ["--steps", str(a.steps)]
    seconds, rss, err = run_cli(a.cli, args)
    windows, est = plan_facts(err)
    steps = next((l for l in err.splitlines() if l.startswith("denoise: sigma")), "")
    print(f"| {a.width}×{a.height} | {windows} | {threads(err)} | {seconds:.0f} s | {gib(rss):.2f} GiB | "
          f"{gib(est):.2f} GiB | {steps} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cli", default=os.path.join(ROOT, "build", "tools", "cli", "gimp-diffusion-cli"))
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sizes")
    s.add_argument("--sizes", default="512,1024,2048,4096")
    s.add_argument("--precisions", default="fp32,bf16")
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--max-memory", default="")
    s = sub.add_parser("seams")
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--tile", type=int, default=256)
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("denoise")
    s.add_argument("--width", type=int, default=6000)
    s.add_argument("--height", type=int, default=4000)
    s.add_argument("--steps", type=int, default=0, help="0: the CLI's default")
    a = p.parse_args()
    os.makedirs(SCRATCH, exist_ok=True)
    {"sizes": cmd_sizes, "seams": cmd_seams, "denoise": cmd_denoise}[a.command](a)


if __name__ == "__main__":
    main()
