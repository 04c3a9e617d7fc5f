#!/usr/bin/env python3
"""Texture quality of a model: sliced Wasserstein distance on Laplacian-pyramid patches.

The measurement of Karras et al. 2018 ("Progressive Growing of GANs", section 5): build a
Laplacian pyramid of every image, cut random 7x7 patches out of each level, and compare the
distribution of those patches between two sets of images with the sliced Wasserstein
distance (SWD). A small SWD at a level means the two sets have alike local structure at
that scale. It is reported x1000 per level, finest first, as Karras did.

Usage (inside the build environment, from the repo root):

  tools/env python3 tools/quality/texture_swd.py --model MODEL --train DIR --heldout DIR \\
      --work DIR [--count N] [--size S] [--json PATH] [--cli PATH]

  --count defaults to the number of training images, so that the generated row and the floor
  compare sets of the same size with the held-out set (see "set size" below).

What is compared (every row against the held-out set unless it says otherwise):

  floor      held-out vs training textures: two sets of real textures. A model that draws
             textures "like GIMP's patterns" can't be expected to do better than this.
  generated  N textures from the model (seeds 1..N, dpmpp_2m, 20 steps, --seamless, S x S)
             vs held-out, and also vs training (just the number; no memorisation check).
  ceilings   simple baselines, one per training image, built from that image's colour
             statistics: white noise with its mean and 3x3 colour covariance (so each
             channel's mean and std match, and the colour correlations too), the same noise
             Gaussian-blurred at sigma 1, 2 and 4 px (rescaled back to the image's mean and
             covariance after blurring), and its flat mean colour. They are built from the
             training images, not from the held-out ones, on purpose: the model and the
             floor only know the training set, while a baseline matched image by image to
             the very held-out images it is compared with gets their exact colour mixture
             for free (measured: blurred noise at 2 px matched to the held-out images scores
             below the floor at three of the four levels). A usable model must be much
             closer to the floor than to these.
  reference  phase-randomised training images: each image's exact amplitude spectrum with
             random phases. Not a ceiling: it shows what "only the spectrum right" scores.
  sanity     the held-out set against itself with other random patches (the estimator's
             own noise: should be small), fixed halves of the training set and of the
             held-out set (how far apart two sets of real textures drawn alike are, at
             these set sizes), and "train, N crops": one random S x S crop from each of N
             training images (cycling through them), which is what a model that redraws
             its training textures perfectly would score with N generated images.
  band RMS   a second table: the root-mean-square of each Laplacian level (the contrast in
             that frequency band), averaged over each set's images. It says which way a
             generated set is off: too smooth, too busy, or right.

The data and how it is prepared:

  GIMP's patterns are seamless tiles of many sizes (20x20 to 256x256, some not square).
  Each image is tiled (np.pad mode='wrap') up to at least S x S and then cropped to a
  multiple of S/16 in each direction, so that every pyramid level is exactly half the
  previous one; images larger than S keep their full extent, so big patterns contribute
  all of their content. Tiling keeps the pixel scale, which is the scale the model was
  trained at (random crops of the tiles). Generated textures are S x S and seamless.
  Alpha is dropped and gray becomes RGB.

The method (numpy only):

  - Pyramid: 5-tap binomial blur [1 4 6 4 1]/16 (mirror padding at the borders, as
    Karras) and 2x subsampling, levels S, S/2, ..., 16 pixels for an S x S image. Each
    level but the last is the difference to the upsampled next level; the last is the
    low-pass image itself.
  - Patches: 4096 per set and level, so both sides of every comparison have the same
    count, spread evenly over the set's images (image i gets patches i, i+n, i+2n, ...)
    at random positions drawn from a seed made of the set's name and the level: every run
    and every row sees the same patches.
  - Normalisation: per level and per colour channel, with the mean and standard deviation
    of the union of the two sets being compared. (Karras normalised each set with its own
    statistics, which hides a wrong overall colour or contrast; with the union's, a wrong
    contrast still counts.)
  - SWD: 4 repeats of 256 random unit directions (fixed seed per level, the same for every
    row); project both sets, sort the projections, take the mean absolute difference of
    the sorted values (the 1-D Wasserstein-1 distance) and average over all directions.

Reading the numbers, and why the summary is the worst detail level, not Karras's mean:

  Measured on GIMP's patterns (147 training, 21 held-out), this SWD behaves mostly like a
  comparison of how much contrast the images have in each frequency band: random 1-D
  projections of 147-dimensional patches look nearly Gaussian, so what is left to compare
  is mostly their spread. Two consequences, both visible in the table:
  - At any single detail level, some noise baseline scores near or below the floor: the
    one blurred so that its energy falls in that band (the held-out patterns happen to
    have more mid-frequency contrast than the training ones, and the blurred noise matches
    them better there than the real training textures do). The phase-randomised
    reference, which has no structure at all, scores near the floor everywhere.
  - The coarsest level (a 16-pixel low-pass image) holds little more than colour, and
    every baseline has the training images' colours, so there every row is at the floor.
  Averaging the levels, as Karras did, therefore lets noise that is right in one or two
  bands look almost as good as real textures. No blur width is right in every band at
  once, and real textures are. So the summary figure ("worst detail") is the largest SWD
  over the detail levels (all but the coarsest): a texture must be right at every scale.
  The all-level mean is printed too, for comparison with the literature. The output then
  says where the model sits between the floor (0) and the closest simple ceiling (1) on
  that figure: (generated - floor) / (ceiling - floor). It cannot tell structure from
  spectrum: a model drawing phase-randomised textures would pass. Look at the images too.

  The held-out set is small: its two halves are about as far apart as held-out and
  training, so differences between rows smaller than the sanity rows' spread mean
  nothing. The patch sampling itself adds little (the "other patches" row).

  Set size: the patches of a set are spread over its images, so a set of few images
  covers few textures, and its SWD to the held-out set is both larger and more variable.
  Measured on GIMP's patterns at 128px (four random draws each): 32 random crops of
  training images scored 135 to 211 worst detail against the held-out set, 147 crops
  scored 147 to 150 (the floor is 149). A generated row is only comparable with the
  floor at the same set size, hence the --count default.

Generated images are cached in WORK/generated/<key>/seed-NNNN.png, where the key covers
the model path, the model files' names, sizes and modification times, and every
generation setting; an interrupted run keeps the images it finished.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CLI = os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli")

COARSEST = 16            # pixels: the smallest pyramid level (Karras used 16 too)
PATCH = 7                # patch side, as Karras
DESCRIPTORS = 4096       # patches per set and level: equal on both sides of every comparison
DIRECTIONS = 256         # random projection directions per repeat
REPEATS = 4
SAMPLER, STEPS = "dpmpp_2m", 20
BLUR_SIGMAS = (1.0, 2.0, 4.0)  # pixels: one blurred-noise ceiling per detail band
SEED = 2018              # everything random in the measurement derives from this


def fail(message):
    """One-line error and exit status 1."""
    sys.exit(f"texture_swd: error: {message}")


# ---------------------------------------------------------------- images

def load_rgb(path):
    """An image as float32 H x W x 3 in [0, 1]; alpha dropped, gray made RGB."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")  # drops alpha, expands gray and palettes
            return np.asarray(im, dtype=np.float32) / 255.0
    except OSError as e:
        fail(f"cannot read {path}: {e}")


