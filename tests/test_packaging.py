"""Packaging: the application id everywhere, the icons, the desktop file and AppStream
metainfo (through their validators when installed; .ci/run installs them), the desktop
entry installer, the PyInstaller spec, and the resources inside the wheel."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import loragui
from loragui.gui import icons

ROOT = Path(__file__).resolve().parents[1]
APP_ID = "io.github.loragui.LoraGui"
LINUX = ROOT / "packaging" / "linux"
DESKTOP = LINUX / f"{APP_ID}.desktop"
METAINFO = LINUX / f"{APP_ID}.metainfo.xml"
INSTALLER = LINUX / "install-desktop-entry.sh"
SPEC = ROOT / "packaging" / "loragui.spec"


def load_pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def desktop_entry(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line and not line.startswith("#"))


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                          **kwargs)


# ----------------------------------------------------------------------- application id

def test_one_application_id_everywhere():
    from loragui.gui import app

    assert icons.APP_ID == APP_ID
    assert app.DESKTOP_FILE_NAME == APP_ID  # QGuiApplication.setDesktopFileName
    entry = desktop_entry(DESKTOP)
    assert entry["Icon"] == APP_ID
    root = ET.parse(METAINFO).getroot()
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == DESKTOP.name
    assert root.findtext("icon") == APP_ID
    assert root.find("provides/binary").text == entry["Exec"] == "loragui"
    for script in (INSTALLER, ROOT / "packaging" / "make_icons.py", SPEC):
        assert APP_ID in script.read_text(encoding="utf-8"), script


def test_versions_agree():
    """The metainfo's newest release and CHANGELOG's newest section are this version."""
    releases = ET.parse(METAINFO).getroot().findall("releases/release")
    assert releases and releases[0].get("version") == loragui.__version__
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[(\d[^\]]*)\] - (\d{4}-\d\d-\d\d)$", changelog, re.MULTILINE)
    assert sections[0] == (loragui.__version__, releases[0].get("date"))
    assert load_pyproject()["project"]["version"] == loragui.__version__


def test_screenshots_are_in_the_repository():
    """Each metainfo screenshot URL points at a PNG of this repository, of the stated size."""
    from PIL import Image

    images = ET.parse(METAINFO).getroot().findall("screenshots/screenshot/image")
    assert images
    for image in images:
        url = image.text
        assert url.startswith("https://raw.githubusercontent.com/loragui/loragui/main/"), url
        path = ROOT / url.split("/main/", 1)[1]
        if not path.is_file():
            pytest.skip(f"{path.relative_to(ROOT)} is not in the checkout (tools/screenshots.py makes it)")
        with Image.open(path) as im:
            assert im.size == (int(image.get("width")), int(image.get("height"))), path


# ------------------------------------------------------------------------------ icons

def test_icon_files_at_every_size():
    from PIL import Image

    assert set(icons.png_paths()) == set(icons.PNG_SIZES) == {16, 24, 32, 48, 64, 128, 256, 512}
    for size, path in icons.png_paths().items():
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (size, size) and im.mode == "RGBA", path
            assert im.getpixel((size // 2, size // 2))[3] == 255  # opaque in the middle
            assert im.getpixel((0, 0))[3] < 255  # rounded corners
    svg = ET.parse(icons.svg_path()).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("viewBox") == "0 0 256 256"
    with Image.open(icons.ico_path()) as im:
        assert im.format == "ICO"
        assert {(s, s) for s in (16, 24, 32, 48, 64, 128, 256)} <= set(im.info["sizes"])
    with Image.open(icons.icns_path()) as im:
        assert im.format == "ICNS"
        assert (512, 512, 2) in im.info["sizes"]  # 1024 px for Retina


def test_icons_are_package_data():
    assert icons.icons_dir().parent == Path(importlib.util.find_spec("loragui.resources").origin).parent


def test_app_icon_holds_every_size(qapp):
    icon = icons.app_icon()
    assert not icon.isNull()
    assert {s.width() for s in icon.availableSizes()} == set(icons.PNG_SIZES)
    assert icon.pixmap(16, 16).width() == 16


def test_icon_path_for_an_unknown_size():
    with pytest.raises(ValueError):
        icons.png_path(20)


# ------------------------------------------------------------------ desktop integration

@pytest.mark.skipif(shutil.which("desktop-file-validate") is None,
                    reason="desktop-file-validate is not installed (apt-get install desktop-file-utils)")
def test_desktop_file_validates():
    result = run("desktop-file-validate", DESKTOP)
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("appstreamcli") is None,
                    reason="appstreamcli is not installed (apt-get install appstream)")
def test_metainfo_validates():
    result = run("appstreamcli", "validate", "--no-net", METAINFO)
    assert result.returncode == 0, result.stdout + result.stderr
    # Nothing beyond "info" level: an error (E:) or a warning (W:) fails.
    assert not re.search(r"^[EW]: ", result.stdout, re.MULTILINE), result.stdout


def test_metainfo_content():
    root = ET.parse(METAINFO).getroot()
    assert root.get("type") == "desktop-application"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "MIT"
    assert root.find("screenshots/screenshot[@type='default']/image") is not None
    assert root.find("content_rating") is not None


def test_desktop_file_content():
    entry = desktop_entry(DESKTOP)
    assert entry["Type"] == "Application" and entry["Name"] == "loragui"
    assert entry["Terminal"] == "false"
    assert "Science" in entry["Categories"].split(";")


@pytest.mark.skipif(sys.platform != "linux", reason="the desktop entry installer is for Linux")
def test_install_desktop_entry(tmp_path):
    program = tmp_path / "my apps" / "loragui"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    datadir = tmp_path / "share"
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = run("bash", INSTALLER, "--datadir", datadir, "--exec", program, env=env)
    assert result.returncode == 0, result.stderr
    installed = datadir / "applications" / f"{APP_ID}.desktop"
    entry = desktop_entry(installed)
    assert entry["Exec"] == f'"{program}"' and entry["TryExec"] == str(program)
    assert (datadir / "metainfo" / METAINFO.name).read_bytes() == METAINFO.read_bytes()
    for size in icons.PNG_SIZES:
        png = datadir / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"
        assert png.read_bytes() == icons.png_path(size).read_bytes()
    assert (datadir / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg").is_file()
    if shutil.which("desktop-file-validate"):
        check = run("desktop-file-validate", installed)
        assert check.returncode == 0 and "error" not in check.stdout, check.stdout
    if shutil.which("appstreamcli"):
        check = run("appstreamcli", "validate-tree", "--no-net", datadir.parent)
        assert check.returncode == 0, check.stdout + check.stderr

    result = run("bash", INSTALLER, "--datadir", datadir, "--uninstall", env=env)
    assert result.returncode == 0, result.stderr
    assert not installed.exists()
    assert not list((datadir / "icons").rglob(f"{APP_ID}.*"))


@pytest.mark.skipif(sys.platform != "linux", reason="the desktop entry installer is for Linux")
def test_install_desktop_entry_without_a_program(tmp_path):
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = run("bash", INSTALLER, "--datadir", tmp_path, env=env)
    assert result.returncode == 1 and "no loragui program found" in result.stderr
    assert not (tmp_path / "applications").exists()


# ------------------------------------------------------------------- PyInstaller spec

def test_spec_uses_relative_paths_only():
    text = SPEC.read_text(encoding="utf-8")
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert not re.search(r"""["'](/[A-Za-z_.]|[A-Za-z]:\\|~/)""", code), "absolute path in the spec"
    assert "SPECPATH" in code
    assert "/work" not in text and "/root" not in text and "/home" not in text


