"""The bundled resources: base models, the sample dataset and the application icons.

In a wheel or a frozen build they are the package ``loragui.resources``; in a
checkout that is not installed, the top-level ``resources/`` folder. Torch-free,
so that the window finds its icon and the bundled files without loading torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

from .formats import sha256_file

SMALL_BASE = "loragui-base-small.safetensors"
MEDIUM_BASE = "loragui-base-medium.safetensors"


def resources_dir() -> Path:
    """The bundled resources (in the wheel: ``loragui/resources``; in a checkout: ``resources/``)."""
    try:
        import loragui.resources as res

        return Path(res.__file__).resolve().parent
    except ImportError:  # a checkout that is not installed
        return Path(__file__).resolve().parents[2] / "resources"


def icons_dir() -> Path:
    """The icon folder, a freedesktop ``hicolor`` theme (see ``loragui.gui.icons``)."""
    return resources_dir() / "icons"


def bundled_base_path(device_type: str | None = None) -> Path | None:
    """The bundled base model to train on: the medium one on a GPU (``"cuda"``,
    ``"mps"``), where it scores higher at little cost; the small one on the CPU or
    when the device is not known (a CPU trains it several times faster)."""
    names = [MEDIUM_BASE, SMALL_BASE] if device_type in ("cuda", "mps") else [SMALL_BASE]
    for name in names:
        path = resources_dir() / "base" / name
        if path.is_file():
            return path
    return None


def bundled_bases() -> list[Path]:
    return [p for p in (resources_dir() / "base" / n for n in (SMALL_BASE, MEDIUM_BASE))
            if p.is_file()]


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def bundled_base_with_sha256(sha256: str) -> Path | None:
    """The bundled base model whose SHA-256 is ``sha256`` (hashed once per file version)."""
    for path in bundled_bases():
        st = path.stat()
        if _cached_sha256(str(path), st.st_size, st.st_mtime_ns) == sha256:
            return path
    return None


def bundled_sample_dirs() -> tuple[Path, Path] | None:
    root = resources_dir() / "sample"
    images, masks = root / "images", root / "masks"
    return (images, masks) if images.is_dir() and masks.is_dir() else None
