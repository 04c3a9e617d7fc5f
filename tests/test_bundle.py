"""End-to-end test of the plug-in bundle in GIMP-only roots (tools/test-bundle runs it):

  prepare DIR KIND...  (build environment) input images, the Script-Fu script for each root and
                       the CLI's results for the same cases (build/tools/cli, the reference);
  check DIR KIND...    (build environment) judges what tests/bundle_in_root.sh recorded in
                       DIR/KIND: install.sh's refusals changed nothing and said so in one line,
                       ldd of every installed ELF file resolves to the bundle's lib/ or to a
                       library of the root's (GIMP's) packages, no CUDA library, a oneDNN that
                       passes the convolution sweep, and Generate, Image to image and Denoise
                       from Script-Fu equal to the CLI within 1/255.

Cases run on the bundled model (model "": found next to the installed plug-in) and on a user
model picked by name from <GIMP user folder>/diffusion-models.
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from png_files import decode_png, encode_png  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED = os.path.join(REPO, "models", "checkpoints", "gimp-patterns")
TINY = os.path.join(REPO, "tests", "data", "diffusers-tiny", "model")
CLI = os.environ.get("GD_CLI", os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli"))
W, H = 64, 48   # multiples of the bundled model's factor 8
COMMON = {"sampler": "ddim", "steps": 4, "eta": 0.0, "device": "cpu", "threads": 1}
# (name, input, procedure, plug-in arguments); "model" "" is the bundled model.
CASES = [
    ("generate", "rgb", "generate", dict(seed=3, output="replace", model="")),
    ("img2img", "rgb", "img2img", dict(seed=4, strength=0.5, output="replace", model="")),
    ("denoise", "noisy", "denoise", {"seed": 5, "noise-level": 0.1, "model": ""}),
    ("denoise-user-model", "rgb", "denoise", {"seed": 6, "noise-level": 0.05, "model": "tiny"}),
]
DNNL_MIN = (3, 12, 1)   # the oldest oneDNN that passes tests/conv_sweep (docs/numerics.md)

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def write_png(path, arr):
    h, w, c = arr.shape
    encode_png(path, w, h, c, 8, np.rint(np.clip(arr, 0, 1) * 255).astype("u1").tobytes())


def read_png(path):
    w, h, c, depth, samples = decode_png(path)
    arr = np.frombuffer(samples, dtype=">u2" if depth == 16 else "u1").reshape(h, w, c)
    return arr.astype(np.float64) / (65535.0 if depth == 16 else 255.0)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    a, b = header["image"]["data_offsets"]
    return np.frombuffer(blob[a:b], dtype="<f4").reshape(header["image"]["shape"]).astype(np.float64)


def scheme_value(v):
    return '"%s"' % v if isinstance(v, str) else repr(v) if isinstance(v, float) else str(v)


def scheme_script(d, out):
    forms = []
    for name, inp, proc, args in CASES:
        named = " ".join("#:%s %s" % (k, scheme_value(v)) for k, v in {**COMMON, **args}.items())
        forms.append("""
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE "{inp}")))
       (d (vector-ref (car (gimp-image-get-selected-drawables img)) 0)))
  (let ((r (plug-in-diffusion-{proc} #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d) {named})))
    (gimp-message (string-append "RESULT {name} seed " (number->string (car r)))))
  (gimp-file-save RUN-NONINTERACTIVE img "{out}" -1)
  (gimp-image-delete img))""".format(inp=os.path.join(d, inp + ".png"), proc=proc, named=named, name=name,
                                   out=os.path.join(out, name + ".out.png")))
    return "(begin " + "".join(forms) + ")"


def prepare(d, kinds):
    os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    rgb = np.stack([0.5 + 0.4 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0) for c in range(3)], -1)
    noisy = rgb + np.random.default_rng(1).normal(0.0, 0.1, rgb.shape)
    write_png(os.path.join(d, "rgb.png"), rgb)
    write_png(os.path.join(d, "noisy.png"), noisy)
    write_png(os.path.join(d, "canvas.png"), np.full((256, 256, 3), 0.5))  # the first texture's
    shutil.rmtree(os.path.join(d, "tiny"), ignore_errors=True)
    shutil.copytree(TINY, os.path.join(d, "tiny"))
    for kind in kinds:
        with open(os.path.join(d, "script-%s.scm" % kind), "w") as f:
            f.write(scheme_script(d, os.path.join(d, kind)))
    for name, inp, proc, args in CASES:
        model = BUNDLED if args["model"] == "" else TINY
        cmd = [CLI, proc, "--model", model, "--sampler", COMMON["sampler"], "--steps", str(COMMON["steps"]),
               "--eta", "0", "--seed", str(args["seed"]), "--device", "cpu", "--threads", "1",
               "-o", os.path.join(d, name + ".ref.safetensors")]
        if proc == "generate":
            cmd += ["--width", str(W), "--height", str(H)]
        else:
            cmd += ["-i", os.path.join(d, inp + ".png")]
        if proc == "img2img":
            cmd += ["--strength", str(args["strength"])]
        if proc == "denoise":
            cmd += ["--sigma", str(args["noise-level"])]
        subprocess.run(cmd, check=True, capture_output=True)
    return 0


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def check_install(out, kind):
    for case, reason in (("nofolder", "no GIMP 3 user folder"), ("arch", "x86-64")):
        said = read(os.path.join(out, "install-%s.txt" % case)).strip()
        before = read(os.path.join(out, "home-%s.before" % ("empty" if case == "nofolder" else case)))
        after = read(os.path.join(out, "home-%s.after" % ("empty" if case == "nofolder" else case)))
        check(read(os.path.join(out, "install-%s.rc" % case)).strip() not in ("", "0"),
              "%s: install.sh refuses (%s) with a non-zero status" % (kind, case))
        check(reason in said and "\n" not in said, "%s: ... in one line naming the reason: %r" % (kind, said))
        check(before != "" and before == after, "%s: ... and changes nothing in the home folder" % kind)
    said = read(os.path.join(out, "install.txt"))
    check(read(os.path.join(out, "install.rc")).strip() == "0" and "installed in " in said,
          "%s: install.sh installs and says where: %r" % (kind, said.strip()))


def check_ldd(out, kind):
    text = read(os.path.join(out, "ldd.txt"))
    files = re.findall(r"^FILE (.+)$", text, re.M)
    programs = [f for f in files if "/lib/" not in f]
    libs = [f for f in files if "/lib/" in f]
    check(len(programs) == 2 and len(libs) > 3, "%s: ldd ran on the 2 programs and %d libraries" % (kind, len(libs)))
    missing = re.findall(r"^MISSING (.+)$", text, re.M)
    check(not missing, "%s: every library resolves (%s)" % (kind, "; ".join(sorted(set(missing))) or "none missing"))
    system = re.findall(r"^SYSTEM (\S*) (.+)$", text, re.M)
    unowned = sorted({line for pkg, line in system if not pkg or pkg.startswith("/")})
    check(not unowned, "%s: each library found outside the bundle belongs to a package of the GIMP root (%s)"
          % (kind, "; ".join(unowned) or "all owned"))
    pkgs = sorted({pkg for pkg, line in system})
    print("     %s: %d packages supply the system libraries: %s" % (kind, len(pkgs), " ".join(pkgs)))
    others = re.findall(r"^OTHER (.+)$", text, re.M)
    odd = [o for o in others if not re.match(r"(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2) \(0x", o)]
    check(not odd, "%s: no other ldd lines (%s)" % (kind, "; ".join(odd) or "none"))
    bundled = {os.path.basename(f) for f in libs}
    torch = [b for b in bundled if b.startswith("libtorch_cpu")]
    check(bool(torch) and re.search(r"^BUNDLE libtorch_cpu\S* => \S+/lib/libtorch_cpu", text, re.M) is not None,
          "%s: LibTorch comes from the bundle's lib/" % kind)
    cuda = [b for b in bundled if re.search(r"cuda|cudnn|cublas|nccl|nvrtc", b, re.I)]
    check(not cuda, "%s: no CUDA library in the bundle (%s)" % (kind, " ".join(cuda) or "none"))


def check_bundle_info(out, kind):
    user = read(os.path.join(out, "gimp-user-folder.txt")).strip().splitlines()
    info = read(os.path.join(user[0], "plug-ins", "gimp-diffusion", "BUNDLE.txt")) if user else ""
    m = re.search(r"libdnnl\.so\.\S+\s+\S+ (\d+)\.(\d+)\.(\d+)", info)
    check(m is not None and tuple(int(x) for x in m.groups()) >= DNNL_MIN,
          "%s: the bundled oneDNN is %s, at least 3.12.1 (passes the convolution sweep)"
          % (kind, ".".join(m.groups()) if m else "missing"))
    glibc = re.search(r"needs at least: (.*)", info)
    print("     %s: BUNDLE.txt: %s" % (kind, glibc.group(1) if glibc else "no glibc line"))


def check_runs(d, out, kind):
    rc = read(os.path.join(out, "batch.rc")).strip()
    log = read(os.path.join(out, "batch.txt"))
    check(rc == "0", "%s: Script-Fu batch exits 0 (got %s)" % (kind, rc))
    if rc != "0":
        print(log[-3000:])
    seeds = {m.group(1): int(m.group(2)) for m in re.finditer(r"RESULT (\S+) seed (\d+)", log)}
    for name, inp, proc, args in CASES:
        check(seeds.get(name) == args["seed"], "%s: %s returns the seed %d" % (kind, name, args["seed"]))
        path = os.path.join(out, name + ".out.png")
        if not os.path.exists(path):
            check(False, "%s: %s exported" % (kind, name))
            continue
        got = read_png(path)[..., :3]
        ref = read_safetensors(os.path.join(d, name + ".ref.safetensors"))[0].transpose(1, 2, 0)
        err = float(np.abs(got - ref).max()) if got.shape == ref.shape else float("inf")
        check(err <= 1.0 / 255 + 1e-6, "%s: %s (%s) equals the CLI within 1/255 (max error %.5f)"
              % (kind, name, "bundled model" if args["model"] == "" else "user model by name", err))


def check_first_texture(out, kind):
    rc = read(os.path.join(out, "first-texture.rc")).strip()
    path = os.path.join(out, "first-texture.png")
    ok = rc == "0" and os.path.exists(path)
    check(ok, "%s: the first texture (Generate's defaults, 256x256) is made (status %s)" % (kind, rc))
    if ok:
        img = read_png(path)
        check(img.shape[:2] == (256, 256) and float(img.std()) > 0.02,
              "%s: ... 256x256 and not flat (std %.3f)" % (kind, float(img.std())))


def check_all(d, kinds):
    for kind in kinds:
        out = os.path.join(d, kind)
        print("== %s: %s" % (kind, read(os.path.join(out, "gimp-version.txt")).strip().splitlines()[-1:]))
        check_install(out, kind)
        check_ldd(out, kind)
        check_bundle_info(out, kind)
        check_first_texture(out, kind)
        check_runs(d, out, kind)
        print("     %s: seconds: %s" % (kind, read(os.path.join(out, "seconds.txt")).replace("\n", " ").strip()))
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] not in ("prepare", "check"):
        sys.exit("usage: test_bundle.py prepare|check DIR KIND...")
    d = os.path.abspath(sys.argv[2])
    sys.exit(prepare(d, sys.argv[3:]) if sys.argv[1] == "prepare" else check_all(d, sys.argv[3:]))
