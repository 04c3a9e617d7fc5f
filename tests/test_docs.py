#!/usr/bin/env python3
"""The docs' commands and links must keep working: a check of README.md and docs/*.md.

Every command in a ```sh, ```bash or ```console block (console: the lines after a "$ " prompt)
is checked:

- gimp-diffusion-cli commands run for real through $GD_CLI, in a temporary folder per block; the
  commands of a block run in order and share it. generate, img2img and denoise get --dry-run
  appended and must exit 0 without writing anything; info runs as written; train runs on a
  generated folder of two tiny PNGs with --steps, --sample-every and --size replaced (TRAIN_SIZE,
  one step per command), so it costs a second. A model path must exist in the repo, be made by an
  earlier command of the block, or be a placeholder of PLACEHOLDER_MODELS. An input image that
  exists nowhere is created (a small PNG or .safetensors).
- tools/ scripts must exist and be executable; `tools/env CMD` checks CMD the same way. Not run.
- meson commands: a known subcommand, and every -Dname= an option of meson_options.txt or a
  meson built-in (MESON_BUILTIN_OPTIONS). Not run.
- python3 SCRIPT.py: the script must exist. Build products (BUILD_PRODUCTS): built by the
  meson.build named, and every --option a string in their source. Not run.
- Any other program must be on the SYSTEM_TOOLS allow-list.

A command the test cannot classify fails it, as does a fenced block whose language is neither in
SHELL_LANGUAGES nor in OTHER_LANGUAGES. Every relative link in the markdown files (and its
#anchor, by GitHub's heading ids) must resolve.

Run by meson test with GD_CLI (the built executable) and TEST_DATA_DIR set, like test_cli.py.
"""
import glob
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from png_files import encode_png  # noqa: E402

CLI = os.environ.get("GD_CLI") or os.path.join(REPO, "build", "tools", "cli", "gimp-diffusion-cli")

# Files whose code blocks and links are checked, and files whose links only are checked.
DOC_FILES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
LINK_ONLY_FILES = sorted(glob.glob(os.path.join(REPO, "models", "checkpoints", "*", "README.md")))

SHELL_LANGUAGES = {"sh", "bash", "console"}
OTHER_LANGUAGES = {"text", "python", "scheme", "json", "cpp"}  # shown, never run

# Placeholder model paths in runnable commands, and the repo models they stand for.
PLACEHOLDER_MODELS = {
    "MODEL": "models/checkpoints/gimp-patterns",
    "MODEL_DIR": "models/checkpoints/gimp-patterns",
}
SAMPLING_COMMANDS = {"generate", "img2img", "denoise", "inpaint", "make-seamless"}
CLI_COMMANDS = SAMPLING_COMMANDS | {"info", "train"}
TRAIN_SIZE = 16          # --size of every train command: a multiple of 8 (four stages)
TRAIN_IMAGE_SIZE = 24    # the generated training images, larger than the crop
INPUT_SIZE = 32          # generated input images: a multiple of every test model's factor

# Programs of the build, not of the repo: name -> (the meson.build that builds it, its source).
BUILD_PRODUCTS = {
    "gimp-diffusion-benchmark": ("tools/benchmark/meson.build", "tools/benchmark/benchmark.cpp"),
    "gimp-diffusion-load-benchmark": ("tools/benchmark/meson.build",
                                      "tools/benchmark/load_time.cpp"),
}
MESON_SUBCOMMANDS = {"setup", "configure", "compile", "test", "install", "introspect", "dist",
                     "devenv"}
MESON_BUILTIN_OPTIONS = {"buildtype", "debug", "optimization", "warning_level", "werror",
                         "prefix", "libdir", "bindir", "default_library", "cpp_std", "cpp_args",
                         "cpp_link_args", "b_sanitize", "b_ndebug", "b_lto", "b_pie",
                         "b_coverage", "pkg_config_path", "cmake_prefix_path"}
# Well-known programs a doc may name; they are not run.
SYSTEM_TOOLS = {"apt-get", "ccache", "cmake", "cp", "ctest", "flatpak", "gimp",
                "gimp-console-3.0", "git", "ls", "mkdir", "ninja", "pkg-config", "sh", "tar"}

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SEPARATORS = {"&&", "||", ";", "|"}
REDIRECTIONS = {">", ">>", "<", ">&", "&>"}


class DocError(Exception):
    """A command or link in the docs that is wrong, or that this test cannot check."""


