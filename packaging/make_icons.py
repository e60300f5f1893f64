"""Render the application icon from packaging/icon.svg into resources/icons/.

    python packaging/make_icons.py          # needs rsvg-convert (apt-get install librsvg2-bin)

Writes, for the application id io.github.loragui.LoraGui:

* ``resources/icons/hicolor/scalable/apps/APP_ID.svg``  (a copy of icon.svg)
* ``resources/icons/hicolor/NxN/apps/APP_ID.png`` for N in 16 24 32 48 64 128 256 512
  (16 and 24 from the pixel-aligned packaging/icon-small.svg)
* ``resources/icons/loragui.ico``   (Windows: 16-256 px)
* ``resources/icons/loragui.icns``  (macOS: 16-1024 px)

The hicolor tree is laid out as a freedesktop icon theme, so
packaging/linux/install-desktop-entry.sh copies it as it is. The generated files
are committed; run this again after editing either SVG. Rendering uses librsvg,
the renderer that GNOME and most Linux desktops use for SVG icons.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

APP_ID = "io.github.loragui.LoraGui"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "resources" / "icons"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
SMALL_SIZES = (16, 24)  # drawn from icon-small.svg
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def render(size: int) -> Image.Image:
    svg = HERE / ("icon-small.svg" if size in SMALL_SIZES else "icon.svg")
    png = subprocess.run(["rsvg-convert", "--width", str(size), "--height", str(size), str(svg)],
                         check=True, capture_output=True).stdout
    image = Image.open(io.BytesIO(png)).convert("RGBA")
    if image.size != (size, size):
        raise SystemExit(f"rsvg-convert gave {image.size} for {size} px")
    return image


def main() -> int:
    if shutil.which("rsvg-convert") is None:
        print("make_icons: rsvg-convert is missing (apt-get install librsvg2-bin)", file=sys.stderr)
        return 1
    images = {size: render(size) for size in sorted(set(PNG_SIZES + ICNS_SIZES))}
    hicolor = OUT / "hicolor"
    scalable = hicolor / "scalable" / "apps"
    scalable.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "icon.svg", scalable / f"{APP_ID}.svg")
    for size in PNG_SIZES:
        folder = hicolor / f"{size}x{size}" / "apps"
        folder.mkdir(parents=True, exist_ok=True)
        images[size].save(folder / f"{APP_ID}.png", optimize=True)
    largest = images[max(ICO_SIZES)]
    largest.save(OUT / "loragui.ico", sizes=[(s, s) for s in ICO_SIZES],
                 append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)])
    images[1024].save(OUT / "loragui.icns",
                      append_images=[images[s] for s in ICNS_SIZES if s != 1024])
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
