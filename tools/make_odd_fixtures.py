#!/usr/bin/env python3
"""Writes tests/data/diffusers-odd and tests/data/lucidrains-odd: reference cases made by the real
diffusers and denoising-diffusion-pytorch code for networks with 20- and 40-channel convolutions,
the widths whose oneDNN kernels Debian 13's libdnnl 3.7.2 computes wrongly (docs/numerics.md,
issue 16). Same formats as tests/data/diffusers-tiny and tests/data/lucidrains-tiny, so the same
test helpers read them.

The reference sources are not part of this repository: fetch them, check out the commits named
below and pass their work trees. Nothing is downloaded; huggingface_hub, httpx (diffusers) and
torchvision, accelerate, scipy (denoising-diffusion-pytorch) are replaced by small offline
stand-ins written by this script, which only let the packages import: none of them computes
anything the fixtures contain. Inside the build environment:

  tools/env python3 tools/make_odd_fixtures.py \\
      --diffusers build/ref/diffusers --diffusers-commit 58eb52c0803ea9af3abec60841c2a093bdf1f951 \\
      --ddpm build/ref/ddpm --ddpm-commit faed4db28e724735323fa91c70aa9b28a6e1cbac \\
      --ema build/ref/ema --ema-commit 72d498dc544bd43f7ebe963cc8533021dde44f88 \\
      --site build/ref/sysroot/usr/lib/python3/dist-packages

--site holds what the build root lacks: Debian 13's python3-safetensors, python3-einops and
python3-tqdm, unpacked (apt-get download, dpkg-deb -x). Output is byte-for-byte deterministic.
Everything runs on the CPU in float32 with one thread; the oneDNN in use is recorded and every
network output is also recomputed in float64 and with oneDNN disabled, so a reference made on a
faulty oneDNN would be noticed.
"""
import argparse
import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile

STUBS = {
    # huggingface_hub: names diffusers imports; any other name is a class or a function that
    # refuses to run. split_torch_state_dict_into_shards: one shard (save_pretrained needs it).
    "huggingface_hub/_stub.py": '''
class StubError(Exception):
    pass


def offline(*args, **kwargs):
    raise StubError("huggingface_hub stand-in: no hub access")


def make_module_getattr(module_name):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper() and not name.isupper():
            if name.endswith(("Error", "Exception")) or name == "OfflineModeIsEnabled":
                return type(name, (StubError,), {})
            return type(name, (), {"__init__": offline})
        if name.isupper():
            return None
        return offline
    return __getattr__
''',
    "huggingface_hub/__init__.py": '''
from . import _stub, constants, errors, file_download, utils  # noqa: F401

__version__ = "1.99.0-stub"


class _Split:
    def __init__(self, filename, keys):
        self.filename_to_tensors = {filename: list(keys)}
        self.tensor_to_filename = {k: filename for k in keys}
        self.is_sharded = False
        self.metadata = {}


def split_torch_state_dict_into_shards(state_dict, *, filename_pattern="model{suffix}.safetensors",
                                       max_shard_size=None):
    return _Split(filename_pattern.format(suffix=""), state_dict.keys())


__getattr__ = _stub.make_module_getattr(__name__)
''',
    "huggingface_hub/constants.py": '''
import os
HF_HOME = os.path.join(os.path.expanduser("~"), ".cache", "huggingface-stub")
HF_HUB_CACHE = os.path.join(HF_HOME, "hub")
HUGGINGFACE_HUB_CACHE = HF_HUB_CACHE
HF_HUB_OFFLINE = True
HF_HUB_DISABLE_TELEMETRY = True
from ._stub import make_module_getattr
__getattr__ = make_module_getattr(__name__)
''',
    "huggingface_hub/errors.py": "from ._stub import make_module_getattr\n"
                                 "__getattr__ = make_module_getattr(__name__)\n",
    "huggingface_hub/_commit_api.py": "from ._stub import make_module_getattr\n"
                                      "__getattr__ = make_module_getattr(__name__)\n",
    "huggingface_hub/file_download.py": '''
import re
REGEX_COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
from ._stub import make_module_getattr
__getattr__ = make_module_getattr(__name__)
''',
    "huggingface_hub/utils.py": '''
from ._stub import make_module_getattr


def validate_hf_hub_args(fn):
    return fn


def is_jinja_available():
    return False


def send_telemetry(*args, **kwargs):
    pass


__getattr__ = make_module_getattr(__name__)
''',
    "huggingface_hub/cli/__init__.py": "",
    "huggingface_hub/cli/_output.py": "from .._stub import make_module_getattr\n"
                                      "__getattr__ = make_module_getattr(__name__)\n",
    "httpx/__init__.py": '''
__version__ = "0.0-stub"


class HTTPError(Exception):
    pass


class NetworkError(HTTPError):
    pass


class HTTPStatusError(HTTPError):
    pass


def get(*args, **kwargs):
    raise NetworkError("httpx stand-in: no network")
''',
    # denoising-diffusion-pytorch: imported at module level, used only by its Trainer, Dataset
    # and immiscible noise (none of which run here).
    "torchvision/__init__.py": "from . import transforms, utils  # noqa: F401\n__version__ = '0.0-stub'\n",
    "torchvision/transforms.py": "",
    "torchvision/utils.py": "",
    "accelerate/__init__.py": '''
class Accelerator:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("accelerate stand-in: the Trainer does not run here")
''',
    "scipy/__init__.py": "",
    "scipy/optimize.py": '''
def linear_sum_assignment(*args, **kwargs):
    raise RuntimeError("scipy stand-in: immiscible noise is not used here")
''',
    "pytorch_fid/__init__.py": "",
    "pytorch_fid/fid_score.py": "def calculate_frechet_distance(*a, **k):\n    raise RuntimeError\n",
    "pytorch_fid/inception.py": "class InceptionV3:\n    pass\n",
}


