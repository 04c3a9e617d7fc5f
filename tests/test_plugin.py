"""End-to-end test of the GIMP plug-in: real gimp-console-3.0 runs the PDB procedures from
Script-Fu and Python-Fu (non-interactive, named arguments) on RGB, RGBA, GRAY and 16-bit images,
with and without a selection, and the exported results are compared with gimp-diffusion-cli's
for the same model, seed and settings (within 1/255). Outside a selection nothing may change;
alpha is kept; a bad model or device fails with a one-line error, a non-zero batch status and the
image untouched. Tiled runs (the tile-size, tile-overlap and max-memory arguments) on the bundled
model give the CLI's tiled result, and a memory budget too small for the area is refused before
anything changes.

Environment: GD_CLI (the CLI), GD_GIMP_BATCH (tools/gimp-batch), GD_PLUGIN (the plug-in),
TEST_DATA_DIR. Three GIMP starts in all (about 10 s each).
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

from png_files import decode_png, encode_png

DATA = os.environ.get("TEST_DATA_DIR", os.path.join(os.path.dirname(__file__), "data"))
MODEL = os.path.join(DATA, "diffusers-tiny", "model")
# The texture model shipped with the plug-in: what model "" means when GIMP_DIFFUSION_MODEL is unset.
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "checkpoints", "gimp-patterns")
CLI = os.environ["GD_CLI"]
BATCH = os.environ.get("GD_GIMP_BATCH", os.path.join(os.path.dirname(__file__), "..", "tools", "gimp-batch"))
W, H = 21, 18          # odd on purpose: the model's factor is 2, so the engine pads and crops
SEL = (4, 3, 11, 9)    # x, y, w, h of the rectangular selection (odd size too)
# Tiled runs: a 160x96 area of a larger image in windows of at most 64 pixels with an overlap other
# than the automatic 16 (8 windows of 64x64 on the bundled model, whose factor is 8), and a budget
# given so that the CLI's reference batches the windows the same way. The generated result differs
# from the whole-area one and from the automatic overlap's by 0.04 or more, so matching the CLI
# shows that each argument reached the engine. The image is converted to float precision first, so
# the layer keeps what the plug-in wrote (a NaN too) unrounded.
TW, TH = 176, 112
TSEL = (8, 8, 160, 96)
TILED = {"model": BUNDLED, "steps": 3, "class": "1", "tile-size": 64, "tile-overlap": 24,
         "max-memory": "2G"}

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


# ---- PNG and safetensors ------------------------------------------------------------------------

def write_png(path, arr, depth):
    """arr: HxWxC floats in [0, 1]; C 1..4; depth 8 or 16."""
    h, w, c = arr.shape
    maxv = 255 if depth == 8 else 65535
    q = np.rint(np.clip(arr, 0, 1) * maxv).astype(">u2" if depth == 16 else "u1")
    encode_png(path, w, h, c, depth, q.tobytes())


def read_png(path):
    """-> (HxWxC float array in [0, 1], bit depth)."""
    w, h, c, depth, samples = decode_png(path)
    arr = np.frombuffer(samples, dtype=">u2" if depth == 16 else "u1").reshape(h, w, c)
    return arr.astype(np.float64) / (65535.0 if depth == 16 else 255.0), depth


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    t = header["image"]
    a, b = t["data_offsets"]
    return np.frombuffer(blob[a:b], dtype="<f4").reshape(t["shape"]).astype(np.float64)


# ---- Test images ---------------------------------------------------------------------------------

def make_inputs(tmp):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    r = 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    g = (xx + yy) / (W + H)
    b = 0.5 + 0.3 * np.cos((xx - yy) / 5.0)
    rgb = np.stack([r, g, b], -1)
    alpha = 0.3 + 0.7 * (xx / (W - 1))[..., None]   # never 0: PNG export zeroes transparent colour
    gray = (0.3 * r + 0.6 * g + 0.1 * b)[..., None]
    paths = {}
    ty, tx = np.mgrid[0:TH, 0:TW].astype(np.float64)
    texture = np.stack([0.5 + 0.3 * np.sin(tx / 5.0 + c) * np.cos(ty / 7.0) for c in range(3)], -1)
    texture += np.random.default_rng(1).normal(0.0, 0.1, texture.shape)  # noise to denoise
    for name, arr, depth in [("rgb8", rgb, 8), ("rgba8", np.concatenate([rgb, alpha], -1), 8),
                             ("gray8", gray, 8), ("rgb16", rgb, 16), ("tex", texture, 8)]:
        paths[name] = os.path.join(tmp, name + ".png")
        write_png(paths[name], arr, depth)
    return paths


# ---- Cases ---------------------------------------------------------------------------------------
# (name, input, procedure, selection?, plug-in arguments, interface)
COMMON = {"sampler": "ddim", "steps": 6, "eta": 0.0, "device": "cpu"}
CASES = [
    ("gen-rgb8", "rgb8", "generate", False, dict(seed=7, output="replace"), "scheme"),
    ("gen-rgb8-sel-layer", "rgb8", "generate", True, dict(seed=8, output="new-layer"), "scheme"),
    ("gen-gray8", "gray8", "generate", False, dict(seed=9, output="new-layer"), "scheme"),
    ("i2i-rgb8-sel", "rgb8", "img2img", True, dict(seed=10, strength=0.6, output="replace"), "scheme"),
    ("i2i-rgba8", "rgba8", "img2img", False, dict(seed=11, strength=0.5, output="replace"), "scheme"),
    ("i2i-rgb16", "rgb16", "img2img", False, dict(seed=12, strength=0.7, output="replace"), "scheme"),
    ("i2i-rgb8-layer", "rgb8", "img2img", True, dict(seed=13, strength=0.8, output="new-layer"), "scheme"),
    ("dn-gray8-sel", "gray8", "denoise", True, {"seed": 14, "noise-level": 0.1}, "scheme"),
    ("dn-rgba8", "rgba8", "denoise", False, {"seed": 15, "noise-level": 0.0}, "scheme"),
    # model "" without GIMP_DIFFUSION_MODEL (the Script-Fu run): the bundled texture model.
    ("gen-bundled", "rgb8", "generate", True, dict(seed=19, output="new-layer", model=""), "scheme"),
    # The bundled model is class-conditional: Image to image takes the best-fitting class and
    # names it in the new layer's name.
    ("i2i-bundled-layer", "rgb8", "img2img", True, dict(seed=20, strength=0.5, output="new-layer", model=""),
     "scheme"),
    ("py-gen-random", "rgb8", "generate", True, dict(seed=-1, output="new-layer"), "python"),
    # model "": the default model, here from GIMP_DIFFUSION_MODEL.
    ("py-i2i-rgba8-sel", "rgba8", "img2img", True, dict(seed=16, strength=0.6, output="replace", model=""), "python"),
    ("py-dn-rgb16-sel", "rgb16", "denoise", True, {"seed": 17, "noise-level": 0.05}, "python"),
    # A model installed in <profile>/diffusion-models, picked by its name.
    ("py-gen-by-name", "rgb8", "generate", False, dict(seed=18, output="new-layer", model="tiny"), "python"),
]


def scheme_value(v):
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, float):
        return repr(v)
    return str(v)


def scheme_script(tmp, inputs, cases):
    forms = []
    for name, inp, proc, sel, args, iface in cases:
        allargs = {**COMMON, "model": MODEL, **args}  # a case may override the model
        named = " ".join("#:%s %s" % (k, scheme_value(v)) for k, v in allargs.items())
        select = "(gimp-image-select-rectangle img CHANNEL-OP-REPLACE %d %d %d %d)" % SEL if sel else ""
        forms.append("""
