"""Transfer benchmark: a base trained on fluorescence, adapted to histology.

On one fixed, seeded split of the histology set, with the same number of steps
and crops for each trainer:

* the base model alone;
* loragui's LoRA with its default settings (``loragui train``);
* PEFT LoRA r=4 on every Conv2d with a hand-written loop;
* full fine-tuning with the same hand-written loop;
* (``--only ...,scratch``) the same architecture trained from random weights with
  that loop: what the target data alone gives.

Prints a table of trainable parameters, adapter size, wall time, validation Dice
(mean per image and pooled) and the seconds each trainer took to first reach
``--target`` on the validation images (loragui validates after each epoch and ends
when it stops improving, ``--steps`` being its maximum; the PEFT loop is validated
every ``--validate-every`` steps, its validations counted in its time). Usage:

    python benchmarks/transfer.py --base resources/base/loragui-base-small.safetensors \
        --steps 1500 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_root, evaluate_model, peft_model, train_plain
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.dataset import DecodedDataset, split_indices
from loragui.engine.devices import resolve_device, supports_bf16
from loragui.engine.events import EpochEvent, RunFailed, RunFinished
from loragui.engine.pairing import pair_folders
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.runrecord import read_run_record
from loragui.engine.train import run_training
from loragui.engine.unet import UNet


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() \
        else path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--domain", default="histology")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--val-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--peft-lr", type=float, default=1e-3)
    ap.add_argument("--full-lr", type=float, default=3e-4)
    ap.add_argument("--scratch-lr", type=float, default=1e-3)
    ap.add_argument("--only", default="base,loragui,peft,full")
    ap.add_argument("--loragui-args", default="{}", help="JSON of TrainConfig overrides")
    ap.add_argument("--target", type=float, default=0.87,
                    help="report the seconds to this validation Dice (mean per image)")
    ap.add_argument("--validate-every", type=int, default=100,
                    help="the PEFT loop's validation interval in steps")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    device = resolve_device(args.device)
    root = data_root() / args.domain
    base_model, info = load_model(args.base)
    prep = Preprocessing.from_dict(info.preprocessing)
    report = pair_folders(root / "images", root / "masks")
    t_decode = time.perf_counter()
    data = DecodedDataset.build(report.pairs, prep)
    decode_s = time.perf_counter() - t_decode  # counted in the PEFT loop's time to target
    train_idx, val_idx = split_indices(len(data.names), args.val_fraction, args.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    print(f"{args.domain}: {len(train_idx)} train / {len(val_idx)} val pairs; base {info.name} "
          f"({sum(p.numel() for p in base_model.parameters()):,} parameters); device {device}; "
          f"{args.steps} steps × {args.batch_size} crops of {args.crop_size}²", flush=True)
    bf16 = supports_bf16(device)
    cl = device.type != "mps"
    rows = []
    only = set(args.only.split(","))
    n_base = sum(p.numel() for p in base_model.parameters())

    if "base" in only:
        m = copy.deepcopy(base_model).to(device)
        rows.append(("base model alone", 0, 0, 0.0, evaluate_model(m, val.images, val.masks, device)))

    if "loragui" in only:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = json.loads(args.loragui_args)
            cfg = TrainConfig(
                images=str(root / "images"), masks=str(root / "masks"), out=tmp, base=args.base,
                steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size,
                val_fraction=args.val_fraction, seed=args.seed, device=str(device), previews=0,
                **overrides)
            t0 = time.perf_counter()
            best, trace, reached = None, [], None
            for ev in run_training(cfg):
                if isinstance(ev, RunFailed):
                    print(ev.message, ev.details, file=sys.stderr)
                    return 1
                if isinstance(ev, EpochEvent) and ev.epoch > 0:
                    best = ev.best_dice
                    now = time.perf_counter() - t0
                    trace.append(f"{ev.dice:.2f}@{now:.0f}s")
                    if reached is None and ev.dice is not None and ev.dice >= args.target:
                        reached = now
                if isinstance(ev, RunFinished):
                    secs = time.perf_counter() - t0
                    run = read_run_record(tmp)
                    final = run["final"]
                    size = folder_size(Path(ev.output))
                    print(f"loragui validation Dice by epoch (Dice@seconds since the start): "
                          f"{' '.join(trace)}; back-offs "
                          f"{run['backoffs']}; ended: {ev.reason}", flush=True)
                    label = "defaults" if not overrides else json.dumps(overrides)
                    rows.append((f"loragui LoRA r={cfg.rank} ({label})", run["trainable_params"],
                                 size, secs, {"dice": final["dice"], "dice_pooled": final["dice_pooled"],
                                              "best_dice": best, "to_target": reached}))

    if "peft" in only:
        m = peft_model(copy.deepcopy(base_model), rank=4, alpha=8)
        n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
        peft_trace: list[str] = []
        peft_reached: list[float] = []
        t_peft = time.perf_counter()

        def validate(step: int) -> None:
            dice = evaluate_model(m, val.images, val.masks, device)["dice"]
            now = decode_s + time.perf_counter() - t_peft
            peft_trace.append(f"{dice:.2f}@{now:.0f}s")
            if not peft_reached and dice >= args.target:
                peft_reached.append(now)

        secs = train_plain(m, train.images, train.masks, steps=args.steps, batch=args.batch_size,
                           size=args.crop_size, lr=args.peft_lr, device=device, bf16=bf16,
                           channels_last=cl, seed=args.seed, validate_every=args.validate_every,
                           validate=validate)
        print(f"PEFT validation Dice every {args.validate_every} steps (Dice@seconds, decoding "
              f"included): {' '.join(peft_trace)}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            m.save_pretrained(tmp)
            size = folder_size(Path(tmp) / "adapter_model.safetensors")
        scores = evaluate_model(m, val.images, val.masks, device)
        scores["to_target"] = peft_reached[0] if peft_reached else None
        rows.append((f"PEFT LoRA r=4, plain loop (lr {args.peft_lr:g})", n_train, size, secs,
                     scores))

    if "full" in only:
        m = copy.deepcopy(base_model)
        secs = train_plain(m, train.images, train.masks, steps=args.steps, batch=args.batch_size,
                           size=args.crop_size, lr=args.full_lr, device=device, bf16=bf16,
                           channels_last=cl, seed=args.seed)
        rows.append(("full fine-tune, plain loop", n_base, n_base * 4, secs,
                     evaluate_model(m, val.images, val.masks, device)))

    if "scratch" in only:
        torch.manual_seed(args.seed)
        m = UNet(base_model.config)
        secs = train_plain(m, train.images, train.masks, steps=args.steps, batch=args.batch_size,
                           size=args.crop_size, lr=args.scratch_lr, device=device, bf16=bf16,
                           channels_last=cl, seed=args.seed)
        rows.append(("from scratch, plain loop", n_base, n_base * 4, secs,
                     evaluate_model(m, val.images, val.masks, device)))

    print(f"\n| trainer | trainable params | % of base | adapter bytes | wall s | val Dice (mean) "
          f"| val Dice (pooled) | s to Dice {args.target:g} |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, size, secs, s in rows:
        to = s.get("to_target")
        print(f"| {name} | {n:,} | {100 * n / n_base:.2f} % | {size:,} | {secs:.1f} | "
              f"{s['dice']:.4f} | {s['dice_pooled']:.4f} | {'—' if to is None else f'{to:.1f}'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
