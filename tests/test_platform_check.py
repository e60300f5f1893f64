"""Before the window: when Qt's X11 plugin cannot load, one message names the missing
system libraries and how to install them, exit 2 (instead of Qt aborting the program)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loragui.gui import platform_check
from loragui.gui.platform_check import install_advice, platform_in_use, platform_problem

ROOT = Path(__file__).resolve().parents[1]
ABSENT = ("libloragui-absent-a.so.1", "libloragui-absent-b.so.2")
needs_gcc = pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("gcc"),
                               reason="builds a shared library with gcc (Linux)")


@pytest.fixture(scope="module")
def broken_plugins(tmp_path_factory) -> Path:
    """A platforms folder whose libqxcb.so needs two libraries no system has."""
    root = tmp_path_factory.mktemp("plugins")
    build = root / "build"
    build.mkdir()
    (build / "empty.c").write_text("int loragui_test_symbol(void) { return 0; }\n")
    libs = []
    for soname in ABSENT:
        lib = build / f"{soname.split('.so')[0]}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", lib, build / "empty.c",
                        f"-Wl,-soname,{soname}"], check=True)
        libs.append(f"-l{lib.stem[3:]}")
    platforms = root / "platforms"
    platforms.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", platforms / "libqxcb.so", build / "empty.c",
                    f"-L{build}", "-Wl,--no-as-needed", *libs], check=True)
    shutil.rmtree(build)  # what the plugin needs is gone, as on a bare system
    return platforms


def x11_env(plugins: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "QT_PLUGIN_PATH")}
    return dict(env, DISPLAY=":97", QT_QPA_PLATFORM_PLUGIN_PATH=str(plugins),
                PYTHONPATH=str(ROOT))


@needs_gcc
def test_the_window_with_the_plugins_libraries_missing_says_which_and_exits_2(broken_plugins,
                                                                            tmp_path):
    proc = subprocess.run([sys.executable, "-m", "loragui", "--sample"], cwd=tmp_path,
                          env=x11_env(broken_plugins), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("loragui: error: the window cannot open: Qt's X11 platform "
                               "plugin needs system libraries that are not installed: "
                               + ", ".join(ABSENT))
    assert "apt-file search" in lines[0] and "loragui --help" in lines[0]


@needs_gcc
def test_the_missing_libraries_come_from_the_plugin_itself(broken_plugins, monkeypatch):
    plugin = broken_plugins / "libqxcb.so"
    assert platform_check.missing_libraries(plugin) == list(ABSENT)
    monkeypatch.setattr(platform_check.shutil, "which", lambda name: None)  # no ldd: dlopen
    assert platform_check.missing_libraries(plugin) == [ABSENT[0]]


@needs_gcc
def test_no_check_offscreen_on_another_platform_or_system(broken_plugins):
    env = x11_env(broken_plugins)
    assert platform_problem(env, [], system="linux") is not None
    assert platform_problem(dict(env, QT_QPA_PLATFORM="offscreen"), [], system="linux") is None
    assert platform_problem(dict(env, QT_QPA_PLATFORM="wayland"), [], system="linux") is None
    assert platform_problem(env, ["-platform", "vnc"], system="linux") is None
    for system in ("darwin", "win32"):
        assert platform_problem(env, [], system=system) is None


def test_which_platform_qt_tries_first():
    assert platform_in_use({}, []) == "xcb"
    assert platform_in_use({"QT_QPA_PLATFORM": "xcb;wayland"}, []) == "xcb"
    assert platform_in_use({"QT_QPA_PLATFORM": "offscreen"}, []) == "offscreen"
    assert platform_in_use({"QT_QPA_PLATFORM": "xcb"}, ["-platform", "minimal"]) == "minimal"
    assert platform_in_use({"WAYLAND_DISPLAY": "wayland-0"}, []) is None
    assert platform_in_use({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, []) == "xcb"


def test_install_advice_names_the_packages_for_debian_and_fedora():
    advice = install_advice(["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-shape.so.0",
                             "libxcb-randr.so.0"])
    assert ("on Debian/Ubuntu: sudo apt-get install libxcb-icccm4 libxcb-keysyms1 "
            "libxcb-shape0 libxcb-randr0") in advice
    assert "on Fedora: sudo dnf install xcb-util-wm xcb-util-keysyms libxcb" in advice
    assert "apt-file" not in advice
    assert install_advice(["libxcb-cursor.so.0"]).endswith(
        "apt-get install libxcb-cursor0; on Fedora: sudo dnf install xcb-util-cursor")
