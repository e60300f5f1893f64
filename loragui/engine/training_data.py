"""A run's data: the folders paired and decoded, split into training and validation,
with what the scan found said as it is found (the log) and kept for run.json."""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .dataset import DecodedDataset, split_indices
from .errors import DataError
from .events import LogEvent
from .maskkinds import MaskMeaning, resolve
from .pairing import pair_folders
from .preprocessing import Preprocessing

MIN_VAL_IMAGES = 5  # fewer validation images than this give a Dice too noisy to trust: warned


@dataclass
class TrainingData:
    train: DecodedDataset
    val: DecodedDataset | None  # None: one pair, validated on itself (said in the log)
    val_stems: list[str]
    info: dict[str, Any]  # run.json's "dataset": counts, fingerprint, folder names
    problems: dict[str, list[str]]  # the pairing report's problems, every name
    meaning: MaskMeaning


def prepare_data(c: TrainConfig, prep: Preprocessing, stop: threading.Event | None
                 ) -> Generator[LogEvent, None, TrainingData]:
    """Pair and decode the run's folders (yielding what the scan found), then split them."""
    report = pair_folders(c.images, c.masks or None, corrections=c.corrections or None)
    if not report.ok:
        raise DataError("no image/mask pairs to train on.\n" + report.summary(max_names=20))
    meaning = resolve(c.masks_hold, c.classes, report.proposal, report.masks_seen,
                      report.masks_dir, invert=c.invert_masks)
    # Up to 20 names per problem on the command line; every one is kept in run.json.
    lines = report.summary(max_names=20, hold=meaning.hold).splitlines()
    yield LogEvent(lines[0].strip(), "info")  # "41 pairs found in …"
    for line in lines[1:]:
        if line.strip():
            yield LogEvent(line.strip(), "warning")
    if c.invert_masks:
        yield LogEvent("the masks are used inverted (--invert-masks): their 0 pixels are "
                       "the objects", "info")
    if meaning.k > 1:
        yield LogEvent(f"the masks are trained as {meaning.hold}: " + ", ".join(
            f"{i} {m.name}" for i, m in enumerate(meaning.classes)), "info")
    data = DecodedDataset.build(report.pairs, prep, stop=stop,
                                invert=c.invert_masks, meaning=meaning)
    n = len(data.names)
    train_idx, val_idx = split_indices(n, c.val_fraction, c.seed)
    if n == 1:
        yield LogEvent("only one pair: it is used for both training and validation", "warning")
    elif 0 < len(val_idx) < MIN_VAL_IMAGES:
        yield LogEvent(f"only {len(val_idx)} validation image(s): their Dice is a rough "
                       f"figure; add image/mask pairs, or raise --val-fraction (now "
                       f"{c.val_fraction:g}) so that at least {MIN_VAL_IMAGES} are held out",
                       "warning")
    val_stems = [data.names[i] for i in val_idx]
    info = {"pairs": n, "train": len(train_idx), "val": len(val_idx),
            "fingerprint": data.fingerprint(), "images": Path(c.images).name,
            "masks": Path(c.masks).name if c.masks else None,
            # names only: adapters get shared
            "corrections": Path(c.corrections).name if c.corrections else None,
            "corrected": [p.stem for p in report.pairs if p.corrected],
            "unlabelled": len(report.images_without_masks)}
    return TrainingData(
        train=data.subset(train_idx), val=data.subset(val_idx) if val_idx else None,
        val_stems=val_stems, info=info, meaning=meaning,
        problems={title: entries for title, entries in report.problem_groups(meaning.hold)})
