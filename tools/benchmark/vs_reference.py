#!/usr/bin/env python3
"""Our CLI against the reference implementations' own Python loops, on the same LibTorch.

A benchmark, not a test: it prints a markdown table for docs/benchmarks.md and asserts nothing.
Each run is a fresh process. Four sides: ours is `gimp-diffusion-cli generate` at --precision
fp32 (the reference's arithmetic) and at --precision auto (as shipped: bf16 on CPUs with native
bf16, docs/numerics.md); the reference is tools/benchmark/reference_loops.py (diffusers' loop, or
denoising-diffusion-pytorch's GaussianDiffusion.sample) at its defaults and at its best settings
(channels-last weights, inference_mode, the malloc tuning of core/memory_policy.h, OpenBLAS on one
thread as core/thread_policy.h keeps ours, and the thread count that ran fastest for it on a short
calibration run of the row). The four alternate, the
order rotating every repetition, so that machine load hits all of them alike.

Rows (--rows, comma-separated):
  patterns512    the bundled model at 512x512, dpmpp_2m 20 steps, class 3, its own guidance
                 (2.5 below timestep 300; the reference gets the same guidance on its loop)
  cifar32-b1     google/ddpm-cifar10-32's architecture (tools/benchmark/configs, random
  cifar32-b16    weights written by diffusers' save_pretrained), 32x32, dpmpp_2m 20 steps,
                 batch 1 and 16
  lucidrains128  denoising-diffusion-pytorch Unet(dim=64, dim_mults=(1, 2, 4, 8)), random
                 weights in a Trainer-format checkpoint, 128x128, DDIM 50 steps (ours: --sampler
                 ddim --steps 50 --weights model; the reference: GaussianDiffusion(...,
                 sampling_timesteps=50).sample)

Per side: the sampling loop's time (the reference times its own loop; ours from the CLI's last
progress line), the process's wall time (start-up, imports, loading included), min and median
over the repetitions, the peak RSS (wait4), and the largest absolute difference between the
outputs (float32 images in [0, 1], same seed and initial noise). Speed is the reference at its
best over the side, medians: above 1 the side is faster than the reference's best.

Setup (the reference sources are not part of this repository; nothing is downloaded here):
  - diffusers 58eb52c0 in build/ref/diffusers and denoising-diffusion-pytorch faed4db2 in
    build/ref/ddpm (the commits of tests/data's fixtures), e.g.
    git --git-dir=DIFFUSERS.git archive 58eb52c0 | tar -x -C build/ref/diffusers
  - Debian 13's python3-safetensors, python3-einops and python3-tqdm unpacked into
    build/ref/sysroot (inside tools/env: apt-get download ...; dpkg-deb -x PKG build/ref/sysroot)
  - offline stand-ins, written by this script into build/ref/stubs: tools/make_odd_fixtures.py's
    (huggingface_hub, httpx, torchvision, accelerate, scipy, pytorch_fid) and ema_pytorch (the
    Trainer's EMA class, which sampling never uses). None computes anything that is measured.

  tools/env python3 tools/benchmark/vs_reference.py [--rows ...] [--repeats 3] [--threads 0]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "build", "ref")
WORK = os.path.join(ROOT, "build", "vs-reference")
CLI = os.path.join(ROOT, "build", "tools", "cli", "gimp-diffusion-cli")
CHILD = os.path.join(ROOT, "tools", "benchmark", "reference_loops.py")
BUNDLED = os.path.join(ROOT, "models", "checkpoints", "gimp-patterns")
CIFAR_CONFIG = os.path.join(ROOT, "tools", "benchmark", "configs", "ddpm-cifar10-32.json")
# google/ddpm-cifar10-32's scheduler_config.json.
CIFAR_SCHEDULER = {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
                   "num_train_timesteps": 1000, "clip_sample": True, "variance_type": "fixed_large"}
LUCIDRAINS_UNET = {"dim": 64, "dim_mults": [1, 2, 4, 8]}
LUCIDRAINS_DIFFUSION = {"timesteps": 1000}  # the package's defaults otherwise (pred_v, sigmoid)

sys.path.insert(0, os.path.join(ROOT, "tools"))
from image_tensors import read_images  # noqa: E402

SIDES = ("ours fp32", "ours auto", "reference best", "reference default")


def fail(message):
    sys.exit(f"vs_reference: error: {message}")


def site_dirs():
    return [os.path.join(REF, "stubs"),
            os.path.join(REF, "sysroot", "usr", "lib", "python3", "dist-packages"),
            os.path.join(REF, "diffusers", "src"), os.path.join(REF, "ddpm")]


def write_stubs():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_odd_fixtures  # noqa: E402  (its stand-ins for the hub, torchvision, ...)
    stubs = os.path.join(REF, "stubs")
    make_odd_fixtures.write_stubs(stubs)
    os.makedirs(os.path.join(stubs, "ema_pytorch"), exist_ok=True)
    with open(os.path.join(stubs, "ema_pytorch", "__init__.py"), "w") as f:
        f.write("class EMA:\n    def __init__(self, *args, **kwargs):\n"
                "        raise RuntimeError('ema_pytorch stand-in: the Trainer does not run here')\n")


def check_setup():
    for path, what in ((os.path.join(REF, "diffusers", "src", "diffusers"), "diffusers sources"),
                       (os.path.join(REF, "ddpm", "denoising_diffusion_pytorch"),
                        "denoising-diffusion-pytorch sources")):
        if not os.path.isdir(path):
            fail(f"no {what} at {path} (see the setup notes in this script's docstring)")
    if not os.access(CLI, os.X_OK):
        fail(f"no CLI at {CLI}: build first")
    write_stubs()
    sys.path[:0] = site_dirs()


# ---------------------------------------------------------------- models

def cifar_model():
    """A diffusers folder with google/ddpm-cifar10-32's architecture and random weights."""
    folder = os.path.join(WORK, "ddpm-cifar10-32")
    if os.path.exists(os.path.join(folder, "diffusion_pytorch_model.safetensors")):
        return folder
    import torch
    import diffusers
    with open(CIFAR_CONFIG) as f:
        config = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    torch.manual_seed(0)
    diffusers.UNet2DModel(**config).save_pretrained(folder, safe_serialization=True)
    diffusers.DDPMScheduler(**CIFAR_SCHEDULER).save_config(folder)
    return folder


