"""Float32 image batches in the safetensors files the CLI reads and writes (`-o OUT.safetensors`,
`--input IN.safetensors`): one tensor named "image", float32 [N, C, H, W].

The quality and benchmark scripts share these two functions instead of each writing the format.
"""
import json
import struct

import numpy as np


def write_images(path, images):
    """images: [N, C, H, W] -> PATH (as float32, little-endian)."""
    data = np.ascontiguousarray(images, dtype="<f4").tobytes()
    header = json.dumps({"image": {"dtype": "F32", "shape": list(images.shape),
                                   "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)  # the format allows space padding; 8-byte alignment
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)


def read_images(path):
    """PATH's tensor "image" as a float32 array [N, C, H, W]."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        info = json.loads(f.read(n))["image"]
        start, end = info["data_offsets"]
        f.seek(8 + n + start)
        data = np.frombuffer(f.read(end - start), dtype="<f4")
    return data.reshape(info["shape"]).astype(np.float32)
