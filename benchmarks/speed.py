"""Training speed: loragui's training against PEFT LoRA and a plain full fine-tune.

In one process, on the same base model (the bundled small one unless ``--base``
says otherwise), batch, crop size and images (the trainers timed in turns, the
median turn kept), end to end (the data pipeline included):

* ``loragui``: ``loragui train`` itself: the Trainer that :func:`run_training`
  runs, with its default settings (LoRA on every layer, biases and the head
  trained whole, intensity augmentation, the forward form, memory format and
  autocast it picks for the device), timed from its stream of step events;
* ``peft``: PEFT LoRA on every Conv2d with a hand-written loop and numpy crops,
  as a user would write it (``--peft-style user``: float32, default memory
  format; ``--peft-style tuned``: bf16 autocast on CUDA + channels_last);
* ``full``: a plain full fine-tune with the same hand-written loop;
* ``bound``: only the work every LoRA step must do (the forward pass and the
  input gradients, no adapter, no weight gradient, no optimizer): no LoRA
  trainer of this model can be faster on this device.

Prints images/s, the ratio to PEFT, peak memory and the fraction of the
device's ceiling (FLOPs of a training step counted with torch's FlopCounterMode
against a measured bf16/fp32 matrix-multiply rate). Also times inference with a
merged adapter against the base model alone.

    python benchmarks/speed.py --device cuda --size 256 --batch 32 --peft-style tuned
    python benchmarks/speed.py --device cpu --size 128 --batch 8 --peft-style user
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import data_root, numpy_crops, peft_model, sync
from loragui.engine.basemodel import load_model, resolve_base
from loragui.engine.config import TrainConfig
from loragui.engine.dataset import DecodedDataset
from loragui.engine.devices import resolve_device, supports_bf16
from loragui.engine.events import Event, RunFailed, RunFinished, RunStarted, StepEvent
from loragui.engine.lora import LoRASettings, inject_lora, strip_lora
from loragui.engine.metrics import dice_bce_loss
from loragui.engine.pairing import pair_folders
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.sampler import CropSampler
from loragui.engine.train import run_training


class PeakRSS:
    """Peak resident memory of this process during a block (CPU runs), sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self.base = self.rss()
        self.peak = self.base
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def measure(step, device, steps, warmup, batch):
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_mem = torch.cuda.memory_allocated(device)
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        secs = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base_mem
    else:
        peak = rss.peak - rss.base
    return steps * batch / secs, peak


def make_plain_step(model, images, masks, batch, size, device, bf16, channels_last, lr=1e-3):
    rng = np.random.default_rng(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)

    def step():
        x, y = numpy_crops(images, masks, batch, size, rng)
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = dice_bce_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()  # a user's loop reads the loss every step (for printing)
    return step


class ProductSteps:
    """``loragui train`` as the benchmark's step: each call lets the training loop run
    until it reports its next finished step. The loop is a generator, so between calls
    it waits, and the time a call takes is that step's (no validation or checkpoint
    falls inside the timed steps: the run's one epoch ends after them)."""

    def __init__(self, config: TrainConfig) -> None:
        self.events: Iterator[Event] = run_training(config)
        self.started: RunStarted | None = None
        for ev in self.events:  # setup and the base model's validation, untimed
            if isinstance(ev, RunStarted):
                self.started = ev
                return
            if isinstance(ev, RunFailed):
                raise SystemExit(f"loragui: {ev.message}\n{ev.details}")
        raise SystemExit("loragui: the training ended before it started")

    def __call__(self) -> None:
        for ev in self.events:
            if isinstance(ev, StepEvent):
                return
            if isinstance(ev, RunFailed | RunFinished):
                raise SystemExit(f"loragui: the run ended early: {ev}")
        raise SystemExit("loragui: the run ended early")

    def close(self) -> None:
        self.events.close()


