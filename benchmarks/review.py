"""Review and correction: the loop a user runs (predict, review, correct, train again), timed.

Sections (``--sections``, all by default):

* ``display``: the time to show an image with its prediction while flipping through
  100 images of 1024² (cached and uncached), from ``benchmarks/review_display.py``;
* ``canvas``: a brush stroke's redraw time on a 2048² image, from
  ``benchmarks/review_canvas.py``;
* ``loop``: a scripted correction loop on DSB2018 histology, through the product's own
  code path (``run_training`` as ``loragui train`` runs it, ``evaluate_folders`` as
  ``loragui evaluate`` does):

  1. a fixed held-out set (``--held-out`` images, seeded) scores every model, never trained on;
  2. round 1: 8 of the other images are labelled (seeded); train from the bundled base on
     that folder (its other images are unlabelled, as in a user's folder);
  3. predict the unlabelled images with round 1's adapter and take the 8 with the lowest
     Dice; "correct" them by copying their true masks into a corrections folder;
  4. round 2: train again from round 1's adapter (``--init-adapter``, ``--corrections``)
     on the 16, against training from the bundled base (no initial adapter) on the
     same 16 images.

  Prints each round's training wall time and the held-out Dice of its adapter.

Timings mean something only on a quiet machine (nothing else computing). Usage:

    python benchmarks/review.py                      # the data from $LORAGUI_DATA or ../shared/data
    python benchmarks/review.py --sections loop --quick    # a few steps: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_root
from loragui.engine.config import TrainConfig
from loragui.engine.events import RunFailed, RunFinished
from loragui.engine.pairing import pair_folders
from loragui.engine.predict import evaluate_folders
from loragui.engine.train import run_training

SECTIONS = ("display", "canvas", "loop")
LABELLED = 8  # images labelled at the start
CORRECTED = 8  # the worst predictions corrected after round 1


def train(name: str, work: Path, device: str, overrides: dict, **settings) -> dict:
    """One training through ``run_training``: its wall time, steps and adapter."""
    config = TrainConfig(out=str(work / name), device=device, **settings, **overrides)
    t0 = time.perf_counter()
    end = None
    for ev in run_training(config):
        if isinstance(ev, RunFailed):
            raise SystemExit(f"{name}: training failed: {ev.message}")
        if isinstance(ev, RunFinished):
            end = ev
    return {"round": name, "seconds": time.perf_counter() - t0, "steps": end.steps,
            "run_dice": end.best_dice, "start_dice": end.base_dice, "adapter": end.output}


def held_out_dice(row: dict, held: Path, device: str) -> dict:
    """The adapter's mean per-image Dice on the held-out images (``loragui evaluate``)."""
    t0 = time.perf_counter()
    result = evaluate_folders(held / "images", held / "masks", adapter=row["adapter"],
                              device=device)
    return {**row, "held_out_dice": result["dice"], "evaluate_seconds": time.perf_counter() - t0}


def copy_pairs(pairs, dest: Path, *, masks: bool = True) -> None:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    for p in pairs:
        shutil.copy2(p.image, dest / "images" / p.image.name)
        if masks:
            shutil.copy2(p.mask, dest / "masks" / f"{p.stem}.png")


