#!/usr/bin/env python3
"""End-to-end tests of gimp-diffusion-cli on the checked-in models and on broken copies of them.

Every bad input must end in exactly one line on stderr, a non-zero exit status, no crash (no
signal), no hang (timeout), and the input files unchanged.
Run by meson test with GD_CLI (the built executable) and TEST_DATA_DIR set.
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile

CLI = os.environ.get("GD_CLI", "build/tools/cli/gimp-diffusion-cli")
DATA = os.environ.get("TEST_DATA_DIR", os.path.join(os.path.dirname(__file__), "data"))
DIFFUSERS = os.path.join(DATA, "diffusers-tiny", "model")
DDPM = os.path.join(DATA, "lucidrains-tiny", "model-1.pt")
TORCHSCRIPT = os.path.join(DATA, "torchscript-tiny")


def run(*args, timeout=120):
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_safetensors(path, header, payload, header_len=None):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text) if header_len is None else header_len) + text + payload)


def digest(path):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)) if os.path.isdir(path) else [("", [], [path])]:
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(f.read())
    return h.hexdigest()


class Info(unittest.TestCase):
    def test_diffusers_folder(self):
        code, out, err = run("info", "--model", DIFFUSERS)
        self.assertEqual(code, 0, err)
        self.assertIn("UNet2DModel", out)
        self.assertIn("177,427", out)
        self.assertIn("16 x 16", out)

    def test_second_start_reads_the_load_cache(self):
        # models/load_cache.h: a fresh folder is filled by the first start and read by the second;
        # "off" measures every time.
        with tempfile.TemporaryDirectory() as folder:
            env = {**os.environ, "GIMP_DIFFUSION_CACHE_DIR": folder}
            outs = []
            for _ in range(2):
                proc = subprocess.run([CLI, "info", "--model", DIFFUSERS], capture_output=True,
                                      text=True, timeout=120, env=env)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                outs.append(proc.stdout)
            self.assertIn("memory probe:       network memory measured in", outs[0])
            self.assertNotIn("known from the cache", outs[0])
            self.assertIn("memory probe:       network memory known from the cache", outs[1])
            if "kernel check:" in outs[1]:  # absent with GD_NO_KERNEL_CHECK
                self.assertIn("known from the cache)", outs[1])
            self.assertTrue(any(name.startswith("conv-") for name in os.listdir(folder)))
            env["GIMP_DIFFUSION_CACHE_DIR"] = "off"
            proc = subprocess.run([CLI, "info", "--model", DIFFUSERS], capture_output=True,
                                  text=True, timeout=120, env=env)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertNotIn("known from the cache", proc.stdout)

    def test_diffusers_json(self):
        code, out, err = run("info", "--model", DIFFUSERS, "--json")
        self.assertEqual(code, 0, err)
        info = json.loads(out)
        self.assertEqual(info["format"], "diffusers")
        self.assertEqual(info["parameter_count"], 177427)
        self.assertEqual(info["in_channels"], 3)
        self.assertEqual(info["native_size"], [16, 16])
        self.assertEqual(info["downsampling_factor"], 2)
        self.assertEqual(info["prediction_type"], "epsilon")
        self.assertEqual(info["schedule"]["beta_schedule"], "linear")
        self.assertEqual(info["schedule"]["num_train_timesteps"], 100)

    def test_diffusers_pipeline_layout(self):
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "unet"))
            os.makedirs(os.path.join(tmp, "scheduler"))
            for name in ("config.json", "diffusion_pytorch_model.safetensors"):
                shutil.copy(os.path.join(DIFFUSERS, name), os.path.join(tmp, "unet", name))
            shutil.copy(os.path.join(DIFFUSERS, "scheduler_config.json"), os.path.join(tmp, "scheduler"))
            with open(os.path.join(tmp, "model_index.json"), "w") as f:
                json.dump({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                           "scheduler": ["diffusers", "DDPMScheduler"]}, f)
            code, out, err = run("info", "--model", tmp, "--json")
            self.assertEqual(code, 0, err)
            self.assertEqual(json.loads(out)["parameter_count"], 177427)
            self.assertIn("pipeline", json.loads(out)["format_detail"])

    def test_ddpm_trainer_checkpoint_ema_and_online(self):
        for weights in ("ema", "model"):
            code, out, err = run("info", "--model", DDPM, "--weights", weights, "--json")
            self.assertEqual(code, 0, err)
            info = json.loads(out)
            self.assertEqual(info["format"], "denoising-diffusion-pytorch")
            self.assertEqual(info["weights"], weights)
            self.assertEqual(info["parameter_count"], 242003)
            self.assertEqual(info["prediction_type"], "v_prediction")
            self.assertEqual(info["schedule"]["beta_schedule"], "sigmoid")
            self.assertEqual(info["schedule"]["num_train_timesteps"], 100)
            self.assertEqual(info["downsampling_factor"], 2)

    def test_ddpm_results_folder_picks_newest(self):
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(DDPM, os.path.join(tmp, "model-3.pt"))
            with open(os.path.join(tmp, "model-12.pt"), "wb") as f:
                f.write(b"not a checkpoint")
            code, _, err = run("info", "--model", tmp)
            self.assertEqual(code, 1)
            self.assertIn("model-12.pt", err)   # the newest milestone is the one read

    def test_torchscript_folder(self):
        code, out, err = run("info", "--model", TORCHSCRIPT, "--json")
        self.assertEqual(code, 0, err)
        info = json.loads(out)
        self.assertEqual(info["format"], "torchscript")
        self.assertEqual(info["native_size"], [16, 16])
        self.assertGreater(info["parameter_count"], 0)
        self.assertEqual(info["schedule"]["beta_schedule"], "squaredcos_cap_v2")

    def test_help_and_usage(self):
        code, out, _ = run("--help")
        self.assertEqual(code, 0)
        self.assertIn("info", out)
        self.assertEqual(run()[0], 2)
        self.assertEqual(run("frobnicate")[0], 2)
        self.assertEqual(run("info")[0], 2)
        self.assertEqual(run("info", "--model")[0], 2)
        self.assertEqual(run("info", "--model", DIFFUSERS, "--bogus")[0], 2)
        self.assertEqual(run("info", "--model", DDPM, "--weights", "best")[0], 2)


class BadInput(unittest.TestCase):
    """Each case: a one-line error naming the problem, exit status 1, inputs untouched."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.model = os.path.join(self.tmp, "model")
        shutil.copytree(DIFFUSERS, self.model)
        self.weights = os.path.join(self.model, "diffusion_pytorch_model.safetensors")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def expect_error(self, path, *needles, extra=()):
        before = digest(path) if os.path.exists(path) else None
        code, out, err = run("info", "--model", path, *extra)
        self.assertEqual(code, 1, f"stdout={out!r} stderr={err!r}")
        lines = err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, err)
        self.assertTrue(lines[0].startswith("gimp-diffusion-cli: error: "), err)
        for needle in needles:
            self.assertIn(needle, lines[0])
        if before is not None:
            self.assertEqual(digest(path), before, "the input was modified")
        return lines[0]

    def edit_config(self, **changes):
        path = os.path.join(self.model, "config.json")
        with open(path) as f:
            config = json.load(f)
        config.update(changes)
        with open(path, "w") as f:
            json.dump(config, f)

    def test_missing_path(self):
        self.expect_error(os.path.join(self.tmp, "nowhere"), "no such file or folder")

    def test_folder_without_a_model(self):
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        self.expect_error(empty, "not a model folder")

    def test_missing_weights(self):
        os.remove(self.weights)
        self.expect_error(self.model, "no weights")

    def test_missing_scheduler_config(self):
        os.remove(os.path.join(self.model, "scheduler_config.json"))
        self.expect_error(self.model, "scheduler_config.json")

    def test_bare_weights_file(self):
        self.expect_error(self.weights, "bare weights file")

    def test_truncated_weights(self):
        size = os.path.getsize(self.weights)
        for cut in (4, 9, 200, size // 2, size - 1):
            with open(self.weights, "r+b") as f:
                f.truncate(cut)
            self.expect_error(self.model, "diffusion_pytorch_model.safetensors")
            shutil.copy(os.path.join(DIFFUSERS, "diffusion_pytorch_model.safetensors"), self.weights)

    def test_header_length_past_end(self):
        header, payload = read_safetensors(self.weights)
        write_safetensors(self.weights, header, payload, header_len=10 ** 7)
        self.expect_error(self.model, "header")

    def test_offsets_outside_data(self):
        header, payload = read_safetensors(self.weights)
        name = "conv_in.weight"
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [len(payload) - 8, len(payload) - 8 + end - begin]
        write_safetensors(self.weights, header, payload)
        self.expect_error(self.model, name)

    def test_overlapping_offsets(self):
        header, payload = read_safetensors(self.weights)
        # Two tensors of the same byte size, the second pointed at the first one's bytes.
        a = "conv_in.bias"
        size = header[a]["data_offsets"][1] - header[a]["data_offsets"][0]
        b = next(k for k, v in header.items() if k not in (a, "__metadata__")
                 and v["data_offsets"][1] - v["data_offsets"][0] == size)
        header[b]["data_offsets"] = header[a]["data_offsets"]
        write_safetensors(self.weights, header, payload)
        self.expect_error(self.model, "overlap")

    def test_dtype_contradicts_size(self):
        header, payload = read_safetensors(self.weights)
        header["conv_in.weight"]["dtype"] = "F16"
        write_safetensors(self.weights, header, payload)
        self.expect_error(self.model, "conv_in.weight")

    def test_integer_weights(self):
        header, payload = read_safetensors(self.weights)
        header["conv_in.bias"]["dtype"] = "I32"
        write_safetensors(self.weights, header, payload)
        self.expect_error(self.model, "conv_in.bias", "I32")

    def test_shape_contradicts_config(self):
        self.edit_config(in_channels=4)
        self.expect_error(self.model, "conv_in.weight", "shape")

    def test_missing_tensor(self):
        header, payload = read_safetensors(self.weights)
        del header["conv_out.weight"]
        write_safetensors(self.weights, header, payload)
        self.expect_error(self.model, "missing tensor 'conv_out.weight'")

    def test_unexpected_tensor(self):
        header, payload = read_safetensors(self.weights)
        header["extra.weight"] = dict(header["conv_out.bias"])
        header["extra.weight"]["data_offsets"] = [len(payload), len(payload) + 12]
        write_safetensors(self.weights, header, payload + b"\0" * 12)
        self.expect_error(self.model, "unexpected tensor 'extra.weight'")

    def test_unknown_block_type(self):
        self.edit_config(down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"])
        self.expect_error(self.model, "CrossAttnDownBlock2D")

    def test_invalid_json(self):
        with open(os.path.join(self.model, "config.json"), "w") as f:
            f.write("{\"in_channels\": 3,")
        self.expect_error(self.model, "config.json")

    def test_invalid_scheduler_json(self):
        with open(os.path.join(self.model, "scheduler_config.json"), "w") as f:
            f.write("{\"beta_schedule\": \"wiggly\"}")
        self.expect_error(self.model, "beta_schedule", "wiggly")

    def test_weights_option_on_diffusers_model(self):
        self.expect_error(self.model, "--weights", extra=("--weights", "ema"))


class BadCheckpoint(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def expect_error(self, path, *needles):
        code, out, err = run("info", "--model", path)
        self.assertEqual(code, 1, f"stdout={out!r} stderr={err!r}")
        self.assertEqual(len(err.strip("\n").split("\n")), 1, err)
        for needle in needles:
            self.assertIn(needle, err)

    def write_zip(self, name, entries):
        path = os.path.join(self.tmp, name)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for entry, data in entries.items():
                z.writestr(entry, data)
        return path

    def test_forbidden_global_is_refused_not_run(self):
        marker = os.path.join(self.tmp, "pwned")
        command = f"touch {marker}".encode()
        pickle = (b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(command)) + command +
                  b"q\x01\x85q\x02Rq\x03.")
        path = self.write_zip("model-1.pt", {"archive/data.pkl": pickle, "archive/version": b"3\n"})
        self.expect_error(path, "forbidden global", "os.system")
        self.assertFalse(os.path.exists(marker))

    def test_zip_entry_lying_about_its_size(self):
        with open(DDPM, "rb") as f:
            data = bytearray(f.read())
        # Enlarge the sizes of data.pkl's central directory record past the end of the file.
        at = data.find(b"PK\x01\x02")
        while at >= 0:
            name_len = struct.unpack_from("<H", data, at + 28)[0]
            name = bytes(data[at + 46:at + 46 + name_len])
            if name.endswith(b"data.pkl"):
                struct.pack_into("<II", data, at + 20, len(data) * 2, len(data) * 2)
                break
            at = data.find(b"PK\x01\x02", at + 4)
        self.assertGreaterEqual(at, 0)
        path = os.path.join(self.tmp, "model-1.pt")
        with open(path, "wb") as f:
            f.write(data)
        self.expect_error(path, "data.pkl")

    def test_truncated_checkpoint(self):
        with open(DDPM, "rb") as f:
            data = f.read()
        for cut in (10, 1000, len(data) // 2, len(data) - 30):
            path = os.path.join(self.tmp, "model-1.pt")
            with open(path, "wb") as f:
                f.write(data[:cut])
            self.expect_error(path, "model-1.pt")

    def test_not_a_trainer_checkpoint(self):
        pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s."   # {'a': 1}
        path = self.write_zip("model-1.pt", {"archive/data.pkl": pickle})
        self.expect_error(path, "model-1.pt")

    def test_garbage_file(self):
        path = os.path.join(self.tmp, "model-1.pt")
        with open(path, "wb") as f:
            f.write(b"\x00garbage" * 100)
        self.expect_error(path, "model-1.pt")

    def test_torchscript_without_folder(self):
        self.expect_error(os.path.join(TORCHSCRIPT, "model.pt"), "gimp-diffusion.json")

    def test_torchscript_config_errors(self):
        folder = os.path.join(self.tmp, "ts")
        shutil.copytree(TORCHSCRIPT, folder)
        config_path = os.path.join(folder, "gimp-diffusion.json")
        with open(config_path) as f:
            good = json.load(f)
        for change, needle in (({"format": "onnx"}, "'format'"), ({"module": "missing.pt"}, "missing.pt"),
                               ({"in_channels": 0}, "'in_channels'"), ({"sample_size": [0, 4]}, "sample_size")):
            with open(config_path, "w") as f:
                json.dump({**good, **change}, f)
            self.expect_error(folder, needle)
        with open(os.path.join(folder, "model.pt"), "wb") as f:
            f.write(b"PK\x05\x06" + b"\0" * 18)
        with open(config_path, "w") as f:
            json.dump(good, f)
        self.expect_error(folder, "model.pt")


if __name__ == "__main__":
    unittest.main(verbosity=2)
