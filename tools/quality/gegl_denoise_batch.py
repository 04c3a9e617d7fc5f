"""GIMP side of tools/quality/denoise_vs_gegl.py: apply GEGL filters to images, destructively,
inside one running GIMP (gimp-console-3.0, Python-Fu batch mode), and write the results' pixels.

Not a stand-alone program: GIMP's python-fu-eval interpreter executes it with JOBS already set to
the path of a JSON job file:

    gimp-console-3.0 -i --quit --batch-interpreter=python-fu-eval \
        -b "JOBS = '/abs/jobs.json'; exec(open('/abs/tools/quality/gegl_denoise_batch.py').read())"

Job file:
    {"done": "/abs/done.json",
     "jobs": [{"input": "/abs/noisy.rgb", "width": 64, "height": 64, "output": "/abs/result.rgb",
               "filters": [{"op": "gegl:denoise-dct", "props": {"sigma": 25.0, "patch-size": "size8x8"}},
                           {"op": "gegl:noise-reduction", "props": {"iterations": 4}}, ...]}, ...]}

Pixels travel as raw 8-bit R'G'B' bytes (height x width x 3, no header), both ways. For each
filter a fresh 8-bit gamma-encoded (GIMP's "8 bit integer, perceptual") RGB image is made from
the input bytes, the filter is applied to its layer and merged, and the layer's pixels are
appended to `output`, in the order of `filters`; so filters never accumulate. This is what
loading the noisy PNG and exporting the result would give (checked byte for byte), without the
costs that would dominate the run: Gimp.file_load and Gimp.file_save start the file-png plug-in
each time (~1 s), and Gimp.Image.duplicate takes ~65 ms against ~15 ms for a new image.

At the end `done` is written: {"ok": true, "results": N, "seconds": S}, or {"ok": false,
"error": "..."} on the first failure. Errors are caught and reported there, one line, rather than
left to GIMP (an uncaught exception makes gimp-console exit 64 with a traceback in its log).

GIMP 3.0.4 API used: Gimp.Image.new, Gimp.Layer.new, Gimp.Image.insert_layer,
Gimp.Drawable.get_buffer().set(rect, "R'G'B' u8", bytes), Gimp.DrawableFilter.new(drawable,
operation, name), filter.get_config().set_property(name, value) (properties named like the GEGL
operation's; enum properties take the value's nick as a string, e.g. "size16x16"),
Gimp.Drawable.merge_filter (renders and commits the filter into the layer's pixels),
Gimp.Drawable.get_buffer().get(rect, 1.0, "R'G'B' u8", Gegl.AbyssPolicy.NONE) -> bytes,
Gimp.Image.delete.
"""
import json
import time

import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402


def new_image(pixels, width, height):
    """A one-layer 8-bit perceptual RGB image holding `pixels` (R'G'B' u8 bytes)."""
    image = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)  # precision: u8 non-linear
    layer = Gimp.Layer.new(image, "noisy", width, height, Gimp.ImageType.RGB_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B' u8", pixels)
    buf.flush()  # the plug-in side's buffer must reach GIMP before the filter reads the layer
    return image, layer


def apply_filter(pixels, width, height, spec):
    """Apply one GEGL operation to a new image of `pixels`; return the result as R'G'B' u8 bytes."""
    image, layer = new_image(pixels, width, height)
    try:
        # DrawableFilter.new fails (PyGObject: "constructor returned NULL") for an operation
        # GEGL does not have; name it instead of a TypeError about NULL.
        try:
            flt = Gimp.DrawableFilter.new(layer, spec["op"], spec["op"])
        except TypeError:
            flt = None
        if flt is None:
            raise RuntimeError("GIMP has no filter %s" % spec["op"])
        config = flt.get_config()
        for name, value in spec.get("props", {}).items():
            config.set_property(name, value)
        layer.merge_filter(flt)
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, "R'G'B' u8",
                                      Gegl.AbyssPolicy.NONE)
        if len(data) != width * height * 3:
            raise RuntimeError("read %d bytes, expected %d" % (len(data), width * height * 3))
        return bytes(data)
    finally:
        image.delete()


def run_jobs(job_file):
    with open(job_file) as f:
        spec = json.load(f)
    start = time.time()
    count = 0
    try:
        for job in spec["jobs"]:
            w, h = job["width"], job["height"]
            with open(job["input"], "rb") as f:
                pixels = f.read()
            if len(pixels) != w * h * 3:
                raise RuntimeError("%s has %d bytes, expected %dx%dx3" % (job["input"], len(pixels), w, h))
            with open(job["output"], "wb") as out:
                for flt in job["filters"]:
                    try:
                        out.write(apply_filter(pixels, w, h, flt))
                    except Exception as e:
                        raise RuntimeError("%s %s on %s: %s" % (flt["op"], json.dumps(flt.get("props", {})),
                                                               job["input"], e)) from e
                    count += 1
        result = {"ok": True, "results": count, "seconds": round(time.time() - start, 1)}
    except Exception as e:
        result = {"ok": False, "error": " ".join(str(e).split())}
    with open(spec["done"], "w") as f:
        json.dump(result, f)


run_jobs(JOBS)  # noqa: F821 -- set by the -b command that exec()s this file
