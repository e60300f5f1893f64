"""``evaluate`` for a model of K classes: per-class Dice and IoU, their mean over the
foreground classes, and the confusion matrix, on image/mask pairs.

The ground truth holds class indices (0 = background, as the model's classes are
numbered), or the ids of a ``classes.json`` beside the masks, which are matched to the
model's classes by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .class_metrics import ClassScores
from .errors import DataError
from .imageio import read_image
from .maskkinds import CLASSES_FILE, MaskClass, MaskMeaning, read_classes_file, read_target
from .pairing_report import Pair
from .preprocessing import Preprocessing
from .tiling import predict_mask
from .unet import UNet


def truth_meaning(meaning: MaskMeaning, masks_dir: Path) -> MaskMeaning:
    """How the evaluated masks' ids map to the model's classes."""
    file = masks_dir / CLASSES_FILE
    if not file.is_file():
        return meaning
    by_name = {c.name: c.value for c in read_classes_file(file)}
    missing = [n for n in meaning.names if n not in by_name]
    if missing:
        raise DataError(f"{file} does not name the model's class(es) {', '.join(missing)}; "
                        f"the model's classes are {', '.join(meaning.names)}.")
    return MaskMeaning(meaning.hold, tuple(MaskClass(by_name[c.name], c.name, c.colour)
                                           for c in meaning.classes))


def evaluate_classes(pairs: Sequence[Pair], model: UNet, prep: Preprocessing,
                     meaning: MaskMeaning, device: torch.device, masks_dir: Path) -> dict[str, Any]:
    """The scores (:meth:`ClassScores.summary`) plus ``class_names`` and ``per_image``."""
    truth = truth_meaning(meaning, masks_dir)
    scores = ClassScores(meaning.names)
    rows = []
    for pair in pairs:
        pred = predict_mask(model, read_image(pair.image, prep, exif=pair.exif), device)
        true = read_target(pair.mask, truth)
        scores.add(pred, true)
        rows.append({"stem": pair.stem, "image": pair.image.name, "mask": pair.mask.name,
                     **scores.image_summary(),
                     "true_pixels": int(np.count_nonzero(true)),
                     "predicted_pixels": int(np.count_nonzero(pred))})
    result = scores.summary()
    result["class_names"] = meaning.names
    result["per_image"] = rows
    return result
