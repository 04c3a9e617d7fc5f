#!/usr/bin/env python3
"""End-to-end tests of gimp-diffusion-cli inpaint and make-seamless on the tiny diffusers model.

The bytes outside the mask (outside the band) must come back identical, a seed must reproduce
the fill, and every bad input must fail with one error line, a non-zero exit and no output
file. Run by meson test with GD_CLI and TEST_DATA_DIR.
"""
import os
import shutil
import tempfile
import unittest

from test_cli_sample import DIFFUSERS, read_png, run, write_png

W, H = 24, 20


def texture_rows(width, height):
    """RGB rows: a ramp left to right with stripes, which does not tile."""
    return [[(x * 10 + (y % 3) * 20 + c * 30) % 256 for x in range(width) for c in range(3)]
            for y in range(height)]


def mask_rows(width, height, box, gray=None):
    """Gray rows: 255 inside box = (x0, y0, x1, y1), 0 elsewhere; gray = (x, y) set to 128."""
    x0, y0, x1, y1 = box
    rows = [[255 if x0 <= x < x1 and y0 <= y < y1 else 0 for x in range(width)]
            for y in range(height)]
    if gray:
        rows[gray[1]][gray[0]] = 128
    return rows


class Inpaint(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.input = os.path.join(self.tmp, "in.png")
        self.mask = os.path.join(self.tmp, "mask.png")
        write_png(self.input, W, H, 3, 8, texture_rows(W, H))
        write_png(self.mask, W, H, 1, 8, mask_rows(W, H, (8, 6, 16, 14), gray=(2, 2)))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def inpaint(self, out, *extra, seed=5):
        code, _, err = run("inpaint", "--model", DIFFUSERS, "-i", self.input, "--mask", self.mask,
                           "-o", out, "--steps", "12", "--resample", "2", "--seed", str(seed), *extra)
        self.assertEqual(code, 0, err)
        return read_png(out)[4], err

    def test_known_bytes_identical_and_seed_reproduces(self):
        a, err = self.inpaint(os.path.join(self.tmp, "a.png"))
        b, _ = self.inpaint(os.path.join(self.tmp, "b.png"))
        other, _ = self.inpaint(os.path.join(self.tmp, "c.png"), seed=6)
        self.assertIn("RePaint, 2 resamplings every 10 steps", err)
        self.assertIn("sampler ddpm", err)
        original = texture_rows(W, H)
        mask = mask_rows(W, H, (8, 6, 16, 14), gray=(2, 2))
        changed = 0
        for y in range(H):
            for x in range(W):
                px = slice(3 * x, 3 * x + 3)
                if mask[y][x] == 0:
                    self.assertEqual(a[y][px], original[y][px], (x, y))
                elif mask[y][x] == 255:
                    changed += a[y][px] != original[y][px]
        self.assertGreater(changed, 32, "the hole is regenerated")
        self.assertEqual(a, b, "the same seed gives the same fill")
        self.assertNotEqual(a, other)

    def test_ddim_and_a_margin(self):
        self.inpaint(os.path.join(self.tmp, "d.png"), "--sampler", "ddim", "--eta", "0.5",
                     "--context-margin", "4")


class MakeSeamless(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.input = os.path.join(self.tmp, "in.png")
        write_png(self.input, 16, 16, 3, 8, texture_rows(16, 16))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_outside_the_band_unchanged(self):
        out = os.path.join(self.tmp, "out.png")
        code, _, err = run("make-seamless", "--model", DIFFUSERS, "-i", self.input, "-o", out,
                           "--band", "4", "--steps", "10", "--resample", "1", "--seed", "2")
        self.assertEqual(code, 0, err)
        result, original = read_png(out)[4], texture_rows(16, 16)
        # The band runs along the edges: rows and columns 0-1 and 14-15 after offsetting back.
        for y in range(2, 14):
            self.assertEqual(result[y][6:42], original[y][6:42], y)
        self.assertNotEqual(result[0], original[0])

    def test_any_size(self):
        """15x16 is off the tiny model's grid of 2: the band still comes back, the rest exact."""
        odd = os.path.join(self.tmp, "odd.png")
        out = os.path.join(self.tmp, "odd-out.png")
        write_png(odd, 15, 16, 3, 8, texture_rows(15, 16))
        code, _, err = run("make-seamless", "--model", DIFFUSERS, "-i", odd, "-o", out,
                           "--band", "4", "--steps", "10", "--resample", "1", "--seed", "2")
        self.assertEqual(code, 0, err)
        result, original = read_png(out)[4], texture_rows(15, 16)
        # Rows 0-1 and 14-15, columns 0-1 and 13-14 form the band.
        for y in range(2, 14):
            self.assertEqual(result[y][6:39], original[y][6:39], y)
        self.assertNotEqual(result[0], original[0])


class BadInputs(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.input = os.path.join(self.tmp, "in.png")
        write_png(self.input, W, H, 3, 8, texture_rows(W, H))
        self.out = os.path.join(self.tmp, "out.png")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def mask(self, rows, width=W, height=H):
        path = os.path.join(self.tmp, "mask.png")
        write_png(path, width, height, 1, 8, rows)
        return path

    def expect_failure(self, *args, needle):
        code, _, err = run(*args)
        self.assertGreater(code, 0, err)
        lines = [l for l in err.strip("\n").split("\n") if l.startswith("gimp-diffusion-cli")]
        self.assertEqual(len(lines), 1, err)
        self.assertIn(needle, lines[0])
        self.assertFalse(os.path.exists(self.out), "output left behind")

    def inpaint(self, mask, *extra):
        return ("inpaint", "--model", DIFFUSERS, "-i", self.input, "--mask", mask, "-o", self.out,
                "--steps", "4", *extra)

    def test_empty_and_full_masks(self):
        self.expect_failure(*self.inpaint(self.mask(mask_rows(W, H, (0, 0, 0, 0)))),
                            needle="--mask: the mask is empty")
        self.expect_failure(*self.inpaint(self.mask(mask_rows(W, H, (0, 0, W, H)))),
                            needle="use generate")

    def test_mask_of_another_size(self):
        self.expect_failure(*self.inpaint(self.mask(mask_rows(W, 8, (1, 1, 4, 4)), W, 8)),
                            needle="--mask: the mask is 24x8")

    def test_missing_mask(self):
        self.expect_failure("inpaint", "--model", DIFFUSERS, "-i", self.input, "-o", self.out,
                            needle="--mask")

    def test_samplers_that_cannot_renoise(self):
        mask = self.mask(mask_rows(W, H, (4, 4, 8, 8)))
        for sampler in ("dpmpp_2m", "euler", "euler_a"):
            self.expect_failure(*self.inpaint(mask, "--sampler", sampler),
                                needle="--sampler %s cannot inpaint" % sampler)

    def test_band_wider_than_half(self):
        seamless = ("make-seamless", "--model", DIFFUSERS, "-i", self.input, "-o", self.out)
        self.expect_failure(*seamless, "--band", "11", needle="wider than half the image")


if __name__ == "__main__":
    unittest.main()