def test_spec_keeps_the_qt_modules_in_use():
    namespace: dict = {}
    text = SPEC.read_text(encoding="utf-8")
    block = text[text.index("EXCLUDED_MODULES = ["):]
    exec(block[: block.index("\n]\n") + 3], namespace)  # just the list literal
    excluded = set(namespace["EXCLUDED_MODULES"])
    # loragui's own Qt modules, and the two pyqtgraph's curves import unconditionally.
    for needed in ("QtCore", "QtGui", "QtWidgets", "QtOpenGL", "QtOpenGLWidgets"):
        assert f"PySide6.{needed}" not in excluded
    assert not {"torch", "torch._dynamo", "torch.testing", "sympy", "numpy"} & excluded


def test_frozen_build_script_is_executable():
    for script in (ROOT / "packaging" / "build-frozen.sh", INSTALLER):
        assert os.access(script, os.X_OK), script
        assert run("bash", "-n", script).returncode == 0


# ------------------------------------------------------------------------------ wheel

def test_pyproject_ships_resources():
    pyproject = load_pyproject()
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["package-dir"]["loragui.resources"] == "resources"
    assert "loragui.resources" in setuptools["packages"]
    assert setuptools["package-data"]["loragui.resources"] == ["**/*"]
    for path in pyproject["project"]["license-files"]:
        assert (ROOT / path).is_file(), path
    assert "Homepage" in pyproject["project"]["urls"]


