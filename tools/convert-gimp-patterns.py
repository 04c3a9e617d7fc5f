#!/usr/bin/env python3
"""Converts GIMP's own patterns (Debian's gimp-data and gimp-data-extras) into PNG training data.

    tools/env python3 tools/convert-gimp-patterns.py OUT_DIR [PATTERN_DIR ...]

Writes OUT_DIR/train/*.png and OUT_DIR/heldout/*.png, and OUT_DIR/SOURCES.md listing every file,
its package and the package's licence. The held-out set is fixed: every 8th pattern in sorted
order of its source path, so it never depends on which machine ran the script. GIMP pattern
files (.pat, "GPAT" version 1) are: big-endian header size, version, width, height, bytes per
pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), the magic "GPAT", a NUL-terminated UTF-8 name, then
the raw pixels. Alpha is dropped (composited on mid gray) since texture models are RGB.
"""
import os
import struct
import subprocess
import sys
import zlib

DEFAULT_DIRS = ["/usr/share/gimp/3.0/patterns", "/usr/share/gimp/2.0/patterns"]
HELD_OUT_EVERY = 8


def read_pat(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("too short for a GIMP pattern header")
    header_size, version, width, height, depth = struct.unpack(">IIIII", data[:20])
    if data[20:24] != b"GPAT" or version != 1:
        raise ValueError("not a version 1 GIMP pattern")
    if depth not in (1, 2, 3, 4) or width < 1 or height < 1 or width * height > 1 << 26:
        raise ValueError(f"unsupported pattern {width}x{height}x{depth}")
    pixels = data[header_size:header_size + width * height * depth]
    if header_size < 24 or len(pixels) != width * height * depth:
        raise ValueError("pixel data is truncated")
    rgb = bytearray()
    for i in range(0, len(pixels), depth):
        px = pixels[i:i + depth]
        if depth in (1, 2):
            r = g = b = px[0]
        else:
            r, g, b = px[0], px[1], px[2]
        a = px[-1] if depth in (2, 4) else 255
        # Composite on mid gray: transparent pattern areas become neutral, not black.
        rgb += bytes(int(round(c * a / 255 + 128 * (255 - a) / 255)) for c in (r, g, b))
    return width, height, bytes(rgb)


def write_png(path, width, height, rgb):
    raw = b"".join(b"\0" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    os.replace(tmp, path)


def owning_package(path):
    try:
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=True).stdout
        return out.split(":")[0]
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = sys.argv[1]
    dirs = sys.argv[2:] or [d for d in DEFAULT_DIRS if os.path.isdir(d)]
    sources = sorted(os.path.join(root, name) for d in dirs for root, _, names in os.walk(d)
                     for name in names if name.lower().endswith(".pat"))
    if not sources:
        print("convert-gimp-patterns: no .pat files found in " + ", ".join(dirs), file=sys.stderr)
        return 1
    # Start from empty splits: a pattern must never sit in both from an earlier run.
    for part in ("train", "heldout"):
        os.makedirs(os.path.join(out, part), exist_ok=True)
        for old in os.listdir(os.path.join(out, part)):
            if old.endswith(".png"):
                os.remove(os.path.join(out, part, old))
    lines = ["# Sources", "", "| file | split | size | package |", "| --- | --- | --- | --- |"]
    packages = set()
    for index, src in enumerate(sources):
        try:
            width, height, rgb = read_pat(src)
        except ValueError as e:
            print(f"skipped {src}: {e}", file=sys.stderr)
            continue
        split = "heldout" if index % HELD_OUT_EVERY == 0 else "train"
        name = os.path.relpath(src, os.path.commonpath(dirs)).replace(os.sep, "_")[:-4] + ".png"
        write_png(os.path.join(out, split, name), width, height, rgb)
        package = owning_package(src)
        packages.add(package)
        lines.append(f"| {name} | {split} | {width}x{height} | {package} |")
    lines += ["", "Licences: see /usr/share/doc/<package>/copyright for " + ", ".join(sorted(packages)) + "."]
    with open(os.path.join(out, "SOURCES.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(sources)} patterns -> {out}/train, {out}/heldout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
