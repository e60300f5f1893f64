"""Inference: one image, or a whole folder, with a base model and optional adapter.

Images are normalised exactly as at training (the preprocessing stored in the
model file). Any size works: the network pads to a multiple of ``2**depth``;
images larger than ``TILE`` pixels a side are processed in overlapping tiles so
memory stays bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write
from .devices import resolve_device, supports_bf16
from .errors import DataError
from .events import ProgressEvent
from .folders import list_images
from .imageio import read_image
from .model_input import to_model_input
from .outputs import PREDICTIONS, Input, check_output, mark
from .preprocessing import Preprocessing
from .unet import UNet

TILE = 1024  # tile side for big images
OVERLAP = 64  # context discarded at inner tile borders


def _forward(model: UNet, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=supports_bf16(device)):
        return model.forward_any_size(x).float()


@torch.no_grad()
def predict_probability(model: UNet, image: np.ndarray, device: torch.device | str = "cpu",
                        *, logits: bool = False) -> torch.Tensor:
    """Foreground probability (or logits) (H, W) on the CPU for one (H, W, C) uint8 image."""
    device = torch.device(device)
    h, w = image.shape[:2]
    x = to_model_input(image, device)  # (1, C, H, W)
    if h <= TILE and w <= TILE:
        out = _forward(model, x, device)[0, 0]
    else:
        out = torch.empty(h, w, device=device)
        step = TILE - 2 * OVERLAP
        for top in range(0, h, step):
            for left in range(0, w, step):
                t0, l0 = max(0, top - OVERLAP), max(0, left - OVERLAP)
                t1, l1 = min(h, top + step + OVERLAP), min(w, left + step + OVERLAP)
                tile = _forward(model, x[..., t0:t1, l0:l1], device)[0, 0]
                bh, bw = min(step, h - top), min(step, w - left)
                out[top:top + bh, left:left + bw] = tile[top - t0:top - t0 + bh, left - l0:left - l0 + bw]
    out = out.cpu()
    return out if logits else torch.sigmoid(out)


def load_for_inference(base: str | Path | None, adapter: str | Path | None, *,
                       force: bool = False) -> tuple[UNet, Preprocessing, list[str]]:
    """A plain model (adapter merged in) and its preprocessing."""
    from .basemodel import load_model, resolve_base
    from .exports import merged_model

    if adapter:
        model, info, _, warnings = merged_model(base, adapter, force=force)
    else:
        model, info = load_model(resolve_base(base))
        warnings = []
    return model, Preprocessing.from_dict(info.preprocessing), warnings


def predict_folder(images_dir: str | Path, out_dir: str | Path, *, base: str | Path | None = None,
                   adapter: str | Path | None = None, device: str = "auto",
                   stop: threading.Event | None = None, threshold: float = 0.5,
                   force: bool = False, overwrite: bool = False) -> Iterator[ProgressEvent]:
    """Write one 0/255 PNG mask per image (same stem, original size) into ``out_dir``,
    a new or empty folder, or (``overwrite``) one that holds loragui's earlier masks
    (see :mod:`.outputs`)."""
    files = list_images(images_dir)
    out = check_output(out_dir, PREDICTIONS, [Input("the images folder", images_dir, nest_ok=True),
                                              Input("--base", base), Input("--adapter", adapter)],
                       overwrite=overwrite)
    model, prep, warnings = load_for_inference(base, adapter, force=force)
    dev = resolve_device(device)
    model.to(dev).eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the folder {out} ({exc.strerror or exc}); choose "
                        "another folder for the masks") from None
    mark(out, PREDICTIONS)
    for w in warnings:
        yield ProgressEvent(0, len(files), w)
    failed = []
    stems = [p.stem.casefold() for p in files]
    for i, path in enumerate(files):
        if stop is not None and stop.is_set():
            yield ProgressEvent(i, len(files), "stopped")
            return
        try:
            image = read_image(path, prep)
        except DataError as exc:
            failed.append(path.name)
            yield ProgressEvent(i + 1, len(files), f"skipped: {exc}")
            continue
        prob = predict_probability(model, image, dev).numpy()
        mask = Image.fromarray(((prob > threshold) * 255).astype(np.uint8))
        # two images with one stem (a.tif, a.jpg) must not overwrite each other's mask
        name = path.stem if stems.count(path.stem.casefold()) == 1 else \
            f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        atomic_write(out / f"{name}.png", lambda tmp, m=mask: m.save(tmp, format="PNG"))
        yield ProgressEvent(i + 1, len(files), path.name)
    if failed:
        yield ProgressEvent(len(files), len(files),
                            f"warning: {len(failed)} image(s) could not be read: "
                            f"{', '.join(failed[:5])}")


def evaluate_folders(images_dir: str | Path, masks_dir: str | Path, *, base: str | Path | None = None,
                     adapter: str | Path | None = None, device: str = "auto",
                     force: bool = False) -> dict:
    """Dice and IoU (mean per image and pooled) of a model on an image/mask folder pair."""
    from .masks import read_mask
    from .metrics import SegmentationScores
    from .pairing import pair_folders

    report = pair_folders(images_dir, masks_dir)
    if not report.ok:
        raise DataError("no image/mask pairs to evaluate on.\n" + report.summary())
    model, prep, warnings = load_for_inference(base, adapter, force=force)
    dev = resolve_device(device)
    model.to(dev).eval()
    scores = SegmentationScores()
    for pair in report.pairs:
        prob = predict_probability(model, read_image(pair.image, prep, exif=pair.exif), dev).numpy()
        mask, _ = read_mask(pair.mask)
        scores.add(prob > 0.5, mask)
    result = scores.summary()
    result["warnings"] = warnings
    result["skipped"] = len(report.images_without_masks) + len(report.unreadable) + len(report.size_mismatch)
    return result