@pytest.mark.slow
def test_wheel_carries_resources(tmp_path):
    """Build the wheel and check it with packaging/check_wheel.py (as .ci/run does)."""
    try:
        import setuptools

        isolation = int(setuptools.__version__.split(".")[0]) < 77
    except ImportError:
        isolation = True
    args = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "w")]
    if not isolation:
        args.append("--no-build-isolation")
    build_dir = tmp_path / "src"  # a clean copy: no build/ or egg-info of the checkout
    build_dir.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, build_dir / name)
    for name in ("loragui", "resources", "packaging/linux"):
        shutil.copytree(ROOT / name, build_dir / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    result = subprocess.run([*args, str(build_dir)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "w").glob("loragui-*.whl")
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import check_wheel
    finally:
        sys.path.remove(str(ROOT / "packaging"))
    check_wheel.ROOT = build_dir
    assert check_wheel.check(wheel) == []

    # pip users: the installer inside the installed package finds the venv's command and icons.
    if sys.platform != "linux":
        return
    # (Unpacked by hand into a virtual environment's layout: `pip install --prefix` would
    # uninstall the loragui of the environment running the tests.)
    prefix = tmp_path / "venv"
    site = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    (prefix / "bin").mkdir()
    (prefix / "bin" / "loragui").write_text("#!/bin/sh\nexit 0\n")
    (prefix / "bin" / "loragui").chmod(0o755)
    installer = site / "loragui" / "linux" / "install-desktop-entry.sh"
    result = run("bash", installer, "--datadir", tmp_path / "share",
                 env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    entry = desktop_entry(tmp_path / "share" / "applications" / DESKTOP.name)
    assert entry["Exec"] == str(prefix / "bin" / "loragui")
    assert (tmp_path / "share" / "icons" / "hicolor" / "256x256" / "apps" / f"{APP_ID}.png").is_file()


# ------------------------------------------------------------------- the window's program

def test_the_window_has_a_gui_entry_point_beside_the_console_one(monkeypatch):
    from loragui import cli

    project = load_pyproject()["project"]
    assert project["scripts"]["loragui"] == "loragui.cli:main"
    assert project["gui-scripts"]["loragui-gui"] == "loragui.cli:window"
    opened = []
    monkeypatch.setattr(cli, "_open_window", lambda argv: opened.append(argv) or 0)
    assert cli.window(["--sample"]) == 0 and opened == [["--sample"]]


def test_the_frozen_windows_build_has_a_windowed_program():
    text = SPEC.read_text(encoding="utf-8")
    block = text[text.index('if sys.platform == "win32":\n    b = Analysis'):]
    assert "loragui_gui_main.py" in block and 'name="loragui-gui"' in block
    assert "console=False" in block[:block.index("coll = COLLECT")]
    assert "*windowed" in text[text.index("coll = COLLECT"):]
    main = (ROOT / "packaging" / "loragui_gui_main.py").read_text()
    assert "from loragui.cli import window" in main and "freeze_support()" in main
