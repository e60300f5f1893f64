"""Can Qt's platform plugin load? Asked before the QApplication exists.

On Linux, Qt's X11 plugin (``libqxcb.so``) needs a dozen system libraries that a
minimal installation lacks; without them Qt aborts the program with a message that
names a library from a fixed list rather than the ones missing. loragui reads the
plugin's own dependencies instead (``ldd`` resolves the whole chain: the plugin,
Qt's XcbQpa library, and what they need) and names the missing libraries with the
packages that install them.

Nothing here imports Qt: finding PySide6's plugins folder needs only its location.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

XCB_PLUGIN = "libqxcb.so"

# Package names only (Debian/Ubuntu, Fedora) for the libraries the xcb plugin needs; which
# libraries are missing is read from the plugin itself.
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libSM.so.6": ("libsm6", "libSM"),
    "libICE.so.6": ("libice6", "libICE"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)
_CANNOT_OPEN = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def platform_in_use(env: Mapping[str, str], argv: Sequence[str]) -> str | None:
    """The platform Qt will try first: ``-platform NAME``, else ``QT_QPA_PLATFORM`` (its first
    entry), else ``"xcb"`` on an X11 session; None where Qt would choose another one."""
    for i, arg in enumerate(argv[:-1]):
        if arg in ("-platform", "--platform"):
            return argv[i + 1].split(":")[0].split(";")[0]
    if env.get("QT_QPA_PLATFORM"):
        return env["QT_QPA_PLATFORM"].split(";")[0].split(":")[0]
    if env.get("WAYLAND_DISPLAY") and not env.get("DISPLAY"):
        return None  # a Wayland session without X11: Qt takes its wayland plugin
    return "xcb"


def plugin_folders(env: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins, in its order."""
    folders = []
    if env.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        folders += [Path(p) for p in env["QT_QPA_PLATFORM_PLUGIN_PATH"].split(os.pathsep) if p]
    if env.get("QT_PLUGIN_PATH"):
        folders += [Path(p) / "platforms" for p in env["QT_PLUGIN_PATH"].split(os.pathsep) if p]
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.origin:
        folders.append(Path(spec.origin).parent / "Qt" / "plugins" / "platforms")
    return folders


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries the plugin needs that the system cannot find (all of them where
    ``ldd`` is there; the first one otherwise)."""
    ldd = shutil.which("ldd")
    if ldd:
        try:
            out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True,
                                 timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = None
        if out is not None:
            return list(dict.fromkeys(_NOT_FOUND.findall(out)))
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        found = _CANNOT_OPEN.search(str(exc))
        return [found.group(1)] if found else []
    return []


def install_advice(libraries: Sequence[str]) -> str:
    """The install commands for Debian/Ubuntu and Fedora, for the libraries in the table; how
    to find the package of any other."""
    known = [lib for lib in libraries if lib in PACKAGES]
    unknown = [lib for lib in libraries if lib not in PACKAGES]
    parts = []
    if known:
        debian = " ".join(dict.fromkeys(PACKAGES[lib][0] for lib in known))
        fedora = " ".join(dict.fromkeys(PACKAGES[lib][1] for lib in known))
        parts.append(f"on Debian/Ubuntu: sudo apt-get install {debian}; on Fedora: "
                     f"sudo dnf install {fedora}")
    if unknown:
        parts.append(f"for {', '.join(unknown)}: the package that `apt-file search NAME` or "
                     "`dnf provides '*/NAME'` names")
    return "; ".join(parts)


def platform_problem(env: Mapping[str, str] | None = None, argv: Sequence[str] = (),
                     system: str | None = None) -> str | None:
    """Why Qt's platform plugin cannot load, as one message with what to do; None when it can
    (or when loragui cannot tell: Qt then speaks for itself)."""
    env = os.environ if env is None else env
    if not (system or sys.platform).startswith("linux") or platform_in_use(env, argv) != "xcb":
        return None
    plugin = next((f / XCB_PLUGIN for f in plugin_folders(env) if (f / XCB_PLUGIN).is_file()),
                  None)
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    return (f"the window cannot open: Qt's X11 platform plugin needs system libraries that are "
            f"not installed: {', '.join(missing)}. Install them ({install_advice(missing)}), "
            "then start loragui again; the command line works without them (loragui --help)")
