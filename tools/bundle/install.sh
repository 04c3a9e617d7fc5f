#!/bin/sh
# install.sh — copy the gimp-diffusion plug-in into your GIMP 3 plug-in folder(s), then restart
# GIMP. The folders are found, not guessed: every GIMP 3 user folder that exists, native
# ($XDG_CONFIG_HOME/GIMP/3.x, ~/.config/GIMP/3.x when unset) and Flatpak
# (~/.var/app/org.gimp.GIMP/config/GIMP/3.x); with GIMP3_DIRECTORY set, that folder only (GIMP's
# own override). GIMP makes its folder on its first start. A previous copy there is replaced.
# Uninstall: delete the plug-ins/gimp-diffusion folder this script names.
# Nothing is changed when the machine is not x86-64 or there is no GIMP 3 folder.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
arch=$(uname -m)
if [ "$arch" != x86_64 ]; then
  echo "install.sh: this bundle is for x86-64 Linux and this machine is $arch: nothing installed" >&2
  exit 1
fi
if [ ! -x "$here/gimp-diffusion/gimp-diffusion" ]; then
  echo "install.sh: $here/gimp-diffusion/gimp-diffusion is missing: unpack the whole archive first" >&2
  exit 1
fi

folders=""
if [ -n "${GIMP3_DIRECTORY:-}" ]; then
  [ -d "$GIMP3_DIRECTORY" ] && folders=$GIMP3_DIRECTORY
else
  for d in "${XDG_CONFIG_HOME:-$HOME/.config}"/GIMP/3.* "$HOME"/.var/app/org.gimp.GIMP/config/GIMP/3.*; do
    [ -d "$d" ] && folders="$folders$d
"
  done
fi
if [ -z "$folders" ]; then
  echo "install.sh: no GIMP 3 user folder (~/.config/GIMP/3.x or the Flatpak's ~/.var/app/org.gimp.GIMP/config/GIMP/3.x): start GIMP 3 once, then run install.sh again; nothing installed" >&2
  exit 1
fi

echo "$folders" | while IFS= read -r d; do
  [ -n "$d" ] || continue
  dest="$d/plug-ins/gimp-diffusion"
  mkdir -p "$d/plug-ins"
  # Copied beside the old one, then swapped: an interrupted copy never leaves half a plug-in.
  rm -rf "$dest.new"
  cp -R "$here/gimp-diffusion" "$dest.new"
  rm -rf "$dest"
  mv "$dest.new" "$dest"
  echo "installed in $dest (uninstall: delete that folder); restart GIMP"
done
