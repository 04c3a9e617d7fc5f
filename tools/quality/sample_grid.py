#!/usr/bin/env python3
"""A grid of generated textures for the README and the model card.

    tools/env python3 tools/quality/sample_grid.py --model models/checkpoints/gimp-patterns \
        --out docs/samples-gimp-patterns.png [--seeds 1-8] [--size 192] [--columns 4]

Each cell is `gimp-diffusion-cli generate --seamless --sampler dpmpp_2m --steps 20 --seed S`, so
any cell can be remade from its seed (the seeds run left to right, top to bottom). The cells
are written to build-data/sample-grid-cells/ (git-ignored) and reused when they already exist
for the same model file, size and seed.
"""
import argparse
import os
import subprocess
import sys

from PIL import Image

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLI = os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli")


def seed_list(text):
    seeds = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="1-8")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--columns", type=int, default=4)
    ap.add_argument("--gap", type=int, default=4)
    args = ap.parse_args()
    try:
        seeds = seed_list(args.seeds)
    except ValueError:
        sys.exit("--seeds must look like 1-8 or 1,5,9, not %r" % args.seeds)
    if not os.path.exists(args.model):
        sys.exit("%s: no such model" % args.model)
    weights = os.path.join(args.model, "diffusion_pytorch_model.safetensors")
    stamp = "%d" % int(os.stat(weights if os.path.exists(weights) else args.model).st_mtime)
    cells_dir = os.path.join(REPO, "build-data", "sample-grid-cells")
    os.makedirs(cells_dir, exist_ok=True)

    cells = []
    for seed in seeds:
        path = os.path.join(cells_dir, "%s-%d-%d.png" % (stamp, args.size, seed))
        if not os.path.exists(path):
            cmd = [CLI, "generate", "--model", args.model, "--width", str(args.size),
                   "--height", str(args.size), "--seamless", "--sampler", "dpmpp_2m", "--steps", "20",
                   "--seed", str(seed), "-o", path]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit("generate failed for seed %d: %s" % (seed, p.stderr.strip().splitlines()[-1:]))
        cells.append(Image.open(path).convert("RGB"))

    cols = min(args.columns, len(cells))
    rows = (len(cells) + cols - 1) // cols
    g, s = args.gap, args.size
    grid = Image.new("RGB", (cols * s + (cols + 1) * g, rows * s + (rows + 1) * g), (255, 255, 255))
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        grid.paste(cell, (g + c * (s + g), g + r * (s + g)))
    grid.save(args.out)
    print("wrote %s (%d textures, seeds %s)" % (args.out, len(cells), args.seeds))


if __name__ == "__main__":
    main()
