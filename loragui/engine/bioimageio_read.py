"""Reading bioimage.io model packages: whether the library is there, what a package
holds (``loragui info``), and the checks a package passes before it is handed over
(``bioimageio.spec``'s validation, ``bioimageio.core``'s model test).

The library is imported inside each function: the engine loads without the extra.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import LoraGuiError

INSTALL = 'pip install "loragui[bioimageio]"'
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")


def bioimageio_unavailable_reason() -> str:
    """Why a bioimage.io package cannot be written ("" when it can)."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        return f"the bioimageio.spec package is not installed ({exc}); install it with: {INSTALL}"
    except Exception as exc:  # noqa: BLE001 - a broken install: say so
        return f"the bioimageio.spec package cannot be imported: {type(exc).__name__}: {exc}"
    return ""


def require_bioimageio() -> None:
    reason = bioimageio_unavailable_reason()
    if reason:
        raise LoraGuiError(f"bioimage.io export needs the bioimageio extra: {reason}")


def validate_package(path: str | os.PathLike) -> str:
    """Validate a package with ``bioimageio.spec`` (every file hashed, inside the zip) and
    return the summary's status ("valid-format" or "passed"); refuse a package that fails."""
    from bioimageio.spec import load_model_description

    try:
        descr = load_model_description(Path(path), perform_io_checks=True)
    except Exception as exc:  # the library's own refusal: report it as the user's file
        raise LoraGuiError(f"{Path(path).name} is not a valid bioimage.io model: {exc}") from None
    summary = descr.validation_summary
    if summary.status not in ("valid-format", "passed"):
        raise LoraGuiError(f"{Path(path).name} failed bioimage.io validation:\n"
                           + summary.format())
    return summary.status


def model_tests(path: str | os.PathLike) -> dict[str, str]:
    """bioimageio.core's model test for each weight format (the weights run on the test
    input, compared with the test output): ``{format: status}``; {} without the core."""
    try:
        from bioimageio.core import test_model
    except ImportError:
        return {}
    return {fmt: test_model(Path(path), weight_format=fmt, devices=["cpu"]).status
            for fmt in WEIGHT_FORMATS}


def is_package(path: str | os.PathLike) -> bool:
    """A zip holding a bioimage.io description (``rdf.yaml`` or ``bioimageio.yaml``)."""
    import zipfile

    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return bool({"rdf.yaml", "bioimageio.yaml"} & set(z.namelist()))


def package_info(path: str | os.PathLike) -> dict[str, Any]:
    """What ``loragui info`` says about a package: the spec's fields, and the base model and
    adapter it came from (its ``config.loragui`` section). Reading checks the format only."""
    require_bioimageio()
    from bioimageio.spec import load_model_description

    path = Path(path)
    try:
        descr = load_model_description(path, perform_io_checks=False)
    except Exception as exc:
        raise LoraGuiError(f"{path.name} is not a valid bioimage.io model: {exc}") from None
    config = descr.config.model_dump(mode="json") if descr.config is not None else {}
    section = config.get("loragui") or {}
    info: dict[str, Any] = {
        "kind": "bioimage.io model package", "path": str(path), "size_bytes": path.stat().st_size,
        "name": descr.name, "format_version": descr.format_version,
        "weights": [fmt for fmt in WEIGHT_FORMATS if getattr(descr.weights, fmt) is not None],
        "authors": [a.name for a in descr.authors], "license": str(descr.license),
        "provenance": "recorded by loragui" if section else "none (not written by loragui)",
    }
    info.update(section)
    return info