def link_pairs(pairs, folder: Path) -> tuple[Path, Path]:
    """A folder pair holding (links to) ``pairs`` only, for ``loragui train``."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    for pair in pairs:
        (images / pair.image.name).symlink_to(pair.image.resolve())
        (masks / pair.mask.name).symlink_to(pair.mask.resolve())
    return images, masks


def make_bound_step(model, data, batch, size, device):
    """The work every LoRA step of this model must do (LoRA on every layer), and nothing
    more: the forward pass and the input gradients of every layer but the first (the
    frozen model, its first convolution's output made to require a gradient), with
    loragui's crops, memory format and autocast; no adapter, no weight gradient, no
    optimizer. No LoRA trainer running these layers as they are run here is faster."""
    model.to(device).requires_grad_(False)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_hook(lambda module, inputs, out: out.requires_grad_())
    cl = device.type != "mps"
    if cl:
        model.to(memory_format=torch.channels_last)
    sampler = CropSampler(data, size, device, seed=0)
    bf16 = supports_bf16(device)
    model.train()

    def step():
        x, y = sampler.sample(batch)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = dice_bce_loss(out, y)
        loss.backward()
        loss.item()  # as loragui does every step (NaN guard, progress)
    return step


def step_flops(model, device, batch, size, bf16) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(batch, 3, size, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model(x).float().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def matmul_rate(device, bf16) -> float:
    n = 8192 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if bf16 else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10 if device.type == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def inference_speed(model, device, batch, size, bf16, reps) -> float:
    model.eval().to(device)
    if device.type != "mps":
        model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for _ in range(3):
            model(x)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(x)
        sync(device)
    return reps * batch / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--base", default=None,
                    help="base model file for every trainer (default: the bundled small base)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4,
                    help="turns: the trainers are timed one after another, --steps/--rounds "
                         "steps each turn, and the median turn is kept")
    ap.add_argument("--peft-style", choices=["user", "tuned"], default="user")
    ap.add_argument("--images", type=int, default=64, help="images to train on")
    ap.add_argument("--skip", default="", help="comma list of: full,peft,bound,inference,flops")
    args = ap.parse_args()

    device = resolve_device(args.device)
    skip = set(filter(None, args.skip.split(",")))
    root = data_root() / "fluorescence"
    pairs = pair_folders(root / "images", root / "masks").pairs[: args.images]
    base_path = resolve_base(args.base, device_type="cpu")  # no --base: the CPU's, the small one
    base, info = load_model(base_path)
    data = DecodedDataset.build(pairs, Preprocessing.from_dict(info.preprocessing))
    bf16 = supports_bf16(device)
    peft_bf16 = bf16 and args.peft_style == "tuned"
    peft_cl = args.peft_style == "tuned"
    arch = base.config.to_dict()
    print(f"device {device}; base {base_path.name} (UNet width {arch['width']} depth "
          f"{arch['depth']}, {sum(p.numel() for p in base.parameters()):,} parameters); "
          f"{args.size}² crops, batch {args.batch}, rank {args.rank}; PEFT as "
          f"'{args.peft_style}' (bf16={peft_bf16}, channels_last={peft_cl}); loragui bf16={bf16}",
          flush=True)
    per_round = max(1, -(-args.steps // args.rounds))
    total = args.warmup + per_round * args.rounds + 1  # the timed steps end before the run does
    work = tempfile.TemporaryDirectory(prefix="loragui-speed-")
    images, masks = link_pairs(pairs, Path(work.name))
    # loragui's defaults but for what the comparison fixes; one epoch, no validation split:
    # no validation or checkpoint among the timed steps.
    config = TrainConfig(images=str(images), masks=str(masks), out=str(Path(work.name) / "run"),
                         base=str(base_path), rank=args.rank, alpha=2.0 * args.rank,
                         steps=total, steps_per_epoch=total, batch_size=args.batch,
                         crop_size=args.size, val_fraction=0.0, device=str(device), previews=0,
                         compile_from=0)  # the step of a long run, which compiles on a GPU
    steps = {}  # every trainer built first, then timed in turns (see --rounds)
    product = ProductSteps(config)
    steps[f"loragui train (LoRA; {product.started.trainable_params:,} trained)"] = product
    if "peft" not in skip:
        m = peft_model(copy.deepcopy(base), args.rank, 2 * args.rank)
        steps["PEFT LoRA"] = make_plain_step(m, data.images, data.masks, args.batch, args.size,
                                             device, peft_bf16, peft_cl)
    if "bound" not in skip:
        steps["bound: forward + input gradients only"] = make_bound_step(
            copy.deepcopy(base), data, args.batch, args.size, device)
    if "full" not in skip:
        steps["full fine-tune"] = make_plain_step(copy.deepcopy(base), data.images, data.masks,
                                                  args.batch, args.size, device, peft_bf16, peft_cl)
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    # Timed in turns, a share of the steps each, the median kept: a machine whose speed
    # drifts (other work, clocks) then slows every trainer alike.
    per_round = max(1, -(-args.steps // args.rounds))
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            runs[name].append(measure(step, device, per_round, 0, args.batch))
    results = {name: (statistics.median(r[0] for r in rs), max(r[1] for r in rs))
               for name, rs in runs.items()}
    product.close()
    work.cleanup()
    del steps, product
    if device.type == "cuda":
        torch.cuda.empty_cache()
    ceiling = None
    if "flops" not in skip:
        flops = step_flops(copy.deepcopy(base).to(device), device, min(args.batch, 8), args.size, bf16)
        rate = matmul_rate(device, bf16)
        ceiling = rate / flops
        print(f"training step: {flops / 1e9:.1f} GFLOP per image; measured matmul rate "
              f"{rate / 1e12:.2f} TFLOP/s -> ceiling {ceiling:.0f} img/s (the FLOPs of a full "
              f"fine-tuning step: a LoRA step skips the frozen weights' gradients, a third of "
              f"them, so it can pass 100 %)")
    peft = results.get("PEFT LoRA", (None,))[0]
    print("\n| trainer | images/s | × PEFT | peak memory MiB | % of ceiling |")
    print("|---|---|---|---|---|")
    for name, (ips, peak) in results.items():
        ratio = f"{ips / peft:.2f}" if peft else "n/a"
        frac = f"{100 * ips / ceiling:.1f}" if ceiling else "n/a"
        print(f"| {name} | {ips:.1f} | {ratio} | {peak / 2**20:.0f} | {frac} |")
    if "inference" not in skip:
        plain = copy.deepcopy(base)
        adapted = copy.deepcopy(base)
        inject_lora(adapted, LoRASettings(rank=args.rank, alpha=2 * args.rank))
        strip_lora(adapted)  # what `loragui merge` and prediction do
        reps = 30 if device.type == "cuda" else 5
        bsz = args.batch
        a = inference_speed(plain, device, bsz, args.size, bf16, reps)
        b = inference_speed(adapted, device, bsz, args.size, bf16, reps)
        a2 = inference_speed(plain, device, bsz, args.size, bf16, reps)
        base_ips = (a + a2) / 2
        print(f"\ninference: base {base_ips:.1f} img/s, merged adapter {b:.1f} img/s "
              f"({100 * b / base_ips:.1f} % of the base)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
