"""How the memory estimate that refuses oversized trainings (loragui.engine.memory)
compares with what loragui train really takes on a CUDA device.

Each row runs the product's trainer (run_training: a few steps, no validation) on a
synthetic data set and reads the device's peak allocation; the estimate must stay
below it (it refuses only what clearly cannot fit). Prints a table:

    python benchmarks/memory_estimate.py            # needs a CUDA GPU
    python benchmarks/memory_estimate.py --quick    # two small rows
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loragui.engine.config import TrainConfig
from loragui.engine.devices import supports_bf16
from loragui.engine.events import RunFailed
from loragui.engine.memory import Architecture, estimate, gigabytes
from loragui.engine.train import run_training

ROWS = [  # (width, depth, rank or None for --full, crop, batch)
    (32, 3, 4, 256, 8), (32, 3, 64, 256, 8), (32, 3, None, 256, 8), (64, 4, 16, 256, 16),
    (32, 3, 512, 128, 8), (16, 5, None, 512, 4),
]
QUICK = [(16, 2, 4, 128, 4), (16, 2, None, 128, 4)]


def _data(root: Path, size: int) -> tuple[Path, Path]:
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(images / f"{i}.png")
        Image.fromarray((rng.random((size, size)) > 0.7).astype(np.uint8) * 255).save(
            masks / f"{i}.png")
    return images, masks


def measure(width: int, depth: int, rank: int | None, crop: int, batch: int, root: Path) -> int:
    images, masks = _data(Path(tempfile.mkdtemp(dir=root)), crop)
    config = TrainConfig(images=str(images), masks=str(masks), out=str(root / "run"), full=True,
                         width=width, depth=depth, crop_size=crop, batch_size=batch, steps=3,
                         steps_per_epoch=3, val_fraction=0.0, previews=0, device="cuda")
    if rank is not None:  # LoRA on a fresh base of this shape
        from loragui.engine.basemodel import save_model
        from loragui.engine.preprocessing import Preprocessing
        from loragui.engine.unet import UNet, UNetConfig

        base = save_model(UNet(UNetConfig(width=width, depth=depth)), root / "base.safetensors",
                          preprocessing=Preprocessing().to_dict())
        config.full, config.base, config.rank, config.alpha = False, str(base), rank, 2.0 * rank
    torch.cuda.reset_peak_memory_stats()
    for ev in run_training(config, threading.Event()):
        if isinstance(ev, RunFailed):
            raise SystemExit(f"training failed: {ev.message}")
    return torch.cuda.max_memory_allocated()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    bf16 = supports_bf16(torch.device("cuda"))
    print(f"{'width':>5} {'depth':>5} {'rank':>5} {'crop':>5} {'batch':>5} {'estimate':>10} "
          f"{'measured':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for width, depth, rank, crop, batch in (QUICK if args.quick else ROWS):
            need = estimate(Architecture(width=width, depth=depth), crop=crop, batch=batch,
                            rank=rank, bytes_per_value=2 if bf16 else 4).total
            peak = measure(width, depth, rank, crop, batch, Path(tmp))
            print(f"{width:>5} {depth:>5} {rank or 'full':>5} {crop:>5} {batch:>5} "
                  f"{gigabytes(need):>10} {gigabytes(peak):>10} {need / peak:>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
