#!/usr/bin/env python3
"""Quality of Fill Selection (inpaint) and Make Seamless against plain baselines.

Usage (inside the build environment, from the repo root):

  tools/env python3 tools/quality/inpaint_quality.py --images DIR [--images DIR ...] \\
      --work DIR [--size 64] [--crops-per-image 1] [--resample 1,3,5] [--json PATH] \\
      [--grid PNG] [--cli PATH] [--model PATH] [--gimp gimp-console-3.0]

Material: every PNG/JPEG in each --images folder. Images smaller than 2 x size (GIMP's
seamless patterns) are tiled (np.pad mode='wrap') up to 2 x size; larger ones (photographs)
are first scaled down so that their shorter side is 4 x size (materials at a scale the model
was trained at), and --crops-per-image crops of size x size are cut on a diagonal. Crops are
taken at an offset, so they do not tile by construction (the input's own seam ratio is in the
table).

Fill Selection: a centred square hole of 10% and of 25% of the crop's area.
  ours r=N    gimp-diffusion-cli inpaint --resample N (defaults otherwise: ddpm, 25 steps,
              the best-fitting class, context margin: the whole crop at these sizes)
  img2img     the hole filled with the mean colour of the rest, then gimp-diffusion-cli img2img
              of the whole crop at strength 0.8 (dpmpp_2m, 20 steps, the plug-in's img2img
              defaults), pasted back into the hole only: what a user without inpainting does
  mean fill   the hole filled with the mean colour of the rest (no model)
  Metrics over the hole only: PSNR against the original pixels (mean over crops), and SWD x1000
  (tools/quality/texture_swd.py's sliced Wasserstein distance) between the 7x7 patches of the
  result and of the original that lie wholly inside the hole, at the finest two levels of the
  Laplacian pyramid, pooled over crops (lower is better for both; PSNR higher).

Make Seamless: gimp-diffusion-cli make-seamless (band size / 4, resample 3) against GIMP's
Filters > Map > Tile Seamless (gegl:tile-seamless, in gimp-console through
tools/quality/gegl_denoise_batch.py). Metrics: the seam ratio, mean |difference| across the wrap
(last column to first, last row to first) over the mean |difference| between neighbouring pixels
inside (1.0: the wrap is like any other neighbour; the input's own is shown), and SWD x1000 of the
whole result against the input (all pyramid levels down to 16 pixels, averaged): how much the
texture itself changed.

Every run uses seed 1 and one LibTorch thread; timings are wall-clock for the whole batch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import texture_swd as ts  # noqa: E402
sys.path.insert(0, os.path.dirname(HERE))
from image_tensors import read_images, write_images  # noqa: E402

DEFAULT_CLI = os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli")
GEGL_SCRIPT = os.path.join(HERE, "gegl_denoise_batch.py")
HOLES = (0.10, 0.25)
IMG2IMG_STRENGTH = 0.8


def log(message):
    print(message, file=sys.stderr, flush=True)


def fail(message):
    sys.exit("inpaint_quality: error: " + message)


# ---- material -----------------------------------------------------------------------------------

def load_any(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def crops_of(img, size, count):
    """count size x size crops of an image, on a diagonal, never tiling by construction."""
    h, w = img.shape[:2]
    if min(h, w) < 2 * size:  # a seamless pattern: tile it, crop at an offset
        img = np.pad(img, ((0, max(0, 2 * size - h)), (0, max(0, 2 * size - w)), (0, 0)), mode="wrap")
    else:  # a photograph: the shorter side to 4 x size
        scale = 4 * size / min(h, w)
        im = Image.fromarray(np.uint8(np.round(img * 255))).resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.LANCZOS)
        img = np.asarray(im, dtype=np.float32) / 255.0
    h, w = img.shape[:2]
    out = []
    for k in range(count):
        f = (k + 1) / (count + 1)
        y = min(h - size, int(f * (h - size)) + size // 3 if count == 1 else int(f * (h - size)))
        x = min(w - size, int(f * (w - size)) + size // 5 if count == 1 else int(f * (w - size)))
        out.append(ts.quantize(img[y:y + size, x:x + size]))
    return out


def material(folders, size, per_image):
    crops, names = [], []
    for folder in folders:
        files = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg")))
        if not files:
            fail("no PNG or JPEG files in " + folder)
        for n in files:
            for k, c in enumerate(crops_of(load_any(os.path.join(folder, n)), size, per_image)):
                crops.append(c)
                names.append("%s/%s#%d" % (os.path.basename(folder.rstrip("/")), n, k))
    return np.stack(crops), names


# ---- CLI ----------------------------------------------------------------------------------------

def cli(args, command, options, images, mask=None):
    """Runs a CLI command on a batch [N, H, W, 3]; returns ([N, H, W, 3] quantised, seconds)."""
    os.makedirs(args.work, exist_ok=True)
    inp = os.path.join(args.work, "in.safetensors")
    out = os.path.join(args.work, "out.safetensors")
    write_images(inp, images.transpose(0, 3, 1, 2))
    cmd = [args.cli, command, "--model", args.model, "-i", inp, "-o", out, "--seed", "1",
           "--threads", "1"] + options
    if mask is not None:
        mpath = os.path.join(args.work, "mask.safetensors")
        write_images(mpath, mask[:, None].astype(np.float32))
        cmd += ["--mask", mpath]
    start = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if p.returncode != 0:
        fail("%s failed: %s" % (" ".join(cmd), (p.stderr.strip().splitlines() or ["?"])[-1]))
    return ts.quantize(read_images(out).transpose(0, 2, 3, 1)), time.time() - start


def gegl_tile_seamless(args, images):
    folder = os.path.join(args.work, "gegl")
    os.makedirs(folder, exist_ok=True)
    n, h, w, _ = images.shape
    jobs = []
    for i, img in enumerate(images):
        raw = os.path.join(folder, "%d.rgb" % i)
        np.uint8(np.round(img * 255)).tofile(raw)
        jobs.append({"input": raw, "width": w, "height": h, "output": os.path.join(folder, "%d.out.rgb" % i),
                     "filters": [{"op": "gegl:tile-seamless", "props": {}}]})
    done = os.path.join(folder, "done.json")
    if os.path.exists(done):
        os.remove(done)
    for j in jobs:
        if os.path.exists(j["output"]):
            os.remove(j["output"])
    job_file = os.path.join(folder, "jobs.json")
    with open(job_file, "w") as f:
        json.dump({"done": done, "jobs": jobs}, f)
    profile = os.path.join(args.work, "gimp-profile")
    os.makedirs(profile, exist_ok=True)
    env = dict(os.environ, GIMP3_DIRECTORY=profile, GIO_USE_VFS="local", GSETTINGS_BACKEND="memory",
               NO_AT_BRIDGE="1")
    script = "JOBS = %r; exec(open(%r).read())" % (job_file, GEGL_SCRIPT)
    start = time.time()
    subprocess.run([args.gimp, "-i", "-n", "--no-splash", "--quit", "--batch-interpreter=python-fu-eval",
                    "-b", script], capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.time() - start
    try:
        report = json.load(open(done))
    except (OSError, ValueError):
        fail("the GIMP batch run wrote no report")
    if not report.get("ok"):
        fail("GIMP batch run failed: %s" % report.get("error"))
    out = np.stack([np.fromfile(j["output"], dtype=np.uint8).reshape(h, w, 3) for j in jobs])
    return out.astype(np.float32) / 255.0, seconds


# ---- metrics ------------------------------------------------------------------------------------

def hole_mask(size, fraction):
    side = int(round(size * np.sqrt(fraction)))
    m = np.zeros((size, size), bool)
    a = (size - side) // 2
    m[a:a + side, a:a + side] = True
    return m


def psnr(result, original, mask):
    mse = ((result[:, mask] - original[:, mask]) ** 2).mean(axis=(1, 2))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def hole_patches(images, mask, level):
    """7x7 patches of Laplacian level `level` lying wholly inside the hole, pooled: [P, 7, 7, 3]."""
    p = ts.PATCH
    m = mask[::2 ** level, ::2 ** level] if level else mask
    ys, xs = np.nonzero(m)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    out = []
    for img in images:
        lev = ts.laplacian_pyramid(img, level + 2)[level]
        for y in range(y0, y1 - p + 1):
            for x in range(x0, x1 - p + 1):
                out.append(lev[y:y + p, x:x + p])
    return np.stack(out)


def hole_swd(result, original, mask):
    values = []
    for level in (0, 1):
        a, b = hole_patches(result, mask, level), hole_patches(original, mask, level)
        values.append(ts.swd(a, b, ts.directions(level)))
    return float(np.mean(values))


def seam_ratio(images):
    wrap = (np.abs(images[:, :, 0] - images[:, :, -1]).mean() + np.abs(images[:, 0] - images[:, -1]).mean()) / 2
    inner = (np.abs(np.diff(images, axis=2)).mean() + np.abs(np.diff(images, axis=1)).mean()) / 2
    return float(wrap / inner)


def whole_swd(result, original):
    levels = int(np.log2(result.shape[1] // ts.COARSEST)) + 1
    da = [ts.descriptors(list(result), "result", levels)]
    db = [ts.descriptors(list(original), "input", levels)]
    return float(np.mean([ts.swd(da[0][k], db[0][k], ts.directions(k)) for k in range(levels)]))


# ---- main ---------------------------------------------------------------------------------------

def grid(path, rows):
    """rows: lists of HxWx3 images; one image per cell with a 4-pixel gap."""
    h = max(img.shape[0] for row in rows for img in row)
    w = max(img.shape[1] for row in rows for img in row)
    cols = max(len(r) for r in rows)
    canvas = np.ones((len(rows) * (h + 4) + 4, cols * (w + 4) + 4, 3), np.float32)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = 4 + i * (h + 4), 4 + j * (w + 4)
            canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    Image.fromarray(np.uint8(np.round(canvas * 255))).resize(
        (canvas.shape[1] * 2, canvas.shape[0] * 2), Image.NEAREST).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", action="append", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--crops-per-image", type=int, default=1)
    ap.add_argument("--resample", default="1,3")
    ap.add_argument("--json")
    ap.add_argument("--grid")
    ap.add_argument("--cli", default=DEFAULT_CLI)
    ap.add_argument("--model", default=os.path.join(REPO, "models", "checkpoints", "gimp-patterns"))
    ap.add_argument("--gimp", default="gimp-console-3.0")
    ap.add_argument("--no-gegl", action="store_true")
    args = ap.parse_args()
    S = args.size
    originals, names = material(args.images, S, args.crops_per_image)
    log("%d crops of %dx%d" % (len(originals), S, S))
    report = {"crops": names, "size": S, "fill": {}, "seamless": {}}
    examples = {}
    for fraction in HOLES:
        mask = hole_mask(S, fraction)
        key = "%d%%" % round(100 * fraction)
        rows = report["fill"][key] = {}
        mean = np.stack([o[~mask].mean(axis=0) for o in originals])  # [N, 3]
        holed = originals.copy()
        holed[:, mask] = mean[:, None]
        results = {"mean fill": (holed, 0.0)}
        for r in [int(v) for v in args.resample.split(",") if v]:
            results["ours r=%d" % r] = cli(args, "inpaint", ["--resample", str(r)], originals,
                                           np.broadcast_to(mask, originals.shape[:3]))
        i2i, seconds = cli(args, "img2img", ["--strength", str(IMG2IMG_STRENGTH), "--sampler", "dpmpp_2m"],
                           holed)
        pasted = originals.copy()
        pasted[:, mask] = i2i[:, mask]
        results["img2img %.1f" % IMG2IMG_STRENGTH] = (pasted, seconds)
        for label, (res, seconds) in results.items():
            rows[label] = {"psnr": psnr(res, originals, mask), "swd": hole_swd(res, originals, mask),
                           "seconds": round(seconds, 1)}
            log("fill %s %-12s PSNR %.2f dB  SWD %.1f  (%.0f s)" % (key, label, rows[label]["psnr"],
                                                                 rows[label]["swd"], seconds))
        examples[key] = (holed, results)
    band = S // 4
    ours, seconds = cli(args, "make-seamless", ["--band", str(band)], originals)
    seam = {"input": (originals, 0.0), "ours (band %d)" % band: (ours, seconds)}
    if not args.no_gegl:
        seam["gegl:tile-seamless"] = gegl_tile_seamless(args, originals)
    for label, (res, seconds) in seam.items():
        report["seamless"][label] = {"seam_ratio": seam_ratio(res), "swd": whole_swd(res, originals),
                                     "seconds": round(seconds, 1)}
        log("seamless %-20s seam ratio %.2f  SWD %.1f" % (label, report["seamless"][label]["seam_ratio"],
                                                        report["seamless"][label]["swd"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.grid:
        holed, results = examples["25%"]
        best = sorted(k for k in results if k.startswith("ours"))[-1]
        i2i = [k for k in results if k.startswith("img2img")][0]
        picks = np.linspace(0, len(originals) - 1, min(4, len(originals))).astype(int)
        rows = [[originals[i], holed[i], results[best][0][i], results[i2i][0][i]] for i in picks]
        for i in picks[:2]:
            rows.append([np.tile(seam[k][0][i], (2, 2, 1)) for k in seam])
        grid(args.grid, rows)


if __name__ == "__main__":
    main()