# ---- markdown ----------------------------------------------------------------------------------

class Block:
    def __init__(self, path, line, lang, indent, fence):
        self.path, self.line, self.lang, self.indent, self.fence = path, line, lang, indent, fence
        self.lines = []  # (line number, text without the fence's indentation)

    def where(self, line=None):
        return "%s:%d" % (os.path.relpath(self.path, REPO), line or self.line)


FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")


def read_markdown(path):
    """-> (fenced blocks, [(line number, text)] of the lines outside them)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, prose, block = [], [], None
    for n, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if block is None:
            if m:
                info = m.group(3).strip()
                block = Block(path, n, info.split()[0].lower() if info else "", m.group(1), m.group(2))
            else:
                prose.append((n, line))
        elif m and m.group(2)[0] == block.fence[0] and len(m.group(2)) >= len(block.fence) \
                and not m.group(3).strip():
            blocks.append(block)
            block = None
        else:
            block.lines.append((n, line[len(block.indent):] if line.startswith(block.indent)
                                else line.lstrip()))
    if block is not None:
        raise DocError("%s: the code fence is never closed" % block.where())
    return blocks, prose


def github_anchors(prose):
    """The ids GitHub gives the headings of a file: lower case, punctuation dropped, spaces to
    hyphens, repeats numbered."""
    anchors, seen = set(), {}
    for _, line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else "%s-%d" % (base, count))
    return anchors


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(prose):
    """-> [(line number, target)] of the links that are not URLs."""
    links = []
    for n, line in prose:
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # http:, https:, mailto:
                links.append((n, target))
    return links


# ---- shell -------------------------------------------------------------------------------------

def block_commands(block):
    """-> [(line number, command line)] of a shell block: continuation lines joined, blank and
    comment lines dropped; in console blocks only the commands after a "$ " prompt."""
    commands, parts, start = [], [], None
    for n, text in block.lines:
        if not parts:
            if block.lang == "console":
                if not text.startswith("$ "):
                    continue  # output
                text = text[2:]
            start = n
        stripped = text.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        parts.append(text)
        command = " ".join(part.strip() for part in parts).strip()
        parts = []
        if command and not command.startswith("#"):
            commands.append((start, command))
    if parts:
        raise DocError("%s: the last command ends with a line continuation" % block.where(start))
    if block.lang == "console" and not commands:
        raise DocError("%s: a console block without a '$ ' prompt" % block.where())
    return commands


def cut_substitutions(text):
    """Replaces each $(...) outside single quotes by the word SUBST.
    -> (text, [the commands inside])."""
    out, inner, quote, i = [], [], None, 0
    while i < len(text):
        c = text[i]
        if quote == "'":
            quote = None if c == "'" else quote
        elif c == "`":
            raise DocError("backquote substitution is not supported; use $(...)")
        elif c == "$" and text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise DocError("unbalanced $( in: " + text)
            inner.append(text[i + 2:j - 1])
            out.append("SUBST")
            i = j
            continue
        elif c in "'\"":
            quote = None if quote == c else (quote or c)
        out.append(c)
        i += 1
    return "".join(out), inner


def simple_commands(line):
    """-> the argument lists of the simple commands in a command line (split at && || ; |),
    redirections dropped, $(...) substitutions included as commands of their own."""
    text, inner = cut_substitutions(line)
    commands = []
    for sub in inner:
        commands.extend(simple_commands(sub))
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as e:
        raise DocError("cannot split '%s': %s" % (line, e))
    current, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in SEPARATORS:
            commands.append(current)
            current = []
        elif token in REDIRECTIONS:
            skip = True
        elif token and all(c in "();<>|&" for c in token):
            raise DocError("'%s' is not supported in a doc command: %s" % (token, line))
        else:
            current.append(token)
    commands.append(current)
    for command in commands:
        if not command:
            raise DocError("an empty command in: " + line)
    return commands


def is_cli(program):
    return program == "gimp-diffusion-cli" or \
        re.match(r"^(\./)?build[^/]*/tools/cli/gimp-diffusion-cli$", program) is not None


def check_script(path):
    full = os.path.join(REPO, path)
    if not os.path.isfile(full):
        raise DocError("%s does not exist" % path)
    if not os.access(full, os.X_OK):
        raise DocError("%s is not executable" % path)


def check_repo_paths(args):
    """Arguments that name something under tools/ must exist."""
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.startswith("tools/") and not os.path.exists(os.path.join(REPO, value)):
            raise DocError("%s does not exist" % value)


def meson_options():
    with open(os.path.join(REPO, "meson_options.txt"), encoding="utf-8") as f:
        return set(re.findall(r"option\(\s*'([^']+)'", f.read()))


def check_meson(args):
    if not args or args[0] not in MESON_SUBCOMMANDS:
        raise DocError("meson needs one of the subcommands %s" % ", ".join(sorted(MESON_SUBCOMMANDS)))
    known = meson_options() | MESON_BUILTIN_OPTIONS
    for i, arg in enumerate(args):
        if arg.startswith("-D"):
            setting = arg[2:] or (args[i + 1] if i + 1 < len(args) else "")
            name = setting.split("=", 1)[0]
            if name not in known:
                raise DocError("-D%s is neither in meson_options.txt nor a meson built-in option "
                               "listed in MESON_BUILTIN_OPTIONS" % name)


def check_python(args):
    if args[:1] == ["-c"] and len(args) > 1:
        return
    if not args or not args[0].endswith(".py"):
        raise DocError("python3 commands must run a repo script (python3 tools/....py) or -c")
    if not os.path.isfile(os.path.join(REPO, args[0])):
        raise DocError("%s does not exist" % args[0])
    check_repo_paths(args[1:])


def check_build_product(program, args):
    name = os.path.basename(program)
    build_file, source = BUILD_PRODUCTS[name]
    expected = r"^(\./)?build[^/]*/%s/%s$" % (re.escape(os.path.dirname(build_file)), re.escape(name))
    if not re.match(expected, program):
        raise DocError("%s is built as build/%s/%s" % (program, os.path.dirname(build_file), name))
    with open(os.path.join(REPO, build_file), encoding="utf-8") as f:
        if "'%s'" % name not in f.read():
            raise DocError("%s no longer builds %s" % (build_file, name))
    with open(os.path.join(REPO, source), encoding="utf-8") as f:
        strings = set(re.findall(r'"((?:[^"\\\n]|\\.)*)"', f.read()))
    for arg in args:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            if option not in strings and option[2:] not in strings:
                raise DocError("%s: %s does not appear in %s" % (name, option, source))
    check_repo_paths(args)


def analyse(argv):
    """Checks a simple command that is not run. -> the gimp-diffusion-cli argument lists (after
    the program name) to run. Raises DocError for a wrong or unknown command."""
    while argv and ASSIGNMENT.match(argv[0]):
        argv = argv[1:]  # NAME=VALUE prefixes (a substitution in VALUE is checked on its own)
    if not argv:
        return []
    program = argv[0][2:] if argv[0].startswith("./") else argv[0]
    args = argv[1:]
    if is_cli(program):
        return [args]
    if program == "tools/env":
        check_script(program)
        if not args:
            raise DocError("tools/env needs a command")
        return analyse(args)
    if program.startswith("tools/"):
        check_script(program)
        check_repo_paths(args)
        return []
    if program == "meson":
        check_meson(args)
        return []
    if program == "python3":
        check_python(args)
        return []
    if os.path.basename(program) in BUILD_PRODUCTS:
        check_build_product(program, args)
        return []
    if program in SYSTEM_TOOLS:
        return []
    raise DocError("'%s' is not gimp-diffusion-cli, a tools/ script, meson, python3, a build "
                   "product (BUILD_PRODUCTS) or an allowed system tool (SYSTEM_TOOLS)" % program)


def shell_blocks():
    blocks = []
    for path in DOC_FILES:
        blocks.extend(b for b in read_markdown(path)[0] if b.lang in SHELL_LANGUAGES)
    return blocks


# ---- running gimp-diffusion-cli ----------------------------------------------------------------

# The options whose values the test rewrites, and the short aliases the CLI accepts.
REWRITTEN = {"model", "init", "input", "mask", "output", "data", "out", "steps", "sample-every", "size",
             "cooldown"}
ALIASES = {"-o": "output", "-i": "input", "-m": "mask"}


class CliArgs:
    """A gimp-diffusion-cli argument list with the options of REWRITTEN picked out."""

    def __init__(self, args):
        self.items = []  # [name, value] for REWRITTEN options, [None, token] for the rest
        i = 0
        while i < len(args):
            token = args[i]
            name = ALIASES.get(token) or (token[2:] if token.startswith("--") else None)
            value = None
            if name and "=" in name:
                name, value = name.split("=", 1)
            if name in REWRITTEN:
                if value is None:
                    if i + 1 >= len(args):
                        raise DocError("%s needs a value" % token)
                    i += 1
                    value = args[i]
                self.items.append([name, value])
            else:
                self.items.append([None, token])
            i += 1

    def get(self, name):
        values = [v for n, v in self.items if n == name]
        if len(values) > 1:
            raise DocError("--%s given twice" % name)
        return values[0] if values else None

    def set(self, name, value):
        for item in self.items:
            if item[0] == name:
                item[1] = value
                return
        self.items.append([name, value])

    def has(self, token):
        return [None, token] in self.items

    def argv(self):
        out = []
        for name, value in self.items:
            out.extend(["--" + name, value] if name else [value])
        return out


def relative_path(value, option):
    if os.path.isabs(value) or ".." in value.split("/"):
        raise DocError("--%s %s: doc commands write relative to the current folder" % (option, value))
    return value


def write_input(path):
    """A small image for -i/--input: a PNG, or a .safetensors tensor "image" [1, 3, H, W]."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    n = INPUT_SIZE
    if path.endswith(".png"):
        samples = bytes((x * 7 + y * 3 + c * 50) % 256 for y in range(n) for x in range(n) for c in range(3))
        encode_png(path, n, n, 3, 8, samples)
    elif path.endswith(".safetensors"):
        values = [((x * 7 + y * 3 + c * 50) % 256) / 255 for c in range(3) for y in range(n) for x in range(n)]
        header = json.dumps({"image": {"dtype": "F32", "shape": [1, 3, n, n],
                                       "data_offsets": [0, 4 * len(values)]}}).encode()
        header += b" " * (-len(header) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + struct.pack("<%df" % len(values), *values))
    else:
        raise DocError("input %s: the test can make .png and .safetensors inputs only" % path)


