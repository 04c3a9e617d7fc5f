#!/usr/bin/env python3
"""Writes tests/data/torchscript-tiny: a small TorchScript denoiser in our documented folder
layout, plus reference.safetensors (x, t, out) computed by PyTorch itself.

Run inside the build environment (python3-torch):  tools/env python3 tools/make_torchscript_fixture.py
It is also the worked example of README's "Exporting any model to TorchScript" section.

  tools/env python3 tools/make_torchscript_fixture.py tests/data/torchscript-odd --width 20 --size 48
writes the 20-channel variant used against wrong oneDNN kernels (docs/numerics.md): its
reference is computed with oneDNN off (LibTorch's own kernels) at batch 2 and 48x48, a size that
LibTorch sends to oneDNN.
"""
import json
import os
import struct
import sys

import torch


class TinyDenoiser(torch.nn.Module):
    """conv -> SiLU -> conv, with a sinusoidal timestep embedding added in between."""

    def __init__(self, channels: int = 3, width: int = 8):
        super().__init__()
        self.width = width
        self.conv_in = torch.nn.Conv2d(channels, width, 3, padding=1)
        self.time = torch.nn.Linear(width, width)
        self.down = torch.nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(width, width, 2, stride=2)
        self.conv_out = torch.nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        freqs = torch.exp(-torch.arange(half, dtype=torch.float32) * (9.21 / half))
        angles = t.to(torch.float32)[:, None] * freqs[None, :]
        emb = self.time(torch.cat([angles.sin(), angles.cos()], dim=1))   # [N, width]
        h = torch.nn.functional.silu(self.conv_in(x) + emb[:, :, None, None])
        h = h + self.up(torch.nn.functional.silu(self.down(h)))
        return self.conv_out(h)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        data = tensor.numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[tensor.dtype]
        header[name] = {"dtype": dtype, "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("out", nargs="?", default="tests/data/torchscript-tiny")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--size", type=int, default=16)
    a = p.parse_args()
    out = a.out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = TinyDenoiser(width=a.width).eval()

    # The export: script (or trace) the module and save it beside the two JSON files.
    torch.jit.script(model).save(os.path.join(out, "model.pt"))
    with open(os.path.join(out, "gimp-diffusion.json"), "w") as f:
        json.dump({"format": "torchscript", "module": "model.pt", "in_channels": 3,
                   "out_channels": 3, "sample_size": [16, 16], "downsampling_factor": 2}, f, indent=2)
    with open(os.path.join(out, "scheduler_config.json"), "w") as f:
        json.dump({"_class_name": "DDPMScheduler", "num_train_timesteps": 100,
                   "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
                   "clip_sample": True}, f, indent=2)

    torch.manual_seed(1)
    x = torch.randn(2, 3, a.size, a.size)
    t = torch.tensor([3, 77], dtype=torch.int64)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=a.width == 8):
        reference = model(x, t)
    write_safetensors(os.path.join(out, "reference.safetensors"), {"x": x, "t": t, "out": reference})


if __name__ == "__main__":
    main()
