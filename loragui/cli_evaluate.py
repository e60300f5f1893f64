"""``loragui evaluate``: Dice and IoU of a model on labelled images (per class, with a
confusion matrix, for a model of several classes).

The images come from ``--images``/``--masks``, the bundled sample (``--sample``), or
a run folder (``--run``: exactly the pairs that run validated on, scored with the
model it wrote). ``--per-image FILE.csv`` writes one row per image. ``--objects`` adds
the object scores (:mod:`.engine.object_metrics`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from .terminal import fmt, say, warn

PER_IMAGE_COLUMNS = ("stem", "dice", "iou", "true_pixels", "predicted_pixels", "image", "mask")
# with --objects, after the columns above
OBJECT_COLUMNS = ("true_objects", "predicted_objects", "object_f1", "object_ap")
SCORES = ("dice", "iou", "object_f1", "object_ap")


def add_evaluate_parser(sub, add_model_args) -> None:
    e = sub.add_parser(
        "evaluate", help="Dice and IoU on labelled images",
        description="Dice and IoU (mean per image, and pooled over all pixels) of a base model, "
                    "or of a base model with an adapter, on image/mask pairs.")
    where = e.add_argument_group("the images (one of)")
    where.add_argument("--images", metavar="DIR",
                       help="folder of images (with --masks; pairs share a file stem)")
    where.add_argument("--masks", metavar="DIR",
                       help="folder of masks, one per image (0 = background)")
    where.add_argument("--sample", action="store_true", help="the bundled sample data")
    where.add_argument("--run", metavar="RUN",
                       help="a run folder: its validation images, scored with the adapter (or "
                            "model) it wrote, unless --adapter or --base is given")
    add_model_args(e)
    e.add_argument("--per-image", metavar="FILE.csv",
                   help="also write one row per image (stem, dice, iou, pixels) to this CSV")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an existing --per-image file (nothing else is ever replaced)")
    e.add_argument("--objects", action="store_true",
                   help="also score objects: precision, recall and F1 at IoU 0.5 and the average "
                        "precision over IoU 0.5-0.95 (2018 Data Science Bowl); the masks' values "
                        "are object labels (a binary mask's connected components are its objects)")
    e.add_argument("--json", action="store_true", help="print one JSON object")


def _inputs(args: argparse.Namespace) -> dict:
    """images, masks, stems (or None), base, adapter, from whichever source was given."""
    from .engine.errors import DataError

    folders = args.images is not None or args.masks is not None
    chosen = [name for name, given in (("--images/--masks", folders), ("--sample", args.sample),
                                       ("--run", args.run is not None)) if given]
    if len(chosen) != 1:
        raise DataError("evaluate needs one of --images DIR --masks DIR, --sample or --run RUN"
                        + (f" (not {' and '.join(chosen)} together)" if chosen else ""))
    if folders and (args.images is None or args.masks is None):
        raise DataError(f"{'--masks' if args.masks is None else '--images'} is missing: "
                        "--images and --masks go together")
    given = {"base": args.base, "adapter": args.adapter, "stems": None}
    if args.sample:
        from .engine.resources import bundled_sample_dirs

        dirs = bundled_sample_dirs()
        if dirs is None:
            raise DataError("this installation has no bundled sample data: use --images and "
                            "--masks")
        return {**given, "images": dirs[0], "masks": dirs[1]}
    if args.run is not None:
        from .engine.runrecord import validation_inputs

        run = validation_inputs(args.run)
        if args.adapter or args.base:  # another model on the run's validation set
            run.update(base=args.base, adapter=args.adapter)
        return run
    return {**given, "images": args.images, "masks": args.masks}


def _per_image_check(path: str, overwrite: bool) -> Path:
    """The CSV's place, checked before any work: a new file, or (``overwrite``) an
    existing CSV file."""
    from .engine.errors import DataError

    dest = Path(path)
    if dest.suffix.lower() != ".csv":
        raise DataError(f"--per-image {path}: give a file name ending in .csv")
    if dest.is_dir():
        raise DataError(f"--per-image {path} is a folder: give a file name ending in .csv")
    if not dest.parent.is_dir():
        raise DataError(f"--per-image {path}: the folder {dest.parent} does not exist")
    if dest.exists() and not overwrite:
        raise DataError(f"--per-image {path} exists; use --overwrite to replace it, or give "
                        "another file name")
    return dest


def write_per_image(dest: Path, rows: list[dict], objects: bool = False) -> None:
    from .engine.atomic import atomic_write_text

    columns = PER_IMAGE_COLUMNS + (OBJECT_COLUMNS if objects else ())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6f}" if k in SCORES else row[k]) for k in columns})
    atomic_write_text(dest, buf.getvalue())


def say_classes(result: dict) -> None:
    """Per-class figures and the confusion matrix (rows: true class, columns: predicted)."""
    names = result["class_names"]
    width = max(len(n) for n in names)
    say("  (the Dice and IoU above are the means over the classes other than "
        f"{names[0]})")
    for name in names:
        c = result["classes"][name]
        say(f"  {name:<{width}}  Dice {fmt(c['dice'])} (pooled {fmt(c['dice_pooled'])}), "
            f"IoU {fmt(c['iou'])} (pooled {fmt(c['iou_pooled'])})")
    say("confusion matrix (pixels; rows: true class, columns: predicted):")
    cells = [[str(v) for v in row] for row in result["confusion"]]
    col = max([len(n) for n in names] + [len(v) for row in cells for v in row])
    say("  " + " " * width + "  " + "  ".join(f"{n:>{col}}" for n in names))
    for name, row in zip(names, cells, strict=True):
        say(f"  {name:<{width}}  " + "  ".join(f"{v:>{col}}" for v in row))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .engine.predict import evaluate_folders

    inputs = _inputs(args)
    dest = _per_image_check(args.per_image, args.overwrite) if args.per_image else None
    result = evaluate_folders(inputs["images"], inputs["masks"], base=inputs["base"],
                              adapter=inputs["adapter"], device=args.device, force=args.force,
                              stems=inputs["stems"], corrections=inputs.get("corrections"),
                              objects=args.objects)
    for w in result.pop("warnings"):
        warn(w)
    rows = result.pop("per_image")
    if dest is not None:
        write_per_image(dest, rows, objects=args.objects)
    if args.json:
        print(json.dumps(result))
    else:
        what = "validation images of the run" if args.run else "images"
        say(f"{result['images']} {what}: Dice {fmt(result['dice'])} (pooled "
              f"{fmt(result['dice_pooled'])}), IoU {fmt(result['iou'])} (pooled "
              f"{fmt(result['iou_pooled'])})")
        if "objects" in result:  # asked for, or an objects model
            o = result["objects"]
            say(f"objects: {o['predicted_objects']} predicted, {o['true_objects']} true; at IoU "
                f"0.5 precision {fmt(o['precision'])}, recall {fmt(o['recall'])}, F1 "
                f"{fmt(o['f1'])}; average precision (IoU 0.5-0.95) {fmt(o['ap'])}")
        if "classes" in result:
            say_classes(result)
    if dest is not None:
        say(f"wrote {dest} ({len(rows)} rows)", sys.stderr)
    return 0
