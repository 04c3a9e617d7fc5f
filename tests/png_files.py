"""Minimal PNG encoding and decoding for the end-to-end tests, in the standard library only.

Pillow would do, but it reads 16-bit RGB as 8-bit, and the tests compare 16-bit results to 1e-5.
Samples are raw big-endian bytes, rows one after another: non-interlaced, 8 or 16 bits, gray,
gray+alpha, RGB or RGBA (no palette).
"""
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}   # channels -> PNG colour type
CHANNELS = {v: k for k, v in COLOR_TYPE.items()}


def encode_png(path, width, height, channels, depth, samples):
    """Writes `samples` (height rows of width * channels samples) unfiltered."""
    stride = width * channels * depth // 8
    assert len(samples) == height * stride, (len(samples), height, stride)
    raw = b"".join(b"\x00" + samples[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    with open(path, "wb") as f:
        f.write(SIGNATURE)
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, COLOR_TYPE[channels], 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def decode_png(path):
    """-> (width, height, channels, depth, samples), undoing all five row filters."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == SIGNATURE, path
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            w, h, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    assert interlace == 0 and color_type in CHANNELS and depth in (8, 16), (path, color_type, depth)
    channels = CHANNELS[color_type]
    bpp = channels * depth // 8
    stride = w * bpp
    raw = zlib.decompress(idat)
    out = bytearray(h * stride)
    prev = bytearray(stride)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, channels, depth, bytes(out)