def write_mask(path):
    """An inpainting mask for --mask: a gray PNG of INPUT_SIZE, white in a centre square."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    n = INPUT_SIZE
    samples = bytes(255 if n // 4 <= x < 3 * n // 4 and n // 4 <= y < 3 * n // 4 else 0
                    for y in range(n) for x in range(n))
    encode_png(path, n, n, 1, 8, samples)


def training_data(folder):
    """Two small RGB PNGs to train on."""
    if not os.path.isdir(folder):
        os.makedirs(folder)
        n = TRAIN_IMAGE_SIZE
        for k in range(2):
            samples = bytes((x * (5 + k) + y * 11 + c * 80) % 256 for y in range(n) for x in range(n) for c in range(3))
            encode_png(os.path.join(folder, "texture-%d.png" % k), n, n, 3, 8, samples)
    return folder


class BlockRun:
    """The state the commands of one block share: their folder and the runs they trained."""

    def __init__(self, root):
        self.work = os.path.join(root, "work")
        self.data = os.path.join(root, "data")
        os.makedirs(self.work)
        self.trained_steps = {}  # --out -> the step the run has reached

    def model(self, value):
        if os.path.exists(os.path.join(self.work, value)):
            return value  # made by an earlier command of the block
        if value in PLACEHOLDER_MODELS:
            return os.path.join(REPO, PLACEHOLDER_MODELS[value])
        if not os.path.isabs(value) and os.path.exists(os.path.join(REPO, value)):
            return os.path.join(REPO, value)
        raise DocError("model %s exists neither in the repo nor in an earlier command's output; use "
                       "a repo model or a placeholder of PLACEHOLDER_MODELS" % value)

    def prepare(self, args):
        """-> (argv to run, what the run must leave: 'nothing', a folder, or None)."""
        if not args:
            raise DocError("gimp-diffusion-cli needs a command")
        command = args[0]
        if command in ("--help", "-h", "help"):
            return args, None
        if command not in CLI_COMMANDS:
            raise DocError("unknown gimp-diffusion-cli command '%s'" % command)
        a = CliArgs(args[1:])
        for option in ("model", "init"):
            if a.get(option) is not None:
                a.set(option, self.model(a.get(option)))
        for option in ("output", "out"):
            if a.get(option) is not None:
                relative_path(a.get(option), option)
        expect = None
        if command in SAMPLING_COMMANDS:
            source = a.get("input")
            if source is not None and not os.path.exists(os.path.join(self.work, source)):
                if not os.path.isabs(source) and os.path.isfile(os.path.join(REPO, source)):
                    a.set("input", os.path.join(REPO, source))
                else:
                    write_input(os.path.join(self.work, relative_path(source, "input")))
            mask = a.get("mask")
            if mask is not None and not os.path.exists(os.path.join(self.work, mask)):
                write_mask(os.path.join(self.work, relative_path(mask, "mask")))
            if not a.has("--dry-run"):
                a.items.append([None, "--dry-run"])
            expect = "nothing"
        elif command == "train":
            out = a.get("out")
            if out is None or a.get("data") is None:
                raise DocError("train needs --data and --out")
            a.set("data", training_data(self.data))
            if a.has("--resume"):
                if out not in self.trained_steps:
                    raise DocError("train --resume of %s, which no earlier command of the block "
                                   "trained" % out)
                steps = self.trained_steps[out] + 1
            else:
                steps = 1
            a.set("steps", str(steps))
            a.set("sample-every", "0")
            a.set("size", str(TRAIN_SIZE))
            if a.get("cooldown") is not None:
                a.set("cooldown", "1")
            self.trained_steps[out] = steps
            expect = out
        return [command] + a.argv(), expect

    def files(self):
        found = set()
        for root, dirs, names in os.walk(self.work):
            found.update(os.path.relpath(os.path.join(root, n), self.work) for n in dirs + names)
        return found

    def run(self, args):
        argv, expect = self.prepare(args)
        before = self.files()
        env = dict(os.environ)
        env.pop("GIMP_DIFFUSION_MODEL", None)  # without --model: the bundled model
        env.setdefault("OMP_NUM_THREADS", "1")
        proc = subprocess.run([CLI] + argv, cwd=self.work, env=env, capture_output=True, text=True,
                              timeout=600)
        shown = "gimp-diffusion-cli " + " ".join(shlex.quote(a) for a in argv)
        if proc.returncode != 0:
            raise DocError("%s\n  exit status %d: %s" % (shown, proc.returncode, proc.stderr.strip()[-2000:]))
        if expect == "nothing" and self.files() != before:
            raise DocError("%s\n  --dry-run wrote %s" % (shown, sorted(self.files() - before)))
        if expect not in (None, "nothing") and \
                not os.path.isfile(os.path.join(self.work, expect, "config.json")):
            raise DocError("%s\n  wrote no %s/config.json" % (shown, expect))


# ---- tests -------------------------------------------------------------------------------------

class ShellParsing(unittest.TestCase):
    """The command splitting the doc checks rely on."""

    def block(self, lang, text):
        b = Block("README.md", 1, lang, "", "```")
        b.lines = list(enumerate(text.split("\n"), 2))
        return b

    def test_continuations_comments_and_prompts(self):
        sh = self.block("sh", "# a comment\ntools/run \\\n    MODEL out.png   # trailing\n\ntools/test")
        self.assertEqual(block_commands(sh), [(3, "tools/run MODEL out.png   # trailing"), (6, "tools/test")])
        console = self.block("console", "$ gimp-diffusion-cli info\nUNet2DModel\n$ ls")
        self.assertEqual(block_commands(console), [(2, "gimp-diffusion-cli info"), (4, "ls")])
        with self.assertRaises(DocError):
            block_commands(self.block("console", "just output"))

    def test_simple_commands(self):
        self.assertEqual(simple_commands("tools/env meson setup build && tools/env meson compile -C build # x"),
                         [["tools/env", "meson", "setup", "build"], ["tools/env", "meson", "compile", "-C", "build"]])
        self.assertEqual(simple_commands("T=$(python3 -c 'print(1)') && meson setup b -Dlibtorch_dir=\"$T\""),
                         [["python3", "-c", "print(1)"], ["T=SUBST"], ["meson", "setup", "b", "-Dlibtorch_dir=$T"]])
        self.assertEqual(simple_commands("tools/gimp-batch -b '(gimp-quit 0)' > log.txt"),
                         [["tools/gimp-batch", "-b", "(gimp-quit 0)"]])
        for bad in ("(cd build; ls)", "ls &", "echo `date`"):
            with self.assertRaises(DocError):
                simple_commands(bad)

    def test_analyse(self):
        self.assertEqual(analyse(["tools/env", "build/tools/cli/gimp-diffusion-cli", "info"]), [["info"]])
        self.assertEqual(analyse(["ASAN_OPTIONS=x", "meson", "test", "-C", "build"]), [])
        for bad in (["tools/no-such-script"], ["tools/env-packages.txt"], ["meson", "setup", "b", "-Dnope=1"],
                    ["meson", "build"], ["curl", "x"], ["python3", "tools/none.py"]):
            with self.assertRaises(DocError, msg=bad):
                analyse(bad)

    def test_train_overrides(self):
        with tempfile.TemporaryDirectory() as root:
            run = BlockRun(root)
            argv, expect = run.prepare(["train", "--data", "x", "--out", "m", "--steps=500", "--size", "64"])
            self.assertEqual(argv, ["train", "--data", run.data, "--out", "m", "--steps", "1", "--size", "16",
                                    "--sample-every", "0"])
            self.assertEqual(expect, "m")
            argv, _ = run.prepare(["train", "--data", "x", "--out", "m", "--resume", "--cooldown", "9"])
            self.assertEqual(argv[argv.index("--steps") + 1], "2")
            self.assertEqual(argv[argv.index("--cooldown") + 1], "1")
            with self.assertRaises(DocError):
                run.prepare(["train", "--data", "x", "--out", "other", "--resume"])
            argv, expect = run.prepare(["generate", "-o", "a.png", "--model", "MODEL_DIR"])
            self.assertEqual(argv, ["generate", "--output", "a.png", "--model",
                                    os.path.join(REPO, "models/checkpoints/gimp-patterns"), "--dry-run"])
            run.prepare(["img2img", "-i", "in/photo.png", "-o", "b.png"])
            self.assertTrue(os.path.isfile(os.path.join(run.work, "in", "photo.png")))
            with self.assertRaises(DocError):
                run.prepare(["generate", "-o", "/tmp/x.png"])


class Docs(unittest.TestCase):
    def test_code_blocks_have_known_languages(self):
        for path in DOC_FILES:
            for block in read_markdown(path)[0]:
                with self.subTest(block.where()):
                    self.assertIn(block.lang, SHELL_LANGUAGES | OTHER_LANGUAGES,
                                  "%s: a code block needs a language: one of %s to be checked, or one of %s"
                                  % (block.where(), sorted(SHELL_LANGUAGES), sorted(OTHER_LANGUAGES)))

    def test_relative_links_resolve(self):
        anchors = {}
        for path in DOC_FILES + LINK_ONLY_FILES:
            for n, target in relative_links(read_markdown(path)[1]):
                where = "%s:%d" % (os.path.relpath(path, REPO), n)
                with self.subTest(where, target=target):
                    file_part, _, anchor = target.partition("#")
                    full = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
                    self.assertTrue(full.startswith(REPO + os.sep) and os.path.exists(full),
                                    "%s: %s does not exist" % (where, target))
                    if anchor and full.endswith(".md"):
                        if full not in anchors:
                            anchors[full] = github_anchors(read_markdown(full)[1])
                        self.assertIn(anchor, anchors[full], "%s: %s has no heading #%s" % (where, file_part or "this file", anchor))

    def test_commands_are_known_and_their_files_exist(self):
        count = 0
        for block in shell_blocks():
            for line, command in block_commands(block):
                with self.subTest(block.where(line), command=command):
                    count += 1
                    try:
                        for argv in simple_commands(command):
                            analyse(argv)
                    except DocError as e:
                        self.fail("%s: %s\n  %s" % (block.where(line), e, command))
        self.assertGreater(count, 0, "no commands found: is the doc list right?")

    def test_cli_commands_run(self):
        self.assertTrue(os.access(CLI, os.X_OK),
                        "no gimp-diffusion-cli at %s: set GD_CLI to the built executable" % CLI)
        ran = 0
        for block in shell_blocks():
            runs = []
            for line, command in block_commands(block):
                try:
                    for argv in simple_commands(command):
                        runs.extend((line, args) for args in analyse(argv))
                except DocError:
                    pass  # reported by test_commands_are_known_and_their_files_exist
            if not runs:
                continue
            with tempfile.TemporaryDirectory(prefix="gd-docs-") as root:
                state = BlockRun(root)
                for line, args in runs:
                    with self.subTest(block.where(line)):
                        ran += 1
                        try:
                            state.run(args)
                        except DocError as e:
                            self.fail("%s: %s" % (block.where(line), e))
                        except subprocess.TimeoutExpired:
                            self.fail("%s: timed out" % block.where(line))
        self.assertGreater(ran, 0, "no gimp-diffusion-cli commands found in the docs")


if __name__ == "__main__":
    unittest.main()
