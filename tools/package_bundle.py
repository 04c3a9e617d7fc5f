"""Assembles the plug-in bundle (tools/package runs it inside the build environment).

The plug-in and the CLI are copied with every library they need that GIMP's own packages do not
bring. That set is not a hand list: each binary's NEEDED entries (readelf) are resolved the way
the dynamic linker resolves them here (ldd), and a library is left out only when its soname is in
the ldconfig cache of every GIMP-only root given (the files named on the command line). Copied
libraries get the run path $ORIGIN, the programs $ORIGIN/lib, so the bundle works from wherever
it is unpacked. Writes the archive given by --out and prints its path.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

BINARIES = {"gimp-diffusion": "plugin/gimp-diffusion", "gimp-diffusion-cli": "tools/cli/gimp-diffusion-cli"}
MODEL = "models/checkpoints/gimp-patterns"
BUNDLE_FILES = "tools/bundle"   # install.sh and README.txt, copied to the archive's top folder
# The bundle is CPU-only: a CUDA library in the tree means a CUDA LibTorch was picked up.
CUDA = re.compile(r"cuda|cudnn|cublas|cufft|curand|cusparse|cusolver|nccl|nvrtc|nvToolsExt|nvjitlink",
                  re.I)


def fail(message):
    print("tools/package: " + message, file=sys.stderr)
    sys.exit(1)


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def provided_sonames(paths):
    """The x86-64 sonames in every ldconfig -p listing given."""
    sets = []
    for path in paths:
        with open(path) as f:
            sets.append({line.split()[0] for line in f if "x86-64" in line and "=>" in line})
    if not sets or not all(sets):
        fail("no library list from a GIMP-only root (" + " ".join(paths) + ")")
    return set.intersection(*sets)


def needed(path):
    """The sonames an ELF file names in its NEEDED entries."""
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run(["readelf", "-d", path]))


def resolved(path):
    """soname -> file, as the dynamic linker resolves them for this ELF file here."""
    found = {}
    for line in run(["ldd", path]).splitlines():
        m = re.match(r"\s*(\S+) => (.+?) \(0x", line)
        if m:
            found[m.group(1)] = m.group(2)
        elif "not found" in line:
            fail("%s: %s" % (path, line.strip()))
    return found


def chosen_by_alternatives(path):
    """Whether `path` reaches its file through /etc/alternatives: an implementation the system
    picks (BLAS, LAPACK). GIMP's packages bring one too (reference BLAS, for GEGL's UMFPACK), but
    which one a system has is chance, and it sets LibTorch's speed and rounding: bundled always."""
    seen = 0
    while os.path.islink(path) and seen < 40:
        target = os.readlink(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
        if path.startswith("/etc/alternatives/"):
            return True
        seen += 1
    return False


def dependency_tree(binaries, provided):
    """soname -> real file of every library to bundle: the walk stops at the provided ones."""
    bundled, queue = {}, list(binaries)
    while queue:
        path = queue.pop()
        where = resolved(path)
        for soname in needed(path):
            if soname in bundled:
                continue
            if soname not in where:
                if soname in provided:   # the dynamic linker itself: ldd lists it without "=>"
                    continue
                fail("%s needs %s, which the dynamic linker does not find" % (path, soname))
            if soname in provided and not chosen_by_alternatives(where[soname]):
                continue
            bundled[soname] = os.path.realpath(where[soname])
            queue.append(bundled[soname])
    return bundled


def owning_package(path):
    """The Debian package that installed `path` (usr-merged paths tried both ways), or ''."""
    for candidate in (path, re.sub(r"^/usr/lib/", "/lib/", path)):
        p = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if p.returncode == 0:
            return p.stdout.split(":")[0]
    return ""


def newest_version(files, prefix):
    """The newest symbol version `prefix`N.N... the files require (objdump -T), or ''."""
    versions = set()
    for f in files:
        versions |= set(re.findall(r"\b%s([0-9][0-9.]*)\b" % prefix, run(["objdump", "-T", f])))
    key = lambda v: [int(x) for x in v.split(".")]
    return prefix + max(versions, key=key) if versions else ""


def stage(args, provided):
    top = "gimp-diffusion-%s-linux-x86_64" % args.version
    root = os.path.join(args.work, "stage", top)
    shutil.rmtree(os.path.join(args.work, "stage"), ignore_errors=True)
    plug = os.path.join(root, "gimp-diffusion")  # GIMP runs plug-ins/NAME/NAME only
    lib = os.path.join(plug, "lib")
    os.makedirs(lib)
    binaries = [os.path.join(args.build, p) for p in BINARIES.values()]
    for b in binaries:
        if not os.access(b, os.X_OK):
            fail("no %s: build it first" % b)
    libs = dependency_tree(binaries, provided)
    cuda = sorted(s for s in libs if CUDA.search(s))
    if cuda:
        fail("CUDA libraries in the tree (the bundle is CPU-only): " + " ".join(cuda))

    programs = []
    for name, rel in BINARIES.items():
        dst = os.path.join(plug, name)
        shutil.copy(os.path.join(args.build, rel), dst)
        run(["strip", dst])
        run([args.patchelf, "--set-rpath", "$ORIGIN/lib", dst])
        programs.append(dst)
    packages = {}
    for soname, src in sorted(libs.items()):
        dst = os.path.join(lib, soname)
        shutil.copy(src, dst)
        os.chmod(dst, 0o644)
        run(["strip", "--strip-unneeded", dst])
        run([args.patchelf, "--set-rpath", "$ORIGIN", dst])
        packages[soname] = owning_package(src)
    shutil.copytree(MODEL, os.path.join(plug, "models", "gimp-patterns"))
    for f in os.listdir(BUNDLE_FILES):
        shutil.copy(os.path.join(BUNDLE_FILES, f), os.path.join(root, f))

    # Licences of what is copied, and what the bundle needs from the system.
    os.makedirs(os.path.join(plug, "licenses"))
    for pkg in sorted(set(p for p in packages.values() if p)):
        name = pkg.split(":")[0]
        src = "/usr/share/doc/%s/copyright" % name
        if os.path.exists(src):
            shutil.copy(src, os.path.join(plug, "licenses", name + ".copyright"))
    elves = programs + [os.path.join(lib, s) for s in libs]
    versions = {p: run(["dpkg-query", "-W", "-f=${Version}", p.split(":")[0]]) for p in set(packages.values()) if p}
    with open(os.path.join(plug, "BUNDLE.txt"), "w") as f:
        f.write("gimp-diffusion %s for x86-64 Linux, CPU only\n" % args.version)
        f.write("needs at least: %s (glibc), %s (libstdc++)\n" % (
            newest_version(elves, "GLIBC_"), newest_version(elves, "GLIBCXX_")))
        f.write("needs from the system: the libraries GIMP 3's own packages bring (%d sonames here)\n"
                % len(provided))
        f.write("private libraries in lib/ (soname, Debian package and version it was copied from):\n")
        for soname, pkg in sorted(packages.items()):
            f.write("  %s  %s %s\n" % (soname, pkg or "?", versions.get(pkg, "")))
    return root


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--patchelf", default="")
    ap.add_argument("provided", nargs="+", help="ldconfig -p listings of the GIMP-only roots")
    args = ap.parse_args()
    if not args.patchelf:
        args.patchelf = fetch_patchelf(args.work)
    root = stage(args, provided_sonames(args.provided))
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as out:
        tar = subprocess.Popen(["tar", "-C", os.path.dirname(root), "--sort=name", "--owner=0",
                                "--group=0", "--numeric-owner", "-cf", "-", os.path.basename(root)],
                               stdout=subprocess.PIPE)
        subprocess.run(["xz", "-T2", "-6"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            fail("tar failed")
    os.replace(tmp, args.out)
    print(open(os.path.join(root, "gimp-diffusion", "BUNDLE.txt")).read(), end="")
    print(args.out)


def fetch_patchelf(work):
    """patchelf from the environment's Debian, unpacked into `work` (the package list stays as it
    is, so the shared build root is not repaired for a tool only packaging needs)."""
    exe = os.path.join(work, "patchelf", "usr", "bin", "patchelf")
    if shutil.which("patchelf"):
        return shutil.which("patchelf")
    if not os.path.exists(exe):
        deb_dir = os.path.abspath(os.path.join(work, "deb"))
        os.makedirs(deb_dir, exist_ok=True)
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "download", "-q", "patchelf"], check=True, cwd=deb_dir,
                       stdout=subprocess.DEVNULL)
        deb = [f for f in os.listdir(deb_dir) if f.startswith("patchelf_")][0]
        run(["dpkg", "-x", os.path.join(deb_dir, deb), os.path.join(work, "patchelf")])
    return exe


if __name__ == "__main__":
    main()