(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE "{inp}")))
       (d (vector-ref (car (gimp-image-get-selected-drawables img)) 0)))
  {select}
  (let ((r (plug-in-diffusion-{proc} #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d) {named})))
    (gimp-message (string-append "RESULT {name} seed " (number->string (car r)))))
  (gimp-message (string-append "LAYER {name} "
                               (car (gimp-item-get-name (vector-ref (car (gimp-image-get-layers img)) 0)))))
  (gimp-file-save RUN-NONINTERACTIVE img "{out}" -1)
  (gimp-image-delete img))""".format(inp=inputs[inp], select=select, proc=proc, named=named, name=name,
                                   out=os.path.join(tmp, name + ".out.png")))
    return "(begin " + "".join(forms) + ")"


PY_HELPERS = r'''
import json
import gi
gi.require_version('Gegl', '0.4')
from gi.repository import Gimp, Gio, Gegl
results = {}
last = None  # the last run's return values
def load(path):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(path))
def save(img, path):
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(path), None)
def run(proc, img, args):
    p = Gimp.get_pdb().lookup_procedure('plug-in-diffusion-' + proc)
    c = p.create_config()
    c.set_property('run-mode', Gimp.RunMode.NONINTERACTIVE)
    c.set_property('image', img)
    c.set_core_object_array('drawables', img.get_selected_drawables())
    for k, v in args.items():
        c.set_property(k, v)
    global last
    last = r = p.run(c)
    status = r.index(0)
    out = {'status': status.value_nick}
    if status == Gimp.PDBStatusType.SUCCESS:
        out['seed'] = r.index(1)
    else:
        out['error'] = r.index(1) if r.length() > 1 else ''
    out['layers'] = [[l.get_width(), l.get_height()] + list(l.get_offsets()[-2:])
                     for l in img.get_layers()]
    return out
def dump(drawable, x, y, w, h, path):
    """The drawable's pixels at x, y, w, h (its own coordinates) as float32 RGBA."""
    data = drawable.get_buffer().get(Gegl.Rectangle.new(x, y, w, h), 1.0, "R'G'B'A float",
                                     Gegl.AbyssPolicy.CLAMP)
    open(path, 'wb').write(data)
'''


def python_script(tmp, inputs, cases, error_cases, tiled_cases):
    lines = [PY_HELPERS]
    for name, proc, args in tiled_cases:
        lines.append("img = load(%r)" % inputs["tex"])
        lines.append("img.convert_precision(Gimp.Precision.FLOAT_NON_LINEAR)")
        lines.append("img.select_rectangle(Gimp.ChannelOps.REPLACE, %d, %d, %d, %d)" % TSEL)
        lines.append("results[%r] = run(%r, img, %r)" % (name, proc, dict(COMMON, **args)))
        # The result: the new layer (placed at the area), or the drawable's area.
        lines.append("if results[%r]['status'] == 'success':" % name)
        if args.get("output") == "new-layer":
            lines.append("    dump(last.index(2), 0, 0, %d, %d, %r)"
                         % (TSEL[2], TSEL[3], os.path.join(tmp, name + ".f32")))
        else:
            lines.append("    dump(img.get_layers()[0], %d, %d, %d, %d, %r)"
                         % (TSEL + (os.path.join(tmp, name + ".f32"),)))
        lines.append("save(img, %r)" % os.path.join(tmp, name + ".out.png"))
        lines.append("img.delete()")
    for name, inp, proc, sel, args, iface in cases:
        allargs = dict(COMMON, model=MODEL)
        allargs.update(args)
        lines.append("img = load(%r)" % inputs[inp])
        if sel:
            lines.append("img.select_rectangle(Gimp.ChannelOps.REPLACE, %d, %d, %d, %d)" % SEL)
        lines.append("results[%r] = run(%r, img, %r)" % (name, proc, allargs))
        lines.append("save(img, %r)" % os.path.join(tmp, name + ".out.png"))
        lines.append("img.delete()")
    for name, inp, proc, args in error_cases:
        lines.append("img = load(%r)" % inputs[inp])
        lines.append("results[%r] = run(%r, img, %r)" % (name, proc, dict(COMMON, **args)))
        lines.append("save(img, %r)" % os.path.join(tmp, name + ".out.png"))
        lines.append("img.delete()")
    lines.extend(fill_lines(tmp, inputs))
    # Too large (over 16384x16384 pixels): refused before any pixel is read. The layer is never
    # written, so GEGL allocates none of its tiles.
    lines.append("img = Gimp.Image.new(16500, 16400, Gimp.ImageBaseType.RGB)")
    lines.append("l = Gimp.Layer.new(img, 'big', 16500, 16400, Gimp.ImageType.RGB_IMAGE, 100, Gimp.LayerMode.NORMAL)")
    lines.append("img.insert_layer(l, None, 0)")
    lines.append("results['too-large'] = run('denoise', img, %r)" % dict(COMMON, model=MODEL, seed=1))
    lines.append("img.delete()")
    # CUDA: fails cleanly where there is none, works where there is.
    lines.append("img = load(%r)" % inputs["rgb8"])
    lines.append("results['cuda'] = run('denoise', img, %r)" % dict(COMMON, model=MODEL, seed=1, device="cuda"))
    lines.append("img.delete()")
    lines.append("json.dump(results, open(%r, 'w'))" % os.path.join(tmp, "py-results.json"))
    return "\n".join(lines)


# ---- Fill Selection and Make Seamless --------------------------------------------------------------
# Fill Selection regenerates SEL of the whole 21x18 image (the CLI's inpaint with SEL as the mask);
# Make Seamless works on an even area, MSEL (the model's factor is 2).
MSEL = (2, 2, 16, 14)
FILL = {"seed": 31, "resample": 1, "output": "replace"}
SEAMLESS = {"seed": 32, "resample": 1, "band": 4, "output": "replace"}
# Any size: the whole 21x18 image, off the model's grid of 2 (the fill is stretched and back).
SEAMLESS_ANY = dict(SEAMLESS, seed=33)
FILL_ERRORS = [  # name, selection ("none", "all" or a rectangle), procedure, arguments, message
    ("py-fill-empty", "none", "inpaint", {"seed": 1}, "the selection is empty"),
    ("py-fill-all", "all", "inpaint", {"seed": 1}, "use generate"),
    ("py-fill-dpmpp", SEL, "inpaint", {"seed": 1, "sampler": "dpmpp_2m"}, "dpmpp_2m cannot inpaint"),
    ("py-seamless-band", MSEL, "make-seamless", {"seed": 1, "band": 8}, "wider than half"),
]


def fill_lines(tmp, inputs):
    lines = []
    for name, sel, proc, args in [("py-fill", SEL, "inpaint", FILL),
                                  ("py-seamless", MSEL, "make-seamless", SEAMLESS),
                                  ("py-seamless-any", (0, 0, W, H), "make-seamless", SEAMLESS_ANY)] + \
            [(e[0], e[1], e[2], e[3]) for e in FILL_ERRORS]:
        lines.append("img = load(%r)" % inputs["rgb8"])
        if sel == "all":
            lines.append("Gimp.Selection.all(img)")
        elif sel != "none":
            lines.append("img.select_rectangle(Gimp.ChannelOps.REPLACE, %d, %d, %d, %d)" % sel)
        lines.append("results[%r] = run(%r, img, %r)" % (name, proc, dict(COMMON, model=MODEL, **args)))
        lines.append("save(img, %r)" % os.path.join(tmp, name + ".out.png"))
        lines.append("img.delete()")
    return lines


def check_fill(tmp, inputs, results):
    src, _ = read_png(inputs["rgb8"])
    common = ["--sampler", COMMON["sampler"], "--steps", str(COMMON["steps"]), "--eta", "0",
              "--device", "cpu", "--resample", "1"]
    for name, sel, proc, args in [("py-fill", SEL, "inpaint", FILL),
                                  ("py-seamless", MSEL, "make-seamless", SEAMLESS),
                                  ("py-seamless-any", (0, 0, W, H), "make-seamless", SEAMLESS_ANY)]:
        r = results.get(name, {})
        check(r.get("status") == "success", "%s: succeeds (%s)" % (name, r))
        if r.get("status") != "success":
            continue
        out, _ = read_png(os.path.join(tmp, name + ".out.png"))
        x, y, w, h = sel
        ref_out = os.path.join(tmp, name + ".ref.safetensors")
        keep = np.ones(src.shape[:2], bool)
        if proc == "inpaint":
            mask = np.zeros((H, W, 1))
            mask[y:y + h, x:x + w] = 1.0
            write_png(os.path.join(tmp, "fill-mask.png"), mask, 8)
            cli("inpaint", ["-i", inputs["rgb8"], "--mask", os.path.join(tmp, "fill-mask.png"),
                            "--seed", str(args["seed"]), "-o", ref_out] + common)
            ref = read_safetensors(ref_out)[0].transpose(1, 2, 0)[y:y + h, x:x + w]
            keep[y:y + h, x:x + w] = False
        else:
            crop = os.path.join(tmp, name + ".crop.png")
            write_png(crop, src[y:y + h, x:x + w], 8)
            cli("make-seamless", ["-i", crop, "--band", str(args["band"]), "--seed",
                                  str(args["seed"]), "-o", ref_out] + common)
            ref = read_safetensors(ref_out)[0].transpose(1, 2, 0)
            band = np.zeros((h, w), bool)  # rows and columns within band / 2 of the area's edges
            b = args["band"] // 2
            band[:b], band[h - b:], band[:, :b], band[:, w - b:] = True, True, True, True
            keep[y:y + h, x:x + w] = ~band
        got = out[y:y + h, x:x + w]
        err = float(np.abs(got - ref).max())
        check(err <= 1.0 / 255 + 1e-6, "%s: equals the CLI within 1/255 (max error %.5f)" % (name, err))
        outside = float(np.abs(out[keep] - src[keep]).max())
        check(outside == 0.0, "%s: byte-identical outside the %s (max %.6f)"
              % (name, "selection" if proc == "inpaint" else "band", outside))
        check(float(np.abs(out[~keep] - src[~keep]).max()) > 0.02, "%s: the rest is regenerated" % name)
    for name, sel, proc, args, needle in FILL_ERRORS:
        r = results.get(name, {})
        err = r.get("error", "")
        check(r.get("status") == "execution-error" and "\n" not in err and needle in err,
              "%s: one-line error naming the problem (%r, %s)" % (name, needle, r))
        out, _ = read_png(os.path.join(tmp, name + ".out.png"))
        check(float(np.abs(out - src).max()) == 0.0, "%s: image untouched" % name)


def gimp_batch(interpreter, script, timeout=300, env=None):
    cmd = [BATCH, "--quit", "--batch-interpreter=" + interpreter, "-b", script]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout + p.stderr


def cli(command, args, model=MODEL):
    cmd = [CLI, command, "--model", model] + args
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("CLI failed: %s\n%s" % (" ".join(cmd), p.stderr))


def reference(tmp, name, inp_path, proc, sel, args, seed, iface):
    """The CLI's result for the area the plug-in processed: colour [h, w, C] floats."""
    src, depth = read_png(inp_path)
    # Only the Python-Fu run sets GIMP_DIFFUSION_MODEL; elsewhere model "" is the bundled model.
    model = BUNDLED if args.get("model") == "" and iface == "scheme" else MODEL
    x, y, w, h = SEL if sel else (0, 0, W, H)
    ref_out = os.path.join(tmp, name + ".ref.safetensors")
    common = ["--sampler", COMMON["sampler"], "--steps", str(COMMON["steps"]), "--eta", "0",
              "--seed", str(seed), "--device", "cpu", "-o", ref_out]
    if proc == "generate":
        cli("generate", ["--width", str(w), "--height", str(h)] + common, model)
    else:
        crop = os.path.join(tmp, name + ".crop.png")
        write_png(crop, src[y:y + h, x:x + w], depth)
        if proc == "img2img":
            cli("img2img", ["-i", crop, "--strength", str(args["strength"])] + common, model)
        else:
            lvl = args["noise-level"]
            cli("denoise", ["-i", crop, "--sigma", "auto" if lvl == 0 else str(lvl)] + common, model)
    ref = read_safetensors(ref_out)[0].transpose(1, 2, 0)  # HWC
    return ref


def compare_case(tmp, inputs, case, seed):
    name, inp, proc, sel, args, iface = case
    src, depth = read_png(inputs[inp])
    out_path = os.path.join(tmp, name + ".out.png")
    if not os.path.exists(out_path):
        check(False, "%s: exported %s" % (name, out_path))
        return
    out, out_depth = read_png(out_path)
    channels_in = src.shape[2]
    colour = 1 if channels_in in (1, 2) else 3
    has_alpha = channels_in in (2, 4)
    check(out.shape[:2] == src.shape[:2], "%s: size kept" % name)
    ref = reference(tmp, name, inputs[inp], proc, sel, args, seed, iface)
    if colour == 1 and ref.shape[2] == 3:
        ref = ref.mean(axis=2, keepdims=True)   # the engine's RGB -> gray for gray images
    ref = ref[..., :colour]
    x, y, w, h = SEL if sel else (0, 0, W, H)
    got = out[y:y + h, x:x + w, :colour]
    tol = 1.0 / 255 + 1e-6
    err = float(np.abs(got - ref).max())
    check(err <= tol, "%s: equals the CLI within 1/255 (max error %.5f, %d-bit export)" % (name, err, out_depth))
    if sel:
        mask = np.ones(src.shape[:2], bool)
        mask[y:y + h, x:x + w] = False
        outside = float(np.abs(out[mask][:, :colour] - src[mask][:, :colour]).max())
        check(outside <= 1e-6, "%s: nothing changes outside the selection (max %.6f)" % (name, outside))
    if has_alpha and out.shape[2] == channels_in:
        a_err = float(np.abs(out[..., -1] - src[..., -1]).max())
        check(a_err <= 1e-6, "%s: alpha kept (max %.6f)" % (name, a_err))


def tiled_reference(tmp, inputs, name, proc, args, seed):
    """The CLI's result for a tiled case, with the same windows and budget: [h, w, 3] floats."""
    ref_out = os.path.join(tmp, name + ".ref.safetensors")
    common = ["--sampler", COMMON["sampler"], "--steps", str(args["steps"]), "--eta", "0",
              "--seed", str(seed), "--device", "cpu", "--class", args["class"],
              "--tile-size", str(args["tile-size"]), "--tile-overlap", str(args["tile-overlap"]),
              "--max-memory", args["max-memory"], "-o", ref_out]
    x, y, w, h = TSEL
    if proc == "generate":
        cli("generate", ["--width", str(w), "--height", str(h)] + common, BUNDLED)
    else:
        src, depth = read_png(inputs["tex"])
        crop = os.path.join(tmp, name + ".crop.png")
        write_png(crop, src[y:y + h, x:x + w], depth)
        cli("denoise", ["-i", crop, "--sigma", str(args["noise-level"])] + common, BUNDLED)
    return read_safetensors(ref_out)[0].transpose(1, 2, 0)


def check_tiled(tmp, inputs, name, proc, args, r):
    check(r.get("status") == "success", "%s: succeeds (%s)" % (name, r.get("error", r.get("status"))))
    if r.get("status") != "success":
        return
    check(r.get("seed") == args["seed"], "%s: returns the seed given" % name)
    x, y, w, h = TSEL
    layers = r.get("layers", [])
    if proc == "generate":
        check(len(layers) == 2 and layers[0] == [w, h, x, y],
              "%s: one new layer of %dx%d at %d,%d (%s)" % (name, w, h, x, y, layers))
    else:
        check(len(layers) == 1, "%s: no new layer (%s)" % (name, layers))
    got = np.fromfile(os.path.join(tmp, name + ".f32"), dtype="<f4").reshape(h, w, 4)[..., :3]
    check(bool(np.isfinite(got).all()), "%s: no NaN or infinity" % name)
    spread = float(got.std())
    check(spread > 0.01, "%s: the pixels vary (standard deviation %.4f)" % (name, spread))
    ref = tiled_reference(tmp, inputs, name, proc, args, args["seed"])
    # Same engine, input and windows, and a float layer: no rounding between the two.
    err = float(np.abs(got - ref).max())
    check(err <= 1e-4, "%s: equals the CLI's tiled result within 1e-4 (max error %.2g)" % (name, err))
    if proc == "denoise":
        src, _ = read_png(inputs["tex"])
        out, _ = read_png(os.path.join(tmp, name + ".out.png"))
        mask = np.ones(src.shape[:2], bool)
        mask[y:y + h, x:x + w] = False
        outside = float(np.abs(out[mask] - src[mask]).max())
        check(outside <= 1e-6, "%s: nothing changes outside the selection (max %.6f)" % (name, outside))


def main():
    tmp = tempfile.mkdtemp(prefix="gd-plugin-test-")
    inputs = make_inputs(tmp)
    scheme_cases = [c for c in CASES if c[5] == "scheme"]
    python_cases = [c for c in CASES if c[5] == "python"]
    error_cases = [
        ("py-bad-model", "rgb8", "img2img", dict(model=os.path.join(tmp, "no-such-model"), seed=1)),
        ("py-corrupt-model", "rgb8", "denoise", dict(model=inputs["rgb8"], seed=1)),
        # Seamless output cannot be cropped, so a 21-pixel-wide area is refused (factor 2).
        ("py-seamless-odd-size", "rgb8", "generate", dict(model=MODEL, seed=1, seamless=True)),
        # A class for a model that has none (the class-conditional path is in test_cli_sample.py).
        ("py-class-unconditional", "rgb8", "denoise", dict(model=MODEL, seed=1, **{"class": "0"})),
        # Guidance needs classes, and a scale from 1 (0 is the model's default).
        ("py-guidance-unconditional", "rgb8", "generate", dict(model=MODEL, seed=1, guidance=2.0)),
        ("py-guidance-range", "rgb8", "img2img", dict(model=MODEL, seed=1, guidance=0.5)),
        # A memory budget no window size can meet: refused before any pixel changes.
        ("py-max-memory-generate", "tex", "generate",
         {"model": BUNDLED, "seed": 1, "output": "new-layer", "max-memory": "1M"}),
        ("py-max-memory-denoise", "tex", "denoise",
         {"model": BUNDLED, "seed": 1, "noise-level": 0.1, "max-memory": "1M"}),
    ]
    # Tiled: the 160x96 area in 3x2 windows of the bundled model.
    tiled_cases = [
        ("py-gen-tiled", "generate", dict(TILED, seed=21, output="new-layer")),
        ("py-dn-tiled", "denoise", dict(TILED, seed=22, **{"noise-level": 0.1})),
    ]

    # 1. Script-Fu, named arguments.
    rc, log = gimp_batch("plug-in-script-fu-eval", scheme_script(tmp, inputs, scheme_cases))
    check(rc == 0, "Script-Fu batch exits 0 (got %d)" % rc)
    if rc != 0:
        print(log[-4000:])
    seeds = {m.group(1): int(m.group(2)) for m in re.finditer(r"RESULT (\S+) seed (\d+)", log)}
    layers = {m.group(1): m.group(2) for m in re.finditer(r"LAYER (\S+) ([^\n]*)", log)}
    fitted = layers.get("i2i-bundled-layer", "")
    check(re.search(r"^Image to Image \(.*, class \d+ \(\w+\)\)", fitted) is not None,
          "i2i-bundled-layer: the new layer names the class that was fitted: %r" % fitted)
    # The bundled model's own guidance (guidance.json) applies to Generate, and the layer says so;
    # Image to image stays unguided.
    generated = layers.get("gen-bundled", "")
    check(re.search(r"^Generated \(.*, guidance [\d.]+ below timestep \d+\)", generated) is not None,
          "gen-bundled: the new layer names the model's guidance: %r" % generated)
    check("guidance" not in fitted, "i2i-bundled-layer: no guidance by default: %r" % fitted)
    for case in scheme_cases:
        check(seeds.get(case[0]) == case[4]["seed"], "%s: returns the seed %s" % (case[0], case[4]["seed"]))
        compare_case(tmp, inputs, case, case[4]["seed"])

    # 2. Python-Fu, with return values, a random seed and failures that must leave the image alone.
    profile = os.path.join(tmp, "profile")
    os.makedirs(os.path.join(profile, "diffusion-models"))
    os.symlink(os.path.abspath(MODEL), os.path.join(profile, "diffusion-models", "tiny"))
    env = dict(os.environ, GIMP_DIFFUSION_MODEL=MODEL, GD_GIMP_PROFILE=profile)
    rc, log = gimp_batch("python-fu-eval", python_script(tmp, inputs, python_cases, error_cases, tiled_cases),
                         env=env)
    check(rc == 0, "Python-Fu batch exits 0 (got %d)" % rc)
    results = {}
    try:
        with open(os.path.join(tmp, "py-results.json")) as f:
            results = json.load(f)
    except OSError:
        print(log[-4000:])
    for case in python_cases:
        r = results.get(case[0], {})
        check(r.get("status") == "success", "%s: succeeds (%s)" % (case[0], r))
        seed = r.get("seed", -1)
        if case[4]["seed"] >= 0:
            check(seed == case[4]["seed"], "%s: returns the seed given" % case[0])
        else:
            check(isinstance(seed, int) and seed >= 0, "%s: returns the random seed used (%s)" % (case[0], seed))
        if r.get("status") == "success":
            compare_case(tmp, inputs, case, seed)
    for name, inp, proc, args in error_cases + [("too-large", None, None, None)]:
        r = results.get(name, {})
        err = r.get("error", "")
        check(r.get("status") == "execution-error", "%s: fails with EXECUTION_ERROR (%s)" % (name, r))
        check(err != "" and "\n" not in err, "%s: one-line message: %r" % (name, err))
        if name == "py-seamless-odd-size":
            check("multiples of 2" in err, "%s: names the size rule: %r" % (name, err))
        if name == "py-class-unconditional":
            check("not class-conditional" in err, "%s: says the model takes no class: %r" % (name, err))
        if name == "py-guidance-unconditional":
            check("needs a class-conditional model" in err, "%s: says guidance needs classes: %r" % (name, err))
        if name == "py-guidance-range":
            check("guidance must be from 1" in err, "%s: names the range: %r" % (name, err))
        if name.startswith("py-max-memory"):
            check(err.startswith("%s: max-memory: " % ("Generate" if "generate" in name else "Denoise Layer"))
                  and "over the 1 MiB budget" in err, "%s: names max-memory and the budget: %r" % (name, err))
        if inp:
            out, _ = read_png(os.path.join(tmp, name + ".out.png"))
            src, _ = read_png(inputs[inp])
            check(out.shape == src.shape and float(np.abs(out - src).max()) == 0.0, "%s: image untouched" % name)
            check(len(r.get("layers", [])) == 1, "%s: no new layer (%s)" % (name, r.get("layers")))
    for name, proc, args in tiled_cases:
        check_tiled(tmp, inputs, name, proc, args, results.get(name, {}))
    check_fill(tmp, inputs, results)
    cuda = results.get("cuda", {})
    check(cuda.get("status") == "success" or "CUDA" in cuda.get("error", ""),
          "device cuda: works or says there is no CUDA (%s)" % cuda)
    check("too large" in results.get("too-large", {}).get("error", ""), "too-large: says the area is too large")

    # 3. A bad model from Script-Fu: the batch exits non-zero with the message.
    bad = os.path.join(tmp, "no-such-model")
    script = """(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE "%s")))
       (d (vector-ref (car (gimp-image-get-selected-drawables img)) 0)))
  (plug-in-diffusion-denoise #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d) #:model "%s"))""" % (
        inputs["rgb8"], bad)
    rc, log = gimp_batch("plug-in-script-fu-eval", script)
    check(rc != 0, "bad model: Script-Fu batch exits non-zero (got %d)" % rc)
    check(bad in log and "no such file" in log, "bad model: the message names the path")

    print("%d failure(s)" % len(failures))
    if not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("files kept in " + tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