def lucidrains_model():
    """A Trainer-format checkpoint of Unet(dim=64, dim_mults=(1, 2, 4, 8)), random weights,
    and its constructor arguments beside it (CKPT.json) for the reference side."""
    path = os.path.join(WORK, "lucidrains-64", "model-1.pt")
    if os.path.exists(path):
        return path
    import torch
    from denoising_diffusion_pytorch.denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from denoising_diffusion_pytorch.version import __version__
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(Unet(**LUCIDRAINS_UNET), image_size=128, **LUCIDRAINS_DIFFUSION)
    # What Trainer.save writes, without the optimizer (sampling never reads it) and without EMA
    # weights (ours loads the online ones: --weights model).
    torch.save({"step": 0, "model": diffusion.state_dict(), "ema": None, "scaler": None,
                "version": __version__}, path)
    with open(path + ".json", "w") as f:
        json.dump({"unet": LUCIDRAINS_UNET, "diffusion": LUCIDRAINS_DIFFUSION}, f)
    return path


def rows(names):
    guidance = json.load(open(os.path.join(BUNDLED, "guidance.json")))["generate"]
    out = []
    for name in names:
        if name == "patterns512":
            out.append(dict(name="bundled model, 512², dpmpp_2m 20, guided", kind="diffusers",
                            model=BUNDLED, size=512, batch=1, sampler="dpmpp_2m", steps=20,
                            ours=["--class", "3"],
                            ref=["--class", "3", "--guidance", str(guidance["scale"]),
                                 "--guidance-below", str(guidance["below_timestep"])]))
        elif name in ("cifar32-b1", "cifar32-b16"):
            batch = int(name.split("-b")[1])
            out.append(dict(name=f"ddpm-cifar10-32 arch., 32², batch {batch}, dpmpp_2m 20",
                            kind="diffusers", model=cifar_model(), size=32, batch=batch,
                            sampler="dpmpp_2m", steps=20, ours=[], ref=[]))
        elif name == "lucidrains128":
            out.append(dict(name="lucidrains Unet(64, (1,2,4,8)), 128², DDIM 50",
                            kind="lucidrains", model=lucidrains_model(), size=128, batch=1,
                            sampler="ddim", steps=50, ours=["--weights", "model"], ref=[]))
        else:
            fail(f"unknown row '{name}'")
    return out


