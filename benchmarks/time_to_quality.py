"""Time to quality: how soon each trainer reaches a good model, on the CPU (or ``--device``).

For each data set (the bundled sample, all of DSB2018 histology, DSB2018
brightfield), with the bundled CPU base (``loragui-base-small``):

* loragui with its defaults, through the product's own path (``run_training``,
  what ``loragui train`` runs): it validates after each epoch and ends by itself
  when it stops improving;
* a PEFT LoRA r=4 script with a plain loop (``benchmarks.common``) at each of the
  learning rates ``--peft-lrs``; the best of them is the one compared.

Both train on the same split (``split_indices`` with loragui's default validation
share and seed), with loragui's default batch, crop size and planned length (the
same steps per epoch and epochs), and both are validated after every epoch by
loragui's own :class:`~loragui.engine.validation.Validator` (mean per-image Dice of
the held-out images); both compute in the precision loragui picks for the device
(bf16 autocast on CPUs with AMX and on CUDA, float32 elsewhere). Each is timed from
its start, decoding the images included; its validations count in its time.
Prints, per trainer: seconds to Dice 0.70, to 0.80 and to within 0.01 of its own
best, the best Dice, the total wall time; and how much sooner loragui reached the
best PEFT script's best Dice.

Timings mean something only on a quiet machine (nothing else computing). Usage:

    python benchmarks/time_to_quality.py                     # ../shared/data beside the repo
    python benchmarks/time_to_quality.py /path/to/data --sets sample,histology
    python benchmarks/time_to_quality.py --sets sample --limit 6 --epochs 3   # a quick check
    python benchmarks/time_to_quality.py --no-amx    # float32 on a CPU with AMX too

Tuning a default: ``--full-length`` adds loragui's defaults run to the end of
their planned epochs (no early stop: the Dice an early end must keep), and each
``--variant NAME=JSON`` a loragui row with those TrainConfig overrides; every row
is printed with its best Dice against the full-length run's. ``--peft-lrs ''``
skips the PEFT script:

    python benchmarks/time_to_quality.py --peft-lrs '' --full-length \
        --variant 'lr 1e-2={"lr": 0.01}' --variant 'warm-up 0={"warmup_fraction": 0}'
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, peft_model, train_plain
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.dataset import DecodedDataset, split_indices
from loragui.engine.devices import resolve_device, supports_bf16
from loragui.engine.events import EpochEvent, RunFailed, RunFinished, RunStarted
from loragui.engine.pairing import pair_folders
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.resources import bundled_base_path, bundled_sample_dirs
from loragui.engine.train import run_training
from loragui.engine.validation import Validator

FULL = "loragui defaults, full length"
THRESHOLDS = (0.70, 0.80)
WITHIN = 0.01  # "at its best level": within this much of its own best Dice


def first_time(trace: list[tuple[float, float]], dice: float) -> float | None:
    """Seconds at the first validation with a Dice of at least ``dice``."""
    return next((t for t, d in trace if d is not None and d >= dice), None)


def summary(trace: list[tuple[float, float]], wall: float) -> dict:
    best = max((d for _, d in trace if d is not None), default=None)
    row = {f"to_{t:.2f}": first_time(trace, t) for t in THRESHOLDS}
    row["to_best"] = first_time(trace, best - WITHIN) if best is not None else None
    row["best"], row["wall"], row["trace"] = best, wall, trace
    return row


def pair_subset(images: Path, masks: Path, limit: int, tmp: Path) -> tuple[Path, Path]:
    """Folders holding the first ``limit`` pairs (copies; for a quick check)."""
    pairs = pair_folders(images, masks).pairs[:limit]
    out_i, out_m = tmp / "images", tmp / "masks"
    out_i.mkdir()
    out_m.mkdir()
    for p in pairs:
        shutil.copy2(p.image, out_i / p.image.name)
        shutil.copy2(p.mask, out_m / p.mask.name)
    return out_i, out_m


def run_loragui(images: Path, masks: Path, base: Path, overrides: dict, device: str
                ) -> tuple[dict, dict]:
    """loragui's defaults through run_training; (summary, plan: steps per epoch, epochs)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(images=str(images), masks=str(masks), out=out, base=str(base),
                          device=device, **overrides)
        t0 = time.perf_counter()
        trace, plan, finished = [], {}, None
        for ev in run_training(cfg):
            if isinstance(ev, RunFailed):
                raise SystemExit(f"loragui failed: {ev.message}\n{ev.details}")
            if isinstance(ev, RunStarted):
                plan = {"steps_per_epoch": ev.steps_per_epoch, "epochs": ev.epochs}
            if isinstance(ev, EpochEvent) and ev.epoch > 0:
                trace.append((ev.elapsed, ev.dice))
            if isinstance(ev, RunFinished):
                finished = ev
        row = summary(trace, time.perf_counter() - t0)
        row["steps"], row["reason"] = finished.steps, finished.reason
        return row, plan