def png_paths(folder):
    if not os.path.isdir(folder):
        fail(f"not a folder: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(".png"))
    if not names:
        fail(f"no PNG files in {folder}")
    return [os.path.join(folder, n) for n in names]


def prepare(img, size):
    """Tile a seamless texture up to at least size x size, then crop to a multiple of the
    pyramid's total subsampling, so every level is exactly half the previous one.

    Wrapping is exact because the patterns tile seamlessly."""
    step = size // COARSEST
    h, w = img.shape[:2]
    th, tw = max(h, size) // step * step, max(w, size) // step * step
    tiled = np.pad(img, ((0, max(0, th - h)), (0, max(0, tw - w)), (0, 0)), mode="wrap")
    return tiled[:th, :tw]


def quantize(img):
    """Clip to [0, 1] and round to 8 bits, like every real and generated image."""
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


# ---------------------------------------------------------------- Laplacian pyramid

KERNEL = np.array([1, 4, 6, 4, 1], dtype=np.float32) / 16.0


def blur(img):
    """Separable 5-tap binomial blur with mirror padding."""
    p = np.pad(img, ((2, 2), (0, 0), (0, 0)), mode="reflect")
    img = sum(KERNEL[k] * p[k:k + img.shape[0]] for k in range(5))
    p = np.pad(img, ((0, 0), (2, 2), (0, 0)), mode="reflect")
    return sum(KERNEL[k] * p[:, k:k + img.shape[1]] for k in range(5))


def pyr_down(img):
    return blur(img)[::2, ::2]


def pyr_up(img, shape):
    """Zero-insertion upsampling and the same blur; x4 restores the brightness."""
    up = np.zeros(shape, dtype=np.float32)
    up[::2, ::2] = img
    return blur(up) * 4.0


def laplacian_pyramid(img, levels):
    gauss = [img]
    for _ in range(levels - 1):
        gauss.append(pyr_down(gauss[-1]))
    lap = [gauss[k] - pyr_up(gauss[k + 1], gauss[k].shape) for k in range(levels - 1)]
    return lap + [gauss[-1]]


# ---------------------------------------------------------------- descriptors and SWD

def descriptors(images, name, levels):
    """Per level, DESCRIPTORS random 7x7x3 patches: an array (DESCRIPTORS, 7, 7, 3).

    The positions come from a seed made of the set's name and the level, so a set's
    patches are the same whatever else runs."""
    pyramids = [laplacian_pyramid(img, levels) for img in images]
    owner = np.arange(DESCRIPTORS) % len(images)  # every image gets an equal share
    offsets = np.arange(PATCH)
    out = []
    for level in range(levels):
        rng = np.random.default_rng([SEED, zlib.crc32(name.encode()), level])
        desc = np.empty((DESCRIPTORS, PATCH, PATCH, 3), dtype=np.float32)
        for i, pyr in enumerate(pyramids):
            where = np.nonzero(owner == i)[0]
            lev = pyr[level]
            ys = rng.integers(0, lev.shape[0] - PATCH + 1, size=len(where))
            xs = rng.integers(0, lev.shape[1] - PATCH + 1, size=len(where))
            desc[where] = lev[ys[:, None, None] + offsets[None, :, None],
                              xs[:, None, None] + offsets[None, None, :]]
        out.append(desc)
    return out


def directions(level):
    """REPEATS blocks of DIRECTIONS random unit vectors in patch space, fixed per level."""
    rng = np.random.default_rng([SEED, 7, level])
    d = rng.standard_normal((REPEATS, PATCH * PATCH * 3, DIRECTIONS)).astype(np.float32)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def swd(a, b, dirs):
    """Sliced Wasserstein-1 distance between two equal-sized descriptor sets, x1000.

    Both are normalised per colour channel with the mean and std of their union."""
    both = np.concatenate([a, b])
    mean = both.mean(axis=(0, 1, 2))
    std = both.std(axis=(0, 1, 2)) + 1e-8
    a = ((a - mean) / std).reshape(len(a), -1)
    b = ((b - mean) / std).reshape(len(b), -1)
    dists = []
    for d in dirs:
        # Sorting the projections pairs up the quantiles of the two 1-D distributions.
        pa = np.sort((a @ d).T, axis=1)
        pb = np.sort((b @ d).T, axis=1)
        dists.append(np.abs(pa - pb).mean())
    return 1000.0 * float(np.mean(dists))


# ---------------------------------------------------------------- baselines

def colour_noise(rng, shape, mean, cov, sigma=None):
    """Gaussian noise with a given per-pixel colour mean and 3x3 covariance.

    With sigma, each channel is blurred circularly first (FFT), so the noise still tiles,
    and brought back to unit variance: blurring changes the scale of the structure, not
    the colours."""
    h, w = shape
    z = rng.standard_normal((h, w, 3))
    if sigma is not None:
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        transfer = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy ** 2 + fx ** 2))
        z = np.real(np.fft.ifft2(np.fft.fft2(z, axes=(0, 1)) * transfer[..., None],
                                 axes=(0, 1)))
        z = (z - z.mean(axis=(0, 1))) / (z.std(axis=(0, 1)) + 1e-12)
    # Symmetric square root of the covariance: works for gray images (rank 1) too.
    vals, vecs = np.linalg.eigh(cov)
    root = vecs @ np.diag(np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
    return (z @ root + mean).astype(np.float32)


def phase_randomised(rng, img):
    """The image's exact amplitude spectrum with random phases, shared by the channels
    (which keeps the colour correlations). The phases of real white noise's FFT have the
    symmetry that makes the result real."""
    mean = img.mean(axis=(0, 1))
    amplitude = np.abs(np.fft.fft2(img - mean, axes=(0, 1)))
    phase = np.angle(np.fft.fft2(rng.standard_normal(img.shape[:2])))
    out = np.real(np.fft.ifft2(amplitude * np.exp(1j * phase)[..., None], axes=(0, 1)))
    return (out + mean).astype(np.float32)


def baselines(originals, size):
    """Baseline sets, each image built from one untiled original and then prepared exactly
    like the real images: it has that image's colours, size and period, and nothing else.

    Returns (ceilings, reference): dicts of name -> prepared images."""
    rng = np.random.default_rng([SEED, 1])
    ceilings = {"white noise": []}
    for s in BLUR_SIGMAS:
        ceilings[f"blurred noise {s:g}px"] = []
    ceilings["flat colour"] = []
    reference = {"phase-randomised train": []}
    for img in originals:
        pixels = img.reshape(-1, 3).astype(np.float64)
        mean, cov = pixels.mean(axis=0), np.cov(pixels, rowvar=False)
        shape = img.shape[:2]
        ceilings["white noise"].append(colour_noise(rng, shape, mean, cov))
        for s in BLUR_SIGMAS:
            ceilings[f"blurred noise {s:g}px"].append(
                colour_noise(rng, shape, mean, cov, sigma=s))
        ceilings["flat colour"].append(np.broadcast_to(mean, img.shape).astype(np.float32))
        reference["phase-randomised train"].append(phase_randomised(rng, img))

    def finish(sets):
        return {k: [prepare(quantize(i), size) for i in v] for k, v in sets.items()}
    return finish(ceilings), finish(reference)


def training_crops(train, count, size):
    """count random size x size crops, from training images 0, 1, ..., n-1, 0, 1, ...:
    a perfect copy of the training set, drawn as count generated images would be."""
    rng = np.random.default_rng([SEED, 2])
    out = []
    for i in range(count):
        img = train[i % len(train)]
        y = rng.integers(0, img.shape[0] - size + 1)
        x = rng.integers(0, img.shape[1] - size + 1)
        out.append(img[y:y + size, x:x + size])
    return out


def band_rms(images, levels):
    """Per level, the RMS of the Laplacian band about its mean, averaged over images."""
    per_image = []
    for img in images:
        pyr = laplacian_pyramid(img, levels)
        per_image.append([float(np.sqrt(((p - p.mean(axis=(0, 1))) ** 2).mean())) for p in pyr])
    return [float(v) for v in np.mean(per_image, axis=0)]


# ---------------------------------------------------------------- generation

def model_key(model, size):
    """A cache key covering the model files (names, sizes, modification times) and every
    generation setting, so a retrained or replaced model never reuses old images."""
    if os.path.isdir(model):
        files = sorted(os.path.join(model, n) for n in os.listdir(model)
                       if os.path.isfile(os.path.join(model, n)))
    else:
        files = [model]
    stats = [(os.path.basename(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
    settings = [os.path.abspath(model), stats, size, SAMPLER, STEPS, "seamless"]
    return hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]


def generate(cli, model, work, count, size):
    """Seeds 1..count, one CLI call each, reusing images already in the cache folder."""
    folder = os.path.join(work, "generated", model_key(model, size))
    os.makedirs(folder, exist_ok=True)
    paths = []
    for seed in range(1, count + 1):
        path = os.path.join(folder, f"seed-{seed:04d}.png")
        paths.append(path)
        if os.path.exists(path):
            continue
        tmp = path + ".part.png"  # renamed when complete: no half-written cache entries
        cmd = [cli, "generate", "--model", model, "--width", str(size), "--height", str(size),
               "--sampler", SAMPLER, "--steps", str(STEPS), "--seed", str(seed),
               "--seamless", "-o", tmp]
        t = time.time()
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            fail(f"gimp-diffusion-cli generate failed for seed {seed} "
                 f"(exit {r.returncode}): {last}")
        os.replace(tmp, path)
        print(f"generated seed {seed}/{count} in {time.time() - t:.1f} s", file=sys.stderr)
    return paths


# ---------------------------------------------------------------- report

def rms_table(rms, level_names):
    head = ["set"] + level_names
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, vals in rms.items():
        lines.append("| " + " | ".join([name] + [f"{v:.4f}" for v in vals]) + " |")
    ratio = [g / t for g, t in zip(rms["generated"], rms["train"])]
    lines.append("| " + " | ".join(["generated / train"] + [f"{r:.2f}" for r in ratio]) + " |")
    return "\n".join(lines)


def table(rows, level_names):
    head = ["row", "set", "vs"] + level_names + ["worst detail", "mean (all)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["kind"], r["set"], r["vs"]] + [f"{v:.1f}" for v in r["levels"]]
        cells += [f"**{r['worst_detail']:.1f}**", f"{r['mean']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder or checkpoint")
    ap.add_argument("--train", required=True, help="folder of training PNGs")
    ap.add_argument("--heldout", required=True, help="folder of held-out PNGs")
    ap.add_argument("--work", required=True, help="folder for generated images (cache)")
    ap.add_argument("--count", type=int, default=None,
                    help="generated textures, seeds 1..N (default: as many as training images)")
    ap.add_argument("--size", type=int, default=128,
                    help="generation size and minimum tiling size: 16 x a power of 2, >= 32")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--cli", default=DEFAULT_CLI, help="gimp-diffusion-cli binary")
    args = ap.parse_args()

    levels = 1
    while COARSEST << levels <= args.size:
        levels += 1
    if args.size < 2 * COARSEST or COARSEST << (levels - 1) != args.size:
        fail(f"--size must be 16 times a power of 2, at least 32 (got {args.size})")
    if not os.path.exists(args.model):
        fail(f"no model at {args.model}")
    if not (os.path.isfile(args.cli) and os.access(args.cli, os.X_OK)):
        fail(f"gimp-diffusion-cli not found or not executable: {args.cli}")
    train_paths, heldout_paths = png_paths(args.train), png_paths(args.heldout)
    if len(heldout_paths) < 2 or len(train_paths) < 2:
        fail("need at least 2 training and 2 held-out PNGs (the sanity rows split them)")
    if args.count is None:
        args.count = len(train_paths)
    if args.count < 2:
        fail(f"--count must be at least 2 (got {args.count})")

    start = time.time()
    gen_paths = generate(args.cli, args.model, args.work, args.count, args.size)
    gen_seconds = time.time() - start

    train_orig = [load_rgb(p) for p in train_paths]
    train = [prepare(i, args.size) for i in train_orig]
    heldout = [prepare(load_rgb(p), args.size) for p in heldout_paths]
    generated = [load_rgb(p) for p in gen_paths]
    for p, g in zip(gen_paths, generated):
        if g.shape[:2] != (args.size, args.size):
            fail(f"{p} is {g.shape[1]}x{g.shape[0]}, expected {args.size}x{args.size}")

    # Fixed halves for the sanity rows: even and odd positions in the sorted file lists.
    crops_name = f"train, {args.count} crops"
    sets = {"held-out": heldout, "train": train, "generated": generated,
            "train half A": train[0::2], "train half B": train[1::2],
            "held-out half A": heldout[0::2], "held-out half B": heldout[1::2],
            crops_name: training_crops(train, args.count, args.size)}
    ceilings, reference = baselines(train_orig, args.size)
    sets.update(ceilings)
    sets.update(reference)
    desc = {name: descriptors(images, name, levels) for name, images in sets.items()}
    # The same images under another name: other random patches.
    desc["held-out, other patches"] = descriptors(heldout, "held-out, other patches", levels)
    dirs = [directions(level) for level in range(levels)]

    def row(kind, a, b):
        vals = [swd(desc[a][l], desc[b][l], dirs[l]) for l in range(levels)]
        return {"kind": kind, "set": a, "vs": b, "levels": vals,
                "worst_detail": max(vals[:-1]), "mean": float(np.mean(vals))}

    rows = [row("floor", "train", "held-out"),
            row("generated", "generated", "held-out"),
            row("generated", "generated", "train")]
    rows += [row("ceiling", k, "held-out") for k in ceilings]
    rows += [row("reference", k, "held-out") for k in reference]
    rows += [row("sanity", "held-out, other patches", "held-out"),
             row("sanity", "train half A", "train half B"),
             row("sanity", "held-out half A", "held-out half B"),
             row("sanity", crops_name, "held-out")]
    rms = {name: band_rms(sets[name], levels) for name in ("held-out", "train", "generated")}

    floor, gen = rows[0], rows[1]
    closest = min((r for r in rows if r["kind"] == "ceiling"), key=lambda r: r["worst_detail"])
    position = ((gen["worst_detail"] - floor["worst_detail"])
                / (closest["worst_detail"] - floor["worst_detail"]))
    # Per level, the baselines that come within 25% of the floor or below it: where the
    # metric can't tell them from real textures (see the docstring).
    near_floor = {}
    level_names = [f"{args.size >> l}px" for l in range(levels)]
    for l, name in enumerate(level_names):
        near_floor[name] = [r["set"] for r in rows if r["kind"] in ("ceiling", "reference")
                            and r["levels"][l] < 1.25 * floor["levels"][l]]

    print(f"# Texture SWD x1000 (Karras et al. 2018): {args.model}\n")
    print(f"{len(train)} training, {len(heldout)} held-out, {len(generated)} generated "
          f"textures ({SAMPLER}, {STEPS} steps, --seamless, seeds 1..{args.count}, "
          f"{args.size}x{args.size}). Real textures tiled (wrap) to at least "
          f"{args.size}x{args.size}, larger ones kept whole; ceilings and reference built "
          f"from each training image's colour statistics. {DESCRIPTORS} 7x7 patches per "
          f"set and level, normalised per channel over the union of the two sets "
          f"compared; {REPEATS}x{DIRECTIONS} directions. Columns: Laplacian levels, finest "
          f"first (the size the {args.size}px image has there); worst detail = the largest "
          f"of all but the coarsest (the summary); mean (all) = Karras's average.\n")
    print(table(rows, level_names))
    print(f"\nBand RMS (contrast per Laplacian level, mean over each set's images; the "
          f"coarsest level's is the colour spread within an image):\n")
    print(rms_table(rms, level_names))
    print(f"\nSummary (worst detail level): floor {floor['worst_detail']:.1f}, generated "
          f"{gen['worst_detail']:.1f}, closest simple ceiling {closest['worst_detail']:.1f} "
          f"({closest['set']}). Position between floor (0) and ceiling (1): "
          f"{position:.2f}.")
    print("\nWhy not the mean of all levels: at each single level some structureless "
          "baseline is within 25% of the floor or below it, so an average lets noise that "
          "is right in one band pass for texture; no baseline is right in every band.")
    for name, near in near_floor.items():
        print(f"- {name}: {', '.join(near) if near else 'none'}")
    print("The coarsest level is mostly colour, which every baseline copies from the "
          "training images. Rows closer together than the sanity rows' spread are not "
          "different. SWD here compares band contrast more than structure: look at the "
          "images too.")
    print(f"\nGeneration {gen_seconds:.0f} s (cached images reused), total "
          f"{time.time() - start:.0f} s.")

    if args.json:
        result = {"model": os.path.abspath(args.model), "size": args.size,
                  "count": args.count, "sampler": SAMPLER, "steps": STEPS,
                  "levels": level_names, "summary": "worst_detail",
                  "descriptors": DESCRIPTORS, "directions": [REPEATS, DIRECTIONS],
                  "normalisation": "per level and colour channel, union of both sets",
                  "tiling": f"wrap to at least {args.size}x{args.size}, larger kept whole",
                  "rows": rows, "closest_ceiling": closest["set"], "position": position,
                  "near_floor": near_floor, "band_rms": rms, "generated_images": gen_paths}
        try:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        except OSError as e:
            fail(f"cannot write {args.json}: {e}")


if __name__ == "__main__":
    main()