# ---------------------------------------------------------------- runs

def ours_loop_seconds(err):
    runs = re.findall(r"(\d+)/(\d+), ([\d.]+) \w+s/s", err)
    return int(runs[-1][0]) / float(runs[-1][2]) if runs and float(runs[-1][2]) > 0 else float("nan")


def ours_threads(err):
    m = re.search(r": (\d+) threads? \(", err)
    return int(m.group(1)) if m else 0


def reference_env(settings):
    """At its best the reference gets our BLAS setting too: OpenBLAS on one thread (read when
    the library loads, so set in the environment; core/thread_policy.h says why)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site_dirs()))
    if settings == "best":
        env["OPENBLAS_NUM_THREADS"] = "1"
    return env


class Runner:
    def __init__(self, threads):
        self.threads = threads  # 0: ours automatic, the reference best its fastest count
        self.best_threads = threads or 1

    def reference_cmd(self, row, settings, threads, out, steps=None):
        return [sys.executable, CHILD, row["kind"], "--model", row["model"],
                "--size", str(row["size"]), "--batch", str(row["batch"]),
                "--steps", str(steps or row["steps"]), "--seed", "1", "--settings", settings,
                "--threads", str(threads), "-o", out] + row["ref"]

    def calibrate(self, row):
        """The reference's best thread count for this row: each count from 1 to the CPUs, on a
        short run (a fifth of the steps, at least 3), the fastest loop per step wins. On small
        images more threads can be several times slower (docs/benchmarks.md, thread policy)."""
        if self.threads:
            return
        env = reference_env("best")
        out = os.path.join(WORK, "calibrate.safetensors")
        steps = max(3, row["steps"] // 5)
        per_step = {}
        for threads in range(1, (os.cpu_count() or 1) + 1):
            _, _, stdout, _ = timed(self.reference_cmd(row, "best", threads, out, steps), env)
            per_step[threads] = json.loads(stdout.strip().splitlines()[-1])["loop_s"] / steps
        self.best_threads = min(per_step, key=per_step.get)
        print(f"  {row['name']}: reference best threads: " +
              ", ".join(f"{k}: {v:.3f} s/step" for k, v in per_step.items()) +
              f" -> {self.best_threads}", file=sys.stderr, flush=True)

    def run(self, row, side, out):
        if side.startswith("ours"):
            precision = side.split()[1]  # fp32: the reference's arithmetic; auto: as shipped
            cmd = [CLI, "generate", "--model", row["model"], "--width", str(row["size"]),
                   "--height", str(row["size"]), "--batch", str(row["batch"]),
                   "--sampler", row["sampler"], "--steps", str(row["steps"]), "--seed", "1",
                   "--precision", precision, "-o", out] + row["ours"]
            if self.threads:
                cmd += ["--threads", str(self.threads)]
            env = None
        else:
            settings = "best" if side == "reference best" else "default"
            cmd = self.reference_cmd(row, settings, self.best_threads, out)
            env = reference_env(settings)
        load = os.getloadavg()[0]
        wall, rss, stdout, err = timed(cmd, env)
        if side.startswith("ours"):
            loop, threads = ours_loop_seconds(err), ours_threads(err)
        else:
            info = json.loads(stdout.strip().splitlines()[-1])
            loop, threads = info["loop_s"], info["threads"]
        return {"wall": wall, "loop": loop, "rss": rss, "threads": threads, "load": load}


def timed(cmd, env):
    """Wall seconds, peak RSS in bytes (wait4), stdout and stderr of one process."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.stdout.read(), proc.stderr.read()  # small: progress lines and one JSON line
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        fail(f"exit {code}: {' '.join(cmd)}\n{err.decode()[-3000:]}")
    return wall, usage.ru_maxrss * 1024, out.decode(), err.decode()