def run_peft(images: Path, masks: Path, base: Path, lr: float, plan: dict, cfg: TrainConfig,
             device: torch.device) -> dict:
    """The PEFT script on loragui's split, batch, crops and plan, validated the same way."""
    t0 = time.perf_counter()
    base_model, info = load_model(base)
    prep = Preprocessing.from_dict(info.preprocessing)
    data = DecodedDataset.build(pair_folders(images, masks).pairs, prep)
    train_idx, val_idx = split_indices(len(data.names), cfg.val_fraction, cfg.seed)
    train, val = data.subset(train_idx), data.subset(val_idx or train_idx)
    torch.manual_seed(cfg.seed)
    model = peft_model(copy.deepcopy(base_model), rank=4, alpha=8).to(device)
    bf16 = supports_bf16(device)  # the precision loragui picks for the device, for both
    validator = Validator(model, device, autocast=bf16, lora=False, previews=0,
                          fault=print, resume_hint=str)
    trace = []

    def validate(step: int) -> None:
        trace.append((time.perf_counter() - t0, validator.run(val).summary["dice"]))

    steps = plan["steps_per_epoch"] * plan["epochs"]
    if steps < 40:  # the plain loop's one-cycle schedule warms up over 5 % of the steps
        raise SystemExit(f"{steps} steps are too few for the PEFT script: plan at least 40")
    train_plain(model, train.images, train.masks, steps=steps, batch=cfg.batch_size,
                size=cfg.auto_crop_size(device.type), lr=lr, device=device,
                bf16=bf16, channels_last=device.type != "mps", seed=cfg.seed,
                validate_every=plan["steps_per_epoch"],
                validate=validate)
    row = summary(trace, time.perf_counter() - t0)
    row["steps"], row["reason"] = steps, f"the planned {steps} steps"
    return row


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"),
                    help="folder holding dsb2018/ (default: ../shared/data beside the repo)")
    ap.add_argument("--sets", default="sample,histology,brightfield")
    ap.add_argument("--peft-lrs", default="1e-3,3e-3,5e-3")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N pairs of each set")
    ap.add_argument("--epochs", type=int, default=0,
                    help="planned epochs for every trainer (default: loragui's default)")
    ap.add_argument("--loragui-args", default="{}", help="JSON of TrainConfig overrides")
    ap.add_argument("--json", metavar="FILE", help="write every trace and figure here")
    ap.add_argument("--device", default="cpu", help="cpu (the laptop's case), cuda or mps")
    ap.add_argument("--base", help="the base model (default: the bundled base for the device)")
    ap.add_argument("--full-length", action="store_true",
                    help="also run loragui's defaults to the end of their planned epochs")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                    help="also run loragui with these TrainConfig overrides (repeatable)")
    ap.add_argument("--no-amx", action="store_true",
                    help="compute as on a CPU without AMX: float32 for both trainers")
    args = ap.parse_args()
    if args.no_amx:  # loragui's probe (devices.cpu_has_amx) and so both trainers see no AMX
        torch.cpu._is_amx_tile_supported = lambda: False
    variants = {}
    for item in args.variant:
        label, sep, spec = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {item!r}: write NAME=JSON, e.g. 'lr 1e-2={{\"lr\": 0.01}}'")
        variants[label] = json.loads(spec)

    device = resolve_device(args.device)
    base = Path(args.base) if args.base else bundled_base_path(device.type)
    overrides = json.loads(args.loragui_args) | ({"epochs": args.epochs} if args.epochs else {})
    cfg = TrainConfig(**overrides)
    results = {}
    for name in args.sets.split(","):
        if name == "sample":
            images, masks = bundled_sample_dirs()
        else:
            root = Path(args.data) / "dsb2018" / name
            images, masks = root / "images", root / "masks"
            if not images.is_dir():
                raise SystemExit(f"{images} not found: pass the folder holding dsb2018/")
        with tempfile.TemporaryDirectory() as tmp:
            if args.limit:
                images, masks = pair_subset(images, masks, args.limit, Path(tmp))
            n = len(pair_folders(images, masks).pairs)
            where = (f"CPU, {torch.get_num_threads()} threads" if device.type == "cpu"
                     else str(device))
            precision = "bf16" if supports_bf16(device) else "float32"
            print(f"{name}: {n} pairs; base {base.name}; {where}; {precision}", flush=True)
            rows = {}
            rows["loragui defaults"], plan = run_loragui(images, masks, base, overrides,
                                                         str(device))
            print(f"  loragui: {rows['loragui defaults']['reason']}", flush=True)
            if args.full_length:
                rows[FULL], _ = run_loragui(images, masks, base, overrides | {"early_stop": False},
                                            str(device))
            for label, extra in variants.items():
                rows[f"loragui, {label}"], _ = run_loragui(images, masks, base, overrides | extra,
                                                           str(device))
                print(f"  loragui, {label}: {rows[f'loragui, {label}']['reason']}", flush=True)
            for lr in (float(v) for v in filter(None, args.peft_lrs.split(","))):
                rows[f"PEFT r=4, lr {lr:g}"] = run_peft(images, masks, base, lr, plan, cfg,
                                                        device)
                print(f"  PEFT lr {lr:g}: best Dice {rows[f'PEFT r=4, lr {lr:g}']['best']}",
                      flush=True)
        results[name] = {"pairs": n, "plan": plan, "rows": rows}
        print_table(name, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_table(name: str, rows: dict) -> None:
    peft = {k: v for k, v in rows.items() if k.startswith("PEFT")}
    best_peft = max(peft, key=lambda k: peft[k]["best"] or -1) if peft else None
    print(f"\n{name}\n")
    print("| trainer | s to Dice 0.70 | s to 0.80 | s to its best −0.01 | best Dice | steps "
          "| wall s |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows.items():
        mark = " (best PEFT)" if label == best_peft else ""
        print(f"| {label}{mark} | {fmt_s(r['to_0.70'])} | {fmt_s(r['to_0.80'])} | "
              f"{fmt_s(r['to_best'])} | {r['best']:.4f} | {r['steps']} | {r['wall']:.1f} |")
    if FULL in rows:
        full = rows[FULL]["best"]
        print(f"\nbest Dice against the full-length run's {full:.4f}: " + ", ".join(
            f"{label} {r['best'] - full:+.4f}" for label, r in rows.items()
            if label.startswith("loragui") and label != FULL))
    if best_peft is None:
        print()
        return
    target = peft[best_peft]["best"]
    ours = first_time(rows["loragui defaults"]["trace"], target)
    theirs = first_time(peft[best_peft]["trace"], target)
    if ours is None:
        print(f"\nloragui did not reach the best PEFT Dice {target:.4f} "
              f"({best_peft} reached it at {fmt_s(theirs)} s)\n")
    else:
        ratio = theirs / ours if ours > 0 else math.inf
        print(f"\nloragui reached the best PEFT Dice {target:.4f} at {ours:.1f} s, "
              f"{best_peft} at {fmt_s(theirs)} s: {ratio:.2f}× sooner\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
