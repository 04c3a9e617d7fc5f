#!/usr/bin/env bash
# tests/bundle_in_root.sh TARBALL OUT SCRIPT — the part of the bundle test that runs inside a
# GIMP-only root (tools/test-bundle starts it through tools/env). It does what a user does and
# records what happened in OUT for tests/test_bundle.py to judge:
#   install.sh's refusals (no GIMP 3 folder; a machine that is not x86-64) and the tree after each;
#   unpack, start GIMP once (it makes its user folder), install.sh, then ldd of every ELF file
#   installed with the package that owns each system library it resolves to;
#   the Script-Fu SCRIPT in gimp-console's batch mode, with the seconds each step took.
# It judges nothing itself: every outcome goes into OUT.
set -uo pipefail
tarball=$1 out=$2 script=$3
rm -rf "$out"
mkdir -p "$out/unpacked" "$out/home" "$out/fakebin"
export GIO_USE_VFS=local GSETTINGS_BACKEND=memory NO_AT_BRIDGE=1
unset XDG_CONFIG_HOME GIMP3_DIRECTORY GIMP_DIFFUSION_MODEL
home=$out/home
# The plug-in's load cache (models/load_cache.h) beside the home, whose listings are compared.
export GIMP_DIFFUSION_CACHE_DIR=$out/load-cache
gimp=$(ls /usr/bin/gimp-console-3.* | head -n1)
$gimp --version > "$out/gimp-version.txt" 2>&1

t0=$(date +%s.%N)
tar -xJf "$tarball" -C "$out/unpacked"
t1=$(date +%s.%N)
top=$(ls -d "$out"/unpacked/gimp-diffusion-*-linux-x86_64)

# Refusals. Each leaves the home folder as it was (listed before and after).
listing() { find "$home" -printf '%p %s %T@\n' | sort; }
listing > "$out/home-empty.before"
HOME=$home sh "$top/install.sh" > "$out/install-nofolder.txt" 2>&1
echo $? > "$out/install-nofolder.rc"
listing > "$out/home-empty.after"

# A first start makes the user folder (~/.config/GIMP/3.x), as it does for a user.
HOME=$home timeout -k 10 300 $gimp -i -n --no-splash --batch-interpreter=plug-in-script-fu-eval \
  -b '(gimp-quit 0)' > "$out/gimp-first-start.txt" 2>&1
ls -d "$home"/.config/GIMP/3.* > "$out/gimp-user-folder.txt" 2>&1
printf '#!/bin/sh\necho aarch64\n' > "$out/fakebin/uname"
chmod +x "$out/fakebin/uname"
listing > "$out/home-arch.before"
HOME=$home PATH=$out/fakebin:$PATH sh "$top/install.sh" > "$out/install-arch.txt" 2>&1
echo $? > "$out/install-arch.rc"
listing > "$out/home-arch.after"

t2=$(date +%s.%N)
HOME=$home sh "$top/install.sh" > "$out/install.txt" 2>&1
echo $? > "$out/install.rc"
t3=$(date +%s.%N)
user=$(head -n1 "$out/gimp-user-folder.txt")
plug=$user/plug-ins/gimp-diffusion

# The first texture, as a user makes it after installing: Generate with its defaults on a 256x256
# image (dpmpp_2m, 20 steps, the bundled model). Timed from the unpacking above.
HOME=$home timeout -k 10 600 $gimp -i -n --no-splash --batch-interpreter=plug-in-script-fu-eval \
  -b "(let* ((img (car (gimp-file-load RUN-NONINTERACTIVE \"$(dirname "$script")/canvas.png\")))
             (d (vector-ref (car (gimp-image-get-selected-drawables img)) 0)))
        (plug-in-diffusion-generate #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d)
                                    #:seed 1 #:output \"replace\")
        (gimp-file-save RUN-NONINTERACTIVE img \"$out/first-texture.png\" -1))" \
  -b '(gimp-quit 0)' > "$out/first-texture.txt" 2>&1
echo $? > "$out/first-texture.rc"
t_first=$(date +%s.%N)

# ldd of every ELF file installed; the owner of each library it finds outside the bundle (dpkg -S
# once for all of them: it reads the whole package database each time).
find "$plug" -type f | sort | while read -r f; do
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  echo "FILE $f"
  ldd "$f" 2>&1 | sed 's/^[[:space:]]*//'
done > "$out/ldd.raw"
sed -n 's/^[^ ]* => \(\/[^ ]*\) (0x.*/\1/p' "$out/ldd.raw" | grep -v "^$plug/lib/" | sort -u > "$out/system.paths"
: > "$out/owners.txt"
while read -r path; do
  real=$(readlink -f "$path")
  echo "$path $real"
done < "$out/system.paths" > "$out/system.real"
# "package:arch: /path" for each file dpkg knows (usr-merged files are listed without /usr too).
cut -d' ' -f2 "$out/system.real" | sed 's|^/usr||' | xargs -r dpkg -S > "$out/owners.txt" 2>/dev/null
cut -d' ' -f2 "$out/system.real" | xargs -r dpkg -S >> "$out/owners.txt" 2>/dev/null
awk -v plug="$plug/lib/" '
  FILENAME == ARGV[1] { split($0, a, ": "); p = a[2]; sub(/^\/usr/, "", p); owner[p] = a[1]; next }
  FILENAME == ARGV[2] { r = $2; sub(/^\/usr/, "", r); real[$1] = r; next }
  /^FILE / { print; next }
  / => \// { path = $3
             if (index(path, plug) == 1) { print "BUNDLE " $0; next }
             o = owner[real[path]]; sub(/:.*/, "", o)
             print "SYSTEM " o " " $0; next }
  /not found/ { print "MISSING " $0; next }
  { print "OTHER " $0 }' "$out/owners.txt" "$out/system.real" "$out/ldd.raw" > "$out/ldd.txt"
dpkg-query -W -f='${Package} ${Version}\n' > "$out/packages.txt"

# A user model by name from <GIMP user folder>/diffusion-models, as the dialog lists them.
mkdir -p "$user/diffusion-models"
cp -R "$(dirname "$script")/tiny" "$user/diffusion-models/tiny"

t4=$(date +%s.%N)
HOME=$home timeout -k 10 600 $gimp -i -n --no-splash --batch-interpreter=plug-in-script-fu-eval \
  -b "$(cat "$script")" -b '(gimp-quit 0)' > "$out/batch.txt" 2>&1
echo $? > "$out/batch.rc"
t5=$(date +%s.%N)
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# unpack-to-first-texture leaves out the refusal checks and GIMP's first start in between.
printf 'unpack %s\ninstall %s\nfirst-texture %s\nunpack-to-first-texture %s\nbatch %s\n' \
  "$(secs "$t0" "$t1")" "$(secs "$t2" "$t3")" "$(secs "$t3" "$t_first")" \
  "$(awk -v u="$(secs "$t0" "$t1")" -v i="$(secs "$t2" "$t_first")" 'BEGIN { printf "%.1f", u + i }')" \
  "$(secs "$t4" "$t5")" > "$out/seconds.txt"
exit 0
