"""Where a training step of ``loragui train`` goes: torch's profiler around the product's
own steps (the Trainer that :func:`run_training` runs, timed as ``speed.py`` times it),
printing the operators by device time and by host time, and the share of the step the
device is busy.

    python benchmarks/step_profile.py --device cuda --size 256 --batch 32
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_root, sync
from benchmarks.speed import ProductSteps, link_pairs
from loragui.engine.config import TrainConfig
from loragui.engine.devices import resolve_device
from loragui.engine.pairing import pair_folders


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--base", default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()
    device = resolve_device(args.device)
    root = data_root() / "fluorescence"
    pairs = pair_folders(root / "images", root / "masks").pairs[: args.images]
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = link_pairs(pairs, Path(tmp))
        config = TrainConfig(images=str(images), masks=str(masks), out=str(Path(tmp) / "run"),
                             base=args.base, device=str(device), batch_size=args.batch,
                             crop_size=args.size, steps=10 * args.steps + 20,
                             steps_per_epoch=10 * args.steps + 20, val_fraction=0.1, previews=0)
        step = ProductSteps(config)
        for _ in range(5):
            step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync(device)
        wall = (time.perf_counter() - t0) / args.steps
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
            sync(device)
        step.close()
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"step: {wall * 1e3:.1f} ms ({args.batch / wall:.0f} img/s) without the profiler")
    if device.type == "cuda":
        busy = sum(e.self_device_time_total for e in events) / args.steps / 1e3
        print(f"device busy {busy:.1f} ms per step ({100 * busy / (wall * 1e3):.0f} % of the step)")
    print(events.table(sort_by=sort, row_limit=args.rows))
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