def write_stubs(root):
    for rel, text in STUBS.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text.lstrip("\n"))


def onednn_version():
    """The oneDNN library actually loaded by this process (not the one torch was built with)."""
    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                    ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint),
                    ("gpu_runtime", ctypes.c_uint)]
    try:
        lib = ctypes.CDLL("libdnnl.so.3.6")
        lib.dnnl_version.restype = ctypes.POINTER(Version)
        v = lib.dnnl_version().contents
        return f"{v.major}.{v.minor}.{v.patch}"
    except OSError:
        return "unknown"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def folder_files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            if n != "README.md":
                out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def smooth_image(torch, h, w):
    """A smooth RGB test image in [0, 1], [1, 3, h, w] (sinusoids)."""
    y = torch.arange(h, dtype=torch.float64)[:, None] / h
    x = torch.arange(w, dtype=torch.float64)[None, :] / w
    r = 0.5 + 0.4 * torch.sin(2 * torch.pi * (x + 0.5 * y))
    g = 0.5 + 0.4 * torch.cos(2 * torch.pi * (2 * y - x))
    b = 0.5 + 0.3 * torch.sin(2 * torch.pi * (x * y + 0.25))
    return torch.stack([r, g, b])[None].to(torch.float32)


def describe(t):
    return f"min {t.min().item():.4f} max {t.max().item():.4f} mean {t.mean().item():.4f}"


def tensor_lines(tensors):
    return [f"  - `{k}`: {str(v.dtype).replace('torch.', '')} {list(v.shape)}" for k, v in tensors.items()]


# ---------------------------------------------------------------------------------------------
# diffusers UNet2DModel
# ---------------------------------------------------------------------------------------------

UNET_CONFIG = {
    "sample_size": 16, "in_channels": 3, "out_channels": 3, "layers_per_block": 1,
    "block_out_channels": [20, 40], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 5,
    "attention_head_dim": 10,
}
SCHEDULER_CONFIG = {"num_train_timesteps": 100, "beta_schedule": "linear", "beta_start": 0.0001,
                    "beta_end": 0.02, "clip_sample": True, "prediction_type": "epsilon"}

# (sampler, steps, eta, seed, batch, height, width). Batches of two, and batch one at 48x48
# (20 x 48 x 48 > 20480 values): LibTorch sends such float32 convolutions to oneDNN.
DIFFUSERS_GENERATE = [
    ("ddpm", 20, 0.0, 12, 2, 16, 16),
    ("ddim", 10, 0.0, 13, 2, 16, 16),
    ("dpmpp_2m", 10, 0.0, 15, 2, 16, 16),
    ("euler_a", 10, 0.0, 17, 1, 48, 48),
]
# (sampler, steps, strength, seed, eta, height, width)
DIFFUSERS_IMG2IMG = [("dpmpp_2m", 10, 0.6, 23, 0.0, 48, 48)]


def make_sampler(d, name, scheduler_config):
    if name == "ddpm":
        return d.DDPMScheduler.from_config(scheduler_config), "DDPMScheduler.from_config(scheduler_config)"
    if name == "ddim":
        return d.DDIMScheduler.from_config(scheduler_config), "DDIMScheduler.from_config(scheduler_config)"
    if name == "dpmpp_2m":
        call = ('DPMSolverMultistepScheduler.from_config(scheduler_config, '
                'algorithm_type="dpmsolver++", solver_order=2)')
        return (d.DPMSolverMultistepScheduler.from_config(
            scheduler_config, algorithm_type="dpmsolver++", solver_order=2), call)
    if name == "euler_a":
        return (d.EulerAncestralDiscreteScheduler.from_config(scheduler_config),
                "EulerAncestralDiscreteScheduler.from_config(scheduler_config)")
    raise ValueError(name)


def step_kwargs(name, eta, g):
    kwargs = {"generator": g}
    if name == "ddim":
        kwargs["eta"] = eta
    return kwargs


def diffusers_loop(torch, unet, sch, name, x, timesteps, eta, g):
    for t in timesteps:
        inp = sch.scale_model_input(x, t)
        eps = unet(inp, t).sample
        x = sch.step(eps, t, x, **step_kwargs(name, eta, g)).prev_sample
    return x


