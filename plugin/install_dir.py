"""Prints where meson installs the plug-in: the user's GIMP 3 plug-in folder, or the system one
with the plugin_install option set to system. argv[1]: gimp-3.0's gimplibdir; argv[2]: user|system."""
import os
import sys

if len(sys.argv) > 2 and sys.argv[2] == "system":
    root = os.path.join(sys.argv[1], "plug-ins")
else:
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    root = os.path.join(config, "GIMP", "3.0", "plug-ins")
print(os.path.join(root, "gimp-diffusion"))
