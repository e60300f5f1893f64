"""The application icon: where its files are, and a multi-size ``QIcon`` of them.

The files are rendered from ``packaging/icon.svg`` by ``packaging/make_icons.py``
into the bundled resources (``loragui/resources/icons`` in a wheel or a frozen
build, ``resources/icons`` in a checkout), laid out as a freedesktop ``hicolor``
icon theme named after the application id.
"""

from __future__ import annotations

from pathlib import Path

from loragui.engine.resources import icons_dir

APP_ID = "io.github.loragui.LoraGui"  # the .desktop file, the metainfo and setDesktopFileName
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

__all__ = ["APP_ID", "PNG_SIZES", "app_icon", "icns_path", "ico_path", "icons_dir", "png_path",
           "png_paths", "svg_path"]


def svg_path() -> Path:
    """The scalable icon."""
    return icons_dir() / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def png_path(size: int) -> Path:
    """The PNG icon of ``size`` x ``size`` pixels (one of PNG_SIZES)."""
    if size not in PNG_SIZES:
        raise ValueError(f"no {size} px icon; sizes: {PNG_SIZES}")
    return icons_dir() / "hicolor" / f"{size}x{size}" / "apps" / f"{APP_ID}.png"


def png_paths() -> dict[int, Path]:
    """Every PNG icon that exists, by size."""
    return {size: png_path(size) for size in PNG_SIZES if png_path(size).is_file()}


def ico_path() -> Path:
    """The Windows icon (16-256 px)."""
    return icons_dir() / "loragui.ico"


def icns_path() -> Path:
    """The macOS icon (16-1024 px)."""
    return icons_dir() / "loragui.icns"


def app_icon():
    """A ``QIcon`` holding every PNG size (no SVG plugin needed); empty when none is bundled.

    Needs a ``QGuiApplication`` to exist.
    """
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for path in png_paths().values():
        icon.addFile(str(path))
    return icon