def make_diffusers(args, out, torch, st):
    import diffusers as d
    from diffusers.utils.torch_utils import randn_tensor

    if os.path.exists(out):
        shutil.rmtree(out)
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir)
    torch.manual_seed(0)
    unet = d.UNet2DModel(**UNET_CONFIG)
    g = torch.Generator().manual_seed(12345)
    with torch.no_grad():
        for _, p in unet.named_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    unet.save_pretrained(model_dir, safe_serialization=True)
    d.DDPMScheduler(**SCHEDULER_CONFIG).save_config(model_dir)
    in_memory = unet.eval()
    unet = d.UNet2DModel.from_pretrained(model_dir).eval()
    scheduler_config = d.DDPMScheduler.load_config(model_dir)
    n_params = sum(p.numel() for p in unet.parameters())
    n_tensors = len(list(unet.parameters()))
    conv_shapes = sorted({tuple(m.weight.shape) for m in unet.modules()
                          if isinstance(m, torch.nn.Conv2d)})

    cases, sections, sanity = [], [], []

    def save(name, tensors):
        path = os.path.join(out, name)
        st.save_file(tensors, path)
        return os.path.getsize(path)

    # -- network outputs --
    with torch.no_grad():
        torch.manual_seed(1234)
        x = torch.randn(2, 3, 16, 16)
        t = torch.tensor([0, 99], dtype=torch.int64)
        t_float = torch.tensor([12.5, 64.25], dtype=torch.float32)
        torch.manual_seed(1235)
        x_large = torch.randn(1, 3, 48, 48)
        t_large = torch.tensor([57], dtype=torch.int64)
        tensors = {"x": x, "t": t, "out": unet(x, t).sample, "t_float": t_float,
                   "out_float": unet(x, t_float).sample, "x_large": x_large, "t_large": t_large,
                   "out_large": unet(x_large, t_large).sample}
        same = all(torch.equal(in_memory(a, b).sample, tensors[o]) for a, b, o in
                   ((x, t, "out"), (x, t_float, "out_float"), (x_large, t_large, "out_large")))
        sanity.append("UNet2DModel.from_pretrained(model/) vs the in-memory model on the unet inputs: "
                      + ("bitwise identical" if same else "DIFFERENT"))
        # The same outputs in float64, and in float32 with oneDNN off: the reference is not a
        # product of a faulty convolution kernel.
        u64 = d.UNet2DModel.from_pretrained(model_dir).eval().double()
        err64 = max((u64(a.double(), b).sample - tensors[o].double()).abs().max().item()
                    for a, b, o in ((x, t, "out"), (x, t_float, "out_float"), (x_large, t_large, "out_large")))
        with torch.backends.mkldnn.flags(enabled=False):
            err_native = max((unet(a, b).sample - tensors[o]).abs().max().item()
                             for a, b, o in ((x, t, "out"), (x, t_float, "out_float"),
                                             (x_large, t_large, "out_large")))
    sanity.append(f"network outputs in float64 (same weights): max |float64 - out*| = {err64:.2e}")
    sanity.append(f"network outputs in float32 with oneDNN disabled (torch.backends.mkldnn): "
                  f"max |native - out*| = {err_native:.2e}")
    size = save("unet.safetensors", tensors)
    cases.append({"kind": "unet", "file": "unet.safetensors"})
    sections.append((
        "unet.safetensors", "unet", cases[-1],
        ["`torch.manual_seed(1234); x = torch.randn(2, 3, 16, 16)`; `t = torch.tensor([0, 99])` (int64); "
         "`out = unet(x, t).sample`",
         "`t_float = torch.tensor([12.5, 64.25])`; `out_float = unet(x, t_float).sample`",
         "`torch.manual_seed(1235); x_large = torch.randn(1, 3, 48, 48)`; `t_large = torch.tensor([57])`; "
         "`out_large = unet(x_large, t_large).sample` (one image large enough that LibTorch sends "
         "its float32 3x3 convolutions to oneDNN)",
         f"out: {describe(tensors['out'])}; out_large: {describe(tensors['out_large'])}",
         f"file size {size:,} B; tensors:", *tensor_lines(tensors)]))

    # -- generate --
    with torch.no_grad():
        for name, steps, eta, seed, batch, h, w in DIFFUSERS_GENERATE:
            sch, call = make_sampler(d, name, scheduler_config)
            sch.set_timesteps(steps)
            g = torch.Generator().manual_seed(seed)
            noise = randn_tensor((batch, 3, h, w), generator=g)
            x = noise * sch.init_noise_sigma
            x = diffusers_loop(torch, unet, sch, name, x, sch.timesteps, eta, g)
            image = (x / 2 + 0.5).clamp(0, 1)
            file = (f"generate_{name}_{steps}" + (f"_eta{eta:g}" if name == "ddim" else "")
                    + f"_b{batch}_{h}x{w}.safetensors")
            tensors = {"noise": noise, "image": image}
            if name not in ("ddpm", "ddim"):   # they clip x0: x_final lies in [-1, 1], image holds it
                tensors["x_final"] = x
            tensors["timesteps"] = sch.timesteps.clone()
            entry = {"kind": "generate", "sampler": name, "steps": steps, "eta": eta, "seed": seed,
                     "batch": batch, "height": h, "width": w, "file": file}
            check = None
            if name in ("ddpm", "ddim") and (h, w) == (16, 16):
                pipe_cls = d.DDPMPipeline if name == "ddpm" else d.DDIMPipeline
                pipe = pipe_cls(unet, d.DDPMScheduler.from_config(scheduler_config))
                pipe.set_progress_bar_config(disable=True)
                kwargs = {"eta": eta} if name == "ddim" else {}
                images = pipe(batch_size=batch, generator=torch.Generator().manual_seed(seed),
                              num_inference_steps=steps, output_type="np", **kwargs).images
                same = torch.equal(torch.from_numpy(images).permute(0, 3, 1, 2), image)
                check = (f"`{pipe_cls.__name__}(unet, DDPMScheduler.from_config(scheduler_config))"
                         f"(batch_size={batch}, generator=torch.Generator().manual_seed({seed}), "
                         + (f"eta={eta}, " if name == "ddim" else "")
                         + f"num_inference_steps={steps}, output_type='np')` -> "
                         + ("bitwise identical to `image`" if same else "DIFFERENT"))
                entry["pipeline_check"] = f"{pipe_cls.__name__}: " + (
                    "bitwise identical" if same else "DIFFERENT")
                sanity.append(f"{file}: {check}")
            with torch.backends.mkldnn.flags(enabled=False):
                sch2, _ = make_sampler(d, name, scheduler_config)
                sch2.set_timesteps(steps)
                g2 = torch.Generator().manual_seed(seed)
                x2 = randn_tensor((batch, 3, h, w), generator=g2) * sch2.init_noise_sigma
                x2 = diffusers_loop(torch, unet, sch2, name, x2, sch2.timesteps, eta, g2)
                err_native = ((x2 / 2 + 0.5).clamp(0, 1) - image).abs().max().item()
            sanity.append(f"{file}: the same run with oneDNN disabled: max |native - image| = {err_native:.2e}")
            size = save(file, tensors)
            cases.append(entry)
            lines = [
                f"`{call}`; `set_timesteps({steps})`; `g = torch.Generator().manual_seed({seed})`",
                f"`noise = randn_tensor(({batch}, 3, {h}, {w}), generator=g)`; "
                f"`x = noise * scheduler.init_noise_sigma` (= {float(sch.init_noise_sigma):g})",
                "loop over `scheduler.timesteps`: `inp = scheduler.scale_model_input(x, t)`; "
                "`eps = unet(inp, t).sample`; `x = scheduler.step(eps, t, x, "
                + ("eta=%g, " % eta if name == "ddim" else "") + "generator=g).prev_sample`",
                "`image = (x_final / 2 + 0.5).clamp(0, 1)` where x_final = x after the loop"
                + ("" if "x_final" not in tensors else " (stored as an extra: this sampler does not clip)")
                + "; `timesteps` (extra) = the timesteps looped over: "
                + str([round(v, 3) if isinstance(v, float) else v for v in sch.timesteps.tolist()]),
                f"image: {describe(image)}; x_final: {describe(x)}",
            ]
            if check:
                lines.append("pipeline check: " + check)
            lines += [f"file size {size:,} B; tensors:", *tensor_lines(tensors)]
            sections.append((file, "generate", entry, lines))

    # -- img2img --
    with torch.no_grad():
        for name, steps, strength, seed, eta, h, w in DIFFUSERS_IMG2IMG:
            def run():
                sch, call = make_sampler(d, name, scheduler_config)
                sch.set_timesteps(steps)
                init_timestep = min(int(steps * strength), steps)
                t_start = max(steps - init_timestep, 0)
                timesteps = sch.timesteps[t_start * sch.order:]
                if hasattr(sch, "set_begin_index"):
                    sch.set_begin_index(t_start * sch.order)
                image_in = smooth_image(torch, h, w)
                init = image_in * 2 - 1
                g = torch.Generator().manual_seed(seed)
                noise = randn_tensor(init.shape, generator=g)
                noised = sch.add_noise(init, noise, timesteps[:1].repeat(1))
                x = diffusers_loop(torch, unet, sch, name, noised, timesteps, eta, g)
                return call, t_start, timesteps, image_in, noise, noised, x
            call, t_start, timesteps, image_in, noise, noised, x = run()
            image = (x / 2 + 0.5).clamp(0, 1)
            with torch.backends.mkldnn.flags(enabled=False):
                err_native = ((run()[-1] / 2 + 0.5).clamp(0, 1) - image).abs().max().item()
            file = f"img2img_{name}_{steps}_s{strength:g}_{h}x{w}.safetensors"
            sanity.append(f"{file}: the same run with oneDNN disabled: max |native - image| = {err_native:.2e}")
            tensors = {"input": image_in, "noise": noise, "noised": noised, "image": image,
                       "x_final": x, "timesteps": timesteps.clone()}
            size = save(file, tensors)
            entry = {"kind": "img2img", "sampler": name, "steps": steps, "strength": strength,
                     "seed": seed, "eta": eta, "file": file}
            cases.append(entry)
            sections.append((file, "img2img", entry, [
                f"`{call}`; `set_timesteps({steps})`; init_timestep = min(int({steps}*{strength}), {steps}); "
                f"t_start = {t_start}; `timesteps = scheduler.timesteps[t_start * scheduler.order:]` = "
                f"{timesteps.tolist()}; `scheduler.set_begin_index(t_start)` where the scheduler has it",
                f"`input` = smooth test image (1, 3, {h}, {w}) in [0, 1] (sinusoids, smooth_image() in the "
                "script); `init = input * 2 - 1`",
                f"`g = torch.Generator().manual_seed({seed})`; `noise = randn_tensor(init.shape, generator=g)`; "
                "`noised = scheduler.add_noise(init, noise, timesteps[:1].repeat(1))` (extra)",
                "same loop as generate from `noised` over `timesteps`; `image = (x_final / 2 + 0.5).clamp(0, 1)`",
                f"image: {describe(image)}; x_final: {describe(x)}",
                f"file size {size:,} B; tensors:", *tensor_lines(tensors)]))

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(cases, f, indent=2)
        f.write("\n")

    files = folder_files(out)
    total = sum(os.path.getsize(os.path.join(out, p)) for p in files)
    weights = os.path.join(model_dir, "diffusion_pytorch_model.safetensors")
    readme = [
        "# Fixture case `diffusers-odd`",
        "",
        "Reference outputs of the real huggingface/diffusers implementation for a UNet2DModel whose "
        "convolutions have **20 and 40 channels**: the widths whose oneDNN kernels Debian 13's libdnnl "
        "3.7.2 computes wrongly on AVX-512 CPUs (docs/numerics.md, issue 16). Same format as "
        "`diffusers-tiny` (see its README for the diffusers semantics a port must match). Made by "
        "`tools/make_odd_fixtures.py` (re-runnable; byte-for-byte deterministic).",
        "",
        "Tests: `DiffusersUNet.OddWidthModelMatchesDiffusersOnEveryRoute` (network outputs, 1e-4), "
        "`Pipeline.OddWidthDiffusersCasesMatchOnEveryRoute` (every generate and img2img case, 2e-3) and "
        "`tests/test_cli_sample.py` (through the CLI), each on the routes of tests/conv_routes.h; "
        "figures with and without the convolution guard in docs/numerics.md.",
        "",
        "## Provenance",
        "",
        f"- diffusers commit `{args.diffusers_commit}` (github.com/huggingface/diffusers), "
        f"`diffusers.__version__` = `{d.__version__}`",
        f"- torch `{torch.__version__}` (CPU, float32, `torch.set_num_threads(1)`, default contiguous "
        f"layout), oneDNN loaded: `{onednn_version()}`, numpy `{args.numpy_version}`, "
        f"safetensors `{args.safetensors_version}`, Python `{platform.python_version()}`",
        "- huggingface_hub `1.99.0-stub` and httpx = offline stand-ins written by the script: they only "
        "let diffusers import; nothing touched a hub",
        "- command: `tools/env python3 tools/make_odd_fixtures.py --diffusers <diffusers work tree> "
        f"--diffusers-commit {args.diffusers_commit} ...` (see the script's docstring)",
        "",
        "## Model (`model/`)",
        "",
        "```python",
        "torch.manual_seed(0)",
        f"unet = UNet2DModel(**{json.dumps(UNET_CONFIG)})",
        "g = torch.Generator().manual_seed(12345)",
        "for _, p in unet.named_parameters():   # every parameter, in named_parameters() order",
        "    p.add_(0.02 * torch.randn(p.shape, generator=g))",
        "unet.save_pretrained('model', safe_serialization=True)",
        f"DDPMScheduler(**{json.dumps(SCHEDULER_CONFIG)}).save_config('model')",
        "```",
        "",
        f"- parameter count: **{n_params:,}** ({n_tensors} tensors, all float32); "
        f"`diffusion_pytorch_model.safetensors` {os.path.getsize(weights):,} B",
        f"- convolution weight shapes [out, in, k, k]: {', '.join(str(list(s)) for s in conv_shapes)}",
        "- every check below was computed with the model re-loaded by `UNet2DModel.from_pretrained('model')`, "
        "in eval mode, under `torch.no_grad()`; `scheduler_config = DDPMScheduler.load_config('model')` and "
        "every sampler is built from it with `from_config`",
        "- batches of two, or one image of 48x48: LibTorch sends float32 convolutions to oneDNN only "
        "for batches over one or inputs over 20480 values, so smaller runs would not reach the faulty "
        "kernels at all",
        "",
        "## Checks (`cases.json`)",
        "",
    ]
    for file, kind, entry, lines in sections:
        readme += [f"### `{file}` (kind `{kind}`)", "",
                   f"cases.json entry: `{json.dumps(entry)}`", ""]
        readme += [l if l.startswith("  - ") else "- " + l for l in lines]
        readme.append("")
    readme += ["## Sanity checks run by the generator", ""]
    readme += ["- " + s for s in sanity]
    readme += [f"- folder size without this README: {total:,} B", "", "## File checksums (sha256)", ""]
    readme += [f"- `{p}` `{sha256(os.path.join(out, p))}`" for p in files]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(readme) + "\n")
    print(f"{out}: {n_params} parameters, {total} B")
    for s in sanity:
        print("  " + s)


