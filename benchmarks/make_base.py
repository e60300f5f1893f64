"""Reproduce a bundled base model: ``loragui train --full`` on DSB2018 fluorescence.

    python benchmarks/make_base.py --name small --width 16 --depth 3 --steps 4000 --device cuda

writes ``resources/base/loragui-base-NAME.safetensors`` and
``resources/base/loragui-base-NAME.json`` (the settings, the validation metrics and
the Dice measured on the CPU on a few held-out fluorescence images, which are
copied to ``tests/data/base_check/`` so a test can check the shipped file
against this record).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, data_root  # noqa: E402
from loragui.engine.config import TrainConfig  # noqa: E402
from loragui.engine.dataset import split_indices  # noqa: E402
from loragui.engine.events import EpochEvent, LogEvent, RunFailed, RunFinished  # noqa: E402
from loragui.engine.pairing import pair_folders  # noqa: E402
from loragui.engine.predict import evaluate_folders  # noqa: E402
from loragui.engine.runrecord import read_run_record  # noqa: E402
from loragui.engine.train import run_training  # noqa: E402

CHECK_IMAGES = 6


def reproduce_command(args: argparse.Namespace) -> str:
    """The command that makes this file again (written to resources/base)."""
    return (f"python benchmarks/make_base.py --name {args.name} --width {args.width} "
            f"--depth {args.depth} --steps {args.steps} --batch-size {args.batch_size} "
            f"--crop-size {args.crop_size} --lr {args.lr:g} --seed {args.seed} "
            f"--device {args.device}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="small")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(REPO / "resources" / "base"))
    args = ap.parse_args()

    root = data_root() / "fluorescence"
    val_fraction = 0.1
    cfg = TrainConfig(images=str(root / "images"), masks=str(root / "masks"), full=True,
                      width=args.width, depth=args.depth, steps=args.steps,
                      steps_per_epoch=max(1, args.steps // 20), batch_size=args.batch_size,
                      crop_size=args.crop_size, lr=args.lr, val_fraction=val_fraction,
                      seed=args.seed, device=args.device, previews=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.out = tmp
        t0 = time.perf_counter()
        result = None
        for ev in run_training(cfg):
            if isinstance(ev, EpochEvent):
                print(f"epoch {ev.epoch}: val Dice {ev.dice:.4f}", flush=True)
            elif isinstance(ev, LogEvent):
                print(ev.message)
            elif isinstance(ev, RunFailed):
                print(ev.message, ev.details, file=sys.stderr)
                return 1
            elif isinstance(ev, RunFinished):
                result = ev
        seconds = time.perf_counter() - t0
        target = out / f"loragui-base-{args.name}.safetensors"
        shutil.copyfile(result.output, target)
        run = read_run_record(tmp)
    # a few held-out images, scored on the CPU, for the shipped-file test
    report = pair_folders(root / "images", root / "masks")
    _, val_idx = split_indices(len(report.pairs), val_fraction, args.seed)
    check = REPO / "tests" / "data" / "base_check"
    for sub in ("images", "masks"):
        (check / sub).mkdir(parents=True, exist_ok=True)
    for i in sorted(val_idx)[:CHECK_IMAGES]:
        pair = report.pairs[i]
        shutil.copyfile(pair.image, check / "images" / pair.image.name)
        shutil.copyfile(pair.mask, check / "masks" / pair.mask.name)
    scores = evaluate_folders(check / "images", check / "masks", base=target, device="cpu")
    record = {
        "file": target.name, "command": reproduce_command(args), "architecture":
        {"width": args.width, "depth": args.depth}, "trained_on": "DSB2018 stage-1 fluorescence (CC0)",
        "steps": args.steps, "batch_size": args.batch_size, "crop_size": args.crop_size,
        "lr": args.lr, "seed": args.seed, "device": run["device"], "seconds": round(seconds, 1),
        "val_dice_best": result.best_dice, "val_pairs": run["dataset"]["val"],
        "check_images": sorted(p.name for p in (check / "images").iterdir()),
        "check_dice_cpu": scores["dice"], "check_dice_pooled_cpu": scores["dice_pooled"],
    }
    (out / f"loragui-base-{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