def measure(row, repeats, runner):
    results = {side: [] for side in SIDES}
    images = {}
    runner.calibrate(row)
    for rep in range(repeats):
        order = SIDES[rep % len(SIDES):] + SIDES[:rep % len(SIDES)]
        for side in order:
            out = os.path.join(WORK, f"out-{side.replace(' ', '-')}.safetensors")
            r = runner.run(row, side, out)
            results[side].append(r)
            images[side] = read_images(out)
            print(f"  {row['name']}: {side}: loop {r['loop']:.2f} s, wall {r['wall']:.2f} s, "
                  f"{r['rss'] / 2**20:.0f} MiB, {r['threads']} threads, load {r['load']:.1f}",
                  file=sys.stderr, flush=True)
    diffs = {f"{a} vs {b}": float(np.abs(images[a].astype(np.float64) - images[b]).max())
             for a, b in (("ours fp32", "reference best"), ("ours auto", "reference best"),
                          ("reference best", "reference default"))}
    return results, diffs


def fmt(values):
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


def report(row, results, diffs):
    """Speed is the reference at its best over the side (medians): above 1, the side is faster."""
    best_loop = statistics.median(r["loop"] for r in results["reference best"])
    best_wall = statistics.median(r["wall"] for r in results["reference best"])
    lines = []
    for side in SIDES:
        rs = results[side]
        loop, wall = [r["loop"] for r in rs], [r["wall"] for r in rs]
        ratio = (f"{best_loop / statistics.median(loop):.2f}× / "
                 f"{best_wall / statistics.median(wall):.2f}×")
        threads = sorted({r["threads"] for r in rs})
        loads = [r["load"] for r in rs]
        lines.append(f"| {row['name']} | {side} | {fmt(loop)} | {fmt(wall)} | {ratio} | "
                     f"{max(r['rss'] for r in rs) / 2**20:.0f} MiB | "
                     f"{','.join(map(str, threads))} | {min(loads):.1f}–{max(loads):.1f} |")
    diff = "; ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    return lines, f"- {row['name']}: max abs difference {diff}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="cifar32-b1,cifar32-b16,lucidrains128,patterns512")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=0, help="override every row's size (try-outs)")
    ap.add_argument("--steps", type=int, default=0, help="override every row's steps (try-outs)")
    ap.add_argument("--threads", type=int, default=0,
                    help="0: ours automatic, the reference best its fastest count; N: every side N")
    a = ap.parse_args()
    check_setup()
    os.makedirs(WORK, exist_ok=True)
    runner = Runner(a.threads)
    table = ["| row | side | loop min / median | wall min / median | speed vs reference best, "
             "loop / wall (medians) | peak RSS | threads | load avg |", "|---|---|---|---|---|---|---|---|"]
    notes = []
    for row in rows(a.rows.split(",")):
        row["size"] = a.size or row["size"]
        row["steps"] = a.steps or row["steps"]
        if a.size or a.steps:
            row["name"] += f" (try-out: {row['size']}², {row['steps']} steps)"
        results, diffs = measure(row, a.repeats, runner)
        lines, note = report(row, results, diffs)
        table += lines
        notes.append(note)
        print("\n".join(lines), flush=True)
    print("\n" + "\n".join(table) + "\n\n" + "\n".join(notes))
    print(f"\n{a.repeats} repetitions per side, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