# ---------------------------------------------------------------------------------------------
# denoising-diffusion-pytorch Unet
# ---------------------------------------------------------------------------------------------

DDPM_UNET = {"dim": 20, "dim_mults": (1, 2), "channels": 3, "attn_heads": 2, "attn_dim_head": 20,
             "flash_attn": False}
DDPM_DIFFUSION = {"image_size": 16, "timesteps": 100, "sampling_timesteps": 10,
                  "objective": "pred_v", "beta_schedule": "sigmoid"}
# (sampler, steps, eta, seed, batch, height, width)
DDPM_GENERATE = [
    ("ddpm", 100, 0.0, 1001, 2, 16, 16),
    ("ddim", 10, 0.0, 1002, 2, 16, 16),
    ("ddim", 10, 1.0, 1003, 1, 48, 48),
]
BUFFERS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
           "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
           "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
           "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
           "loss_weight"]


def make_lucidrains(args, out, torch, st):
    from denoising_diffusion_pytorch.denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from denoising_diffusion_pytorch.version import __version__ as ddpm_version
    from ema_pytorch import EMA

    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    torch.manual_seed(20261205)
    unet = Unet(**DDPM_UNET)
    diffusion = GaussianDiffusion(unet, **DDPM_DIFFUSION)
    g = torch.Generator().manual_seed(54321)
    with torch.no_grad():
        for _, p in unet.named_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    ema = EMA(diffusion, beta=0.995, update_every=10)   # the Trainer's EMA settings
    ema.update()   # first update: copies the online weights into the EMA model
    with torch.no_grad():   # stand-in for an optimizer step: the online weights move on
        for _, p in unet.named_parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    ema.update()   # step 1 is not a multiple of update_every: the EMA weights stay
    opt = torch.optim.Adam(diffusion.parameters(), lr=1e-3, betas=(0.9, 0.99))
    data = {"step": 2, "model": diffusion.state_dict(), "opt": opt.state_dict(),
            "ema": ema.state_dict(), "scaler": None, "version": ddpm_version}
    ckpt_path = os.path.join(out, "model-1.pt")
    torch.save(data, ckpt_path)   # what Trainer.save writes, key for key
    n_params = sum(p.numel() for p in unet.parameters())
    n_tensors = len(list(unet.parameters()))
    conv_shapes = sorted({tuple(m.weight.shape) for m in unet.modules()
                          if isinstance(m, torch.nn.Conv2d)})

    ckpt = torch.load(ckpt_path, weights_only=True)

    def fresh(prefix, state, **overrides):
        kw = dict(DDPM_DIFFUSION)
        kw.update(overrides)
        torch.manual_seed(0)
        dm = GaussianDiffusion(Unet(**DDPM_UNET), **kw)
        dm.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        return dm.eval()

    ema_diffusion = fresh("ema_model.", ckpt["ema"])
    online_diffusion = fresh("", ckpt["model"])
    cases, sections, sanity = [], [], []
    sanity.append("max |online - EMA| over the Unet weights = %.3e" % max(
        (a - b).abs().max().item() for a, b in
        zip(online_diffusion.model.parameters(), ema_diffusion.model.parameters())))

    def save(name, tensors):
        path = os.path.join(out, name)
        st.save_file(tensors, path)
        return os.path.getsize(path)

    with torch.inference_mode():
        torch.manual_seed(1234)
        x = torch.randn(2, 3, 16, 16)
        t = torch.tensor([11, 99], dtype=torch.int64)
        for weights, dm, file in (("ema", ema_diffusion, "unet_ema.safetensors"),
                                  ("model", online_diffusion, "unet_model.safetensors")):
            out_t = dm.model(x, t, None)
            u64 = fresh("ema_model." if weights == "ema" else "", ckpt["ema" if weights == "ema" else "model"])
            u64.double()
            torch.set_default_dtype(torch.float64)   # its time embedding follows the default
            try:
                err64 = (u64.model(x.double(), t, None) - out_t.double()).abs().max().item()
            finally:
                torch.set_default_dtype(torch.float32)
            with torch.backends.mkldnn.flags(enabled=False):
                err_native = (dm.model(x, t, None) - out_t).abs().max().item()
            sanity.append(f"{file}: float64 max |diff| = {err64:.2e}; oneDNN disabled max |diff| = {err_native:.2e}")
            tensors = {"x": x, "t": t, "out": out_t}
            size = save(file, tensors)
            entry = {"kind": "unet", "weights": weights, "file": file, "x_self_cond": "None",
                     "out_shape": list(out_t.shape)}
            cases.append(entry)
            sections.append((file, "unet", entry, [
                "`torch.manual_seed(1234); x = torch.randn(2, 3, 16, 16)`; `t = torch.tensor([11, 99])`; "
                f"`out = diffusion.model(x, t, None)` with the `{weights}` weights",
                f"out: {describe(out_t)}", f"file size {size:,} B; tensors:", *tensor_lines(tensors)]))

    # schedule buffers and DDIM time pairs
    times = torch.linspace(-1, DDPM_DIFFUSION["timesteps"] - 1,
                           steps=DDPM_DIFFUSION["sampling_timesteps"] + 1).int().tolist()
    times = list(reversed(times))
    pairs = list(zip(times[:-1], times[1:]))
    tensors = {b: getattr(ema_diffusion, b).clone() for b in BUFFERS}
    tensors[f"ddim_time_pairs_{DDPM_DIFFUSION['sampling_timesteps']}"] = torch.tensor(pairs, dtype=torch.int64)
    size = save("schedule.safetensors", tensors)
    entry = {"kind": "schedule", "file": "schedule.safetensors", "buffers": BUFFERS,
             "num_timesteps": DDPM_DIFFUSION["timesteps"],
             "ddim_time_pairs": {str(DDPM_DIFFUSION["sampling_timesteps"]): [list(p) for p in pairs]}}
    cases.append(entry)
    sections.append(("schedule.safetensors", "schedule", {"kind": "schedule", "file": "schedule.safetensors"}, [
        "every buffer GaussianDiffusion registers, as stored in the checkpoint, plus "
        "`ddim_time_pairs_10` = the (time, time_next) pairs `ddim_sample` iterates",
        f"file size {size:,} B"]))

    for name, steps, eta, seed, batch, h, w in DDPM_GENERATE:
        def run():
            dm = fresh("ema_model.", ckpt["ema"], image_size=(h, w), sampling_timesteps=steps,
                       ddim_sampling_eta=eta)
            with torch.inference_mode():
                torch.manual_seed(seed)
                noise = torch.randn(batch, 3, h, w)
                torch.manual_seed(seed)
                return noise, dm.sample(batch_size=batch)
        noise, image = run()
        with torch.backends.mkldnn.flags(enabled=False):
            err_native = (run()[1] - image).abs().max().item()
        file = f"generate_{name}_{steps}_eta{eta:g}_b{batch}_{h}x{w}.safetensors"
        sanity.append(f"{file}: the same run with oneDNN disabled: max |native - image| = {err_native:.2e}")
        tensors = {"noise": noise, "image": image}
        size = save(file, tensors)
        entry = {"kind": "generate", "sampler": name, "steps": steps, "eta": eta, "seed": seed,
                 "batch": batch, "height": h, "width": w, "file": file, "weights": "ema",
                 "call": f"GaussianDiffusion.sample(batch_size={batch})",
                 "rng_draws": steps, "rng_draw_shape": [batch, 3, h, w],
                 "image_min": image.min().item(), "image_max": image.max().item()}
        cases.append(entry)
        sections.append((file, "generate", entry, [
            f"a fresh `GaussianDiffusion(Unet(...), image_size=({h}, {w}), sampling_timesteps={steps}, "
            f"ddim_sampling_eta={eta}, ...)` with the EMA weights (`ckpt['ema']['ema_model.*']`), eval",
            f"`torch.manual_seed({seed}); image = diffusion.sample(batch_size={batch})` "
            + ("(p_sample_loop)" if steps == DDPM_DIFFUSION["timesteps"] else "(ddim_sample)"),
            "`noise` (extra) = the first draw, `torch.randn` of the sample shape after the same seed",
            f"image: {describe(image)}", f"file size {size:,} B; tensors:", *tensor_lines(tensors)]))

    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"case": "lucidrains-odd", "checkpoint": "model-1.pt", "checks": cases}, f, indent=2)
        f.write("\n")
    hparams = {
        "package": {"name": "denoising-diffusion-pytorch", "version": ddpm_version,
                    "commit": args.ddpm_commit, "repo": "https://github.com/lucidrains/denoising-diffusion-pytorch"},
        "ema_pytorch": {"version": args.ema_version, "commit": args.ema_commit,
                        "repo": "https://github.com/lucidrains/ema-pytorch"},
        "torch": torch.__version__, "unet_class": "Unet",
        "unet": {k: list(v) if isinstance(v, tuple) else v for k, v in DDPM_UNET.items()},
        "diffusion_class": "GaussianDiffusion", "diffusion": DDPM_DIFFUSION,
        "unet_param_count": n_params,
    }
    with open(os.path.join(out, "hparams.json"), "w") as f:
        json.dump(hparams, f, indent=2)
        f.write("\n")

    files = folder_files(out)
    total = sum(os.path.getsize(os.path.join(out, p)) for p in files)
    readme = [
        "# Fixture case `lucidrains-odd`",
        "",
        "Reference outputs of the real lucidrains/denoising-diffusion-pytorch code for a `Unet` with "
        "`dim=20, dim_mults=(1, 2)`: convolutions of **20 and 40 channels**, the widths whose oneDNN "
        "kernels Debian 13's libdnnl 3.7.2 computes wrongly on AVX-512 CPUs (docs/numerics.md, issue 16). "
        "Same format as `lucidrains-tiny` (see its README for the checkpoint layout and the sampler "
        "semantics). Made by `tools/make_odd_fixtures.py` (re-runnable; byte-for-byte deterministic).",
        "",
        "Tests: `DdpmPytorchUnet.OddWidthModelMatchesPackageOnEveryRoute` (network outputs, 1e-4), "
        "`Pipeline.OddWidthDdpmPytorchCasesMatchOnEveryRoute` (every generate case, 2e-3) and "
        "`tests/test_cli_sample.py` (through the CLI), each on the routes of tests/conv_routes.h; "
        "figures with and without the convolution guard in docs/numerics.md.",
        "",
        "## Provenance",
        "",
        f"- denoising-diffusion-pytorch **{ddpm_version}**, commit `{args.ddpm_commit}` "
        "(github.com/lucidrains/denoising-diffusion-pytorch)",
        f"- ema-pytorch **{args.ema_version}**, commit `{args.ema_commit}` (github.com/lucidrains/ema-pytorch): "
        "the real `EMA` class",
        f"- torch `{torch.__version__}` (CPU, float32, `torch.set_num_threads(1)`), oneDNN loaded: "
        f"`{onednn_version()}`, einops `{args.einops_version}`, safetensors `{args.safetensors_version}`, "
        f"Python `{platform.python_version()}`",
        "- torchvision, accelerate, scipy and pytorch_fid are offline stand-ins written by the script: "
        "the package imports them at module level for its Trainer, dataset and immiscible noise, none "
        "of which runs here",
        "",
        "## How model-1.pt was made",
        "",
        "Not by a Trainer run (that needs accelerate and a dataset, and its Adam state would double the "
        "file): the same dict `Trainer.save` writes, key for key, with random weights:",
        "",
        "```python",
        "torch.manual_seed(20261205)",
        f"unet = Unet(**{DDPM_UNET})",
        f"diffusion = GaussianDiffusion(unet, **{DDPM_DIFFUSION})",
        "g = torch.Generator().manual_seed(54321)",
        "for _, p in unet.named_parameters(): p.add_(0.02 * torch.randn(p.shape, generator=g))",
        "ema = EMA(diffusion, beta=0.995, update_every=10)   # as the Trainer makes it",
        "ema.update()                                          # copies the online weights",
        "for _, p in unet.named_parameters(): p.add_(0.01 * torch.randn(p.shape, generator=g))",
        "ema.update()                                          # step 1: no change",
        "opt = Adam(diffusion.parameters(), lr=1e-3, betas=(0.9, 0.99))",
        "torch.save({'step': 2, 'model': diffusion.state_dict(), 'opt': opt.state_dict(),",
        "            'ema': ema.state_dict(), 'scaler': None, 'version': __version__}, 'model-1.pt')",
        "```",
        "",
        f"- Unet parameter count: **{n_params:,}** ({n_tensors} tensors); `model-1.pt` "
        f"{os.path.getsize(ckpt_path):,} B (online and EMA weights; the EMA's online copy shares "
        "storage with `model`; the optimizer state is empty)",
        "- attention: 2 heads of 20, narrower than the package default of 4 x 32 (which gives "
        "355,943 parameters); `attn_heads` and `attn_dim_head` are read back from `mem_kv`",
        f"- convolution weight shapes [out, in, k, k]: {', '.join(str(list(s)) for s in conv_shapes)}",
        "- batches of two, or one image of 48x48, so that LibTorch sends the float32 convolutions to "
        "oneDNN",
        "",
        "## Checks (`cases.json`)",
        "",
    ]
    for file, kind, entry, lines in sections:
        readme += [f"### `{file}` (kind `{kind}`)", ""]
        if kind != "schedule":
            readme += [f"cases.json entry: `{json.dumps(entry)}`", ""]
        readme += [l if l.startswith("  - ") else "- " + l for l in lines]
        readme.append("")
    readme += ["## Sanity checks run by the generator", ""]
    readme += ["- " + s for s in sanity]
    readme += [f"- folder size without this README: {total:,} B", "", "## File checksums (sha256)", ""]
    readme += [f"- `{p}` `{sha256(os.path.join(out, p))}`" for p in files]
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("\n".join(readme) + "\n")
    print(f"{out}: {n_params} parameters, {total} B")
    for s in sanity:
        print("  " + s)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--diffusers", help="diffusers work tree (with src/)")
    p.add_argument("--diffusers-commit", default="unknown")
    p.add_argument("--ddpm", help="denoising-diffusion-pytorch work tree")
    p.add_argument("--ddpm-commit", default="unknown")
    p.add_argument("--ema", help="ema-pytorch work tree")
    p.add_argument("--ema-commit", default="unknown")
    p.add_argument("--site", action="append", default=[],
                   help="extra folder for sys.path (safetensors, einops, tqdm)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data"))
    args = p.parse_args()

    stubs = tempfile.mkdtemp(prefix="gd-stubs-")
    write_stubs(stubs)
    sys.path[:0] = [stubs] + [os.path.abspath(s) for s in args.site]
    if args.diffusers:
        sys.path.insert(1, os.path.join(os.path.abspath(args.diffusers), "src"))
    for tree in (args.ddpm, args.ema):
        if tree:
            sys.path.insert(1, os.path.abspath(tree))

    import numpy
    import safetensors
    import safetensors.torch as st
    import torch
    torch.set_num_threads(1)
    args.numpy_version = numpy.__version__
    args.safetensors_version = safetensors.__version__
    try:
        import einops
        args.einops_version = einops.__version__
    except ImportError:
        args.einops_version = "-"
    args.ema_version = "-"
    if args.ema:
        with open(os.path.join(args.ema, "setup.py")) as f:
            found = re.search(r"version\s*=\s*'([^']+)'", f.read())
        args.ema_version = found.group(1) if found else "-"
    out = os.path.abspath(args.out)
    try:
        if args.diffusers:
            make_diffusers(args, os.path.join(out, "diffusers-odd"), torch, st)
        if args.ddpm:
            make_lucidrains(args, os.path.join(out, "lucidrains-odd"), torch, st)
    finally:
        shutil.rmtree(stubs)


if __name__ == "__main__":
    main()