def correction_loop(args: argparse.Namespace) -> dict:
    source = Path(args.data) if args.data else data_root() / "histology"
    pairs = pair_folders(source / "images", source / "masks").pairs
    rng = random.Random(args.seed)
    rng.shuffle(pairs)
    if len(pairs) < args.held_out + LABELLED + CORRECTED:
        raise SystemExit(f"{source} holds {len(pairs)} pairs; the loop needs at least "
                         f"{args.held_out + LABELLED + CORRECTED}")
    held, pool = pairs[:args.held_out], pairs[args.held_out:]
    if args.pool:
        if args.pool < LABELLED + CORRECTED:
            raise SystemExit(f"--pool {args.pool}: the loop needs at least "
                             f"{LABELLED + CORRECTED} images in the user's folder")
        pool = pool[:args.pool]
    labelled = pool[:LABELLED]
    overrides = json.loads(args.train_args)
    if args.quick:
        overrides = {"steps": 4, "steps_per_epoch": 2, "batch_size": 2, "previews": 0,
                     **overrides}
    with tempfile.TemporaryDirectory(prefix="loragui-review-") as tmp:
        work = Path(tmp)
        copy_pairs(held, work / "held")
        copy_pairs(pool, work / "user", masks=False)  # the user's folder: every image ...
        copy_pairs(labelled, work / "user")  # ... and the masks of the 8 labelled ones
        images, masks = work / "user" / "images", work / "user" / "masks"
        rows = [held_out_dice(train("round1", work, args.device, overrides, images=str(images),
                                    masks=str(masks)), work / "held", args.device)]
        # predict the unlabelled images (the review view's list, worst first) and correct
        # the worst by taking their true masks
        t0 = time.perf_counter()
        unlabelled = [p.stem for p in pool[LABELLED:]]
        scored = evaluate_folders(images, source / "masks", adapter=rows[0]["adapter"],
                                  device=args.device, stems=unlabelled)["per_image"]
        predict_seconds = time.perf_counter() - t0
        worst = sorted(scored, key=lambda r: r["dice"])[:CORRECTED]
        corrections = work / "user" / "corrections"
        corrections.mkdir()
        by_stem = {p.stem: p for p in pool}
        for row in worst:
            shutil.copy2(by_stem[row["stem"]].mask, corrections / f"{row['stem']}.png")
        again = dict(images=str(images), masks=str(masks), corrections=str(corrections))
        rows.append(held_out_dice(train("round2_from_adapter", work, args.device, overrides,
                                        init_adapter=rows[0]["adapter"], **again),
                                  work / "held", args.device))
        rows.append(held_out_dice(train("round2_from_base", work, args.device, overrides,
                                        **again), work / "held", args.device))
    print(f"correction loop on {source.name}: {len(held)} held-out images, {len(pool)} in the "
          f"user's folder ({LABELLED} labelled), seed {args.seed}, device {args.device}"
          + (" (--quick: a few steps, figures mean nothing)" if args.quick else ""))
    print(f"predicting and scoring the {len(unlabelled)} unlabelled images: "
          f"{predict_seconds:.1f} s; the {CORRECTED} worst (Dice "
          f"{', '.join(format(r['dice'], '.2f') for r in worst)}) corrected")
    print(f"{'round':<22}{'images':>7}{'train s':>10}{'steps':>7}{'start Dice':>12}"
          f"{'held-out Dice':>15}")
    for row, n in zip(rows, (LABELLED, LABELLED + CORRECTED, LABELLED + CORRECTED), strict=True):
        start = "" if row["start_dice"] is None else f"{row['start_dice']:.3f}"
        print(f"{row['round']:<22}{n:>7}{row['seconds']:>10.1f}{row['steps']:>7}{start:>12}"
              f"{row['held_out_dice']:>15.3f}")
    for row in rows:  # its folder is gone with the workspace
        del row["adapter"]
    return {"rounds": rows, "predict_seconds": predict_seconds, "worst": worst,
            "held_out": [p.stem for p in held]}


def other_section(module: str, args: argparse.Namespace) -> dict | None:
    """A timing of the review view's widgets: its own benchmark (``benchmarks/MODULE.py``,
    with its defaults and the device asked for here), run as a program of its own since
    it needs a Qt application (offscreen without a display); its figures print as it goes."""
    script = Path(__file__).with_name(f"{module}.py")
    if not script.is_file():
        print(f"{module}: {script.name} is not present; skipped")
        return None
    env = dict(os.environ)
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    extra = ["--device", args.device] if module == "review_display" and args.device != "auto" \
        else []
    print(f"\n## {module}", flush=True)
    code = subprocess.run([sys.executable, str(script), *extra], env=env).returncode
    return {"exit_status": code}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--data", help="a folder with images/ and masks/ (default: DSB2018 "
                                   "histology from $LORAGUI_DATA or ../shared/data)")
    ap.add_argument("--held-out", type=int, default=25, help="held-out images (default 25)")
    ap.add_argument("--pool", type=int, default=0,
                    help="images in the user's folder (default: all the others)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="a few steps per training")
    ap.add_argument("--train-args", default="{}", help="JSON of TrainConfig overrides")
    ap.add_argument("--json", metavar="FILE", help="write the figures here")
    args = ap.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    figures = {}
    if "display" in sections:
        figures["display"] = other_section("review_display", args)
    if "canvas" in sections:
        figures["canvas"] = other_section("review_canvas", args)
    if "loop" in sections:
        figures["loop"] = correction_loop(args)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
