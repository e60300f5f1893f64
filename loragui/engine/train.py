"""The training loop, shared by the command line and the window.

:func:`run_training` is a generator of typed events (see :mod:`.events`). The
caller decides what to do with them: print a progress bar, draw curves, or
write JSON lines. Stopping is cooperative: set the ``stop`` event and the loop
finishes the current step, saves a checkpoint, keeps the best adapter so far
and ends with ``RunFinished(stopped=True)``.

One run folder holds everything:

    OUT/adapter/          best adapter so far (PEFT layout)        [LoRA runs]
    OUT/model.safetensors best model so far                         [--full runs]
    OUT/checkpoint.pt     last epoch's state, to resume a killed run
    OUT/metrics.csv       one row per epoch
    OUT/run.json          settings, final and best metrics, timings
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from .atomic import atomic_write, atomic_write_text
from .config import TrainConfig
from .data import CropSampler, DecodedDataset, Preprocessing, pair_folders, split_indices
from .devices import default_forward_mode, resolve_device, supports_bf16
from .errors import DataError, LoraGuiError, TrainingError
from .events import (
    EpochEvent,
    Event,
    LogEvent,
    Preview,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from .files import (
    adapter_config,
    load_model,
    now_iso,
    resolve_base,
    save_adapter,
    save_model,
)
from .lora import LoRASettings, inject_lora, set_extra_trainable, set_forward_mode
from .metrics import SegmentationScores, dice_bce_loss
from .predict import predict_probability
from .unet import UNet, UNetConfig, count_parameters

CHECKPOINT = "checkpoint.pt"
MAX_BAD_STEPS = 20  # consecutive non-finite losses before the run gives up


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.02 (a small floor keeps late steps useful)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


MAX_VALIDATIONS = 40  # per run by default: validation must not cost more than training


def default_steps_per_epoch(n_train: int, batch_size: int, crop_size: int, mean_area: float,
                            total_steps: int | None = None) -> int:
    """About one crop per image-area-worth of pixels per epoch, at least 10 steps, and few
    enough epochs (validations, checkpoints) that they stay a small part of the run."""
    crops = n_train * max(1.0, mean_area / float(crop_size * crop_size))
    steps = max(10, math.ceil(crops / batch_size))
    if total_steps:
        steps = max(steps, math.ceil(total_steps / MAX_VALIDATIONS))
    return steps


@dataclass
class _State:
    step: int = 0
    best_dice: float | None = None
    best_epoch: int = 0
    base_dice: float | None = None
    history: list[dict[str, Any]] | None = None


def run_training(config: TrainConfig, stop: threading.Event | None = None) -> Iterator[Event]:
    """Train as ``config`` says, yielding events; ends with RunFinished or RunFailed."""
    trainer = Trainer(config, stop or threading.Event())
    try:
        yield from trainer.run()
    except LoraGuiError as exc:
        yield RunFailed(str(exc), run_dir=config.out, output=trainer.best_output())
    except Exception as exc:  # a bug or an environment fault: report it, never crash the caller
        yield RunFailed(f"training failed: {type(exc).__name__}: {exc}",
                        details=traceback.format_exc(), run_dir=config.out,
                        output=trainer.best_output())


class Trainer:
    def __init__(self, config: TrainConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.out = Path(config.out) if config.out else None
        self.state = _State(history=[])
        self._best_written = False

    # ------------------------------------------------------------------ setup
    def best_output(self) -> str | None:
        if self.out is None or not self._best_written:
            return None
        return str(self.out / ("model.safetensors" if self.config.full else "adapter"))

    def _setup(self) -> Iterator[Event]:
        c = self.config
        if not c.out:
            raise LoraGuiError("no output folder given: pass --out DIR")
        if c.batch_size < 1 or c.crop_size < 8 or c.epochs < 1 or c.rank < 1:
            raise LoraGuiError("batch size and epochs must be ≥ 1, rank ≥ 1, crop size ≥ 8")
        if not 0 <= c.val_fraction < 1:
            raise LoraGuiError("the validation fraction must be in [0, 1)")
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(c.device)
        torch.manual_seed(c.seed)
        random.seed(c.seed)
        np.random.seed(c.seed % 2**32)
        # Model
        if c.full and not c.base:
            self.model = UNet(UNetConfig(width=c.width, depth=c.depth))
            self.base_info = None
            self.prep = Preprocessing()
        else:
            base_path = resolve_base(c.base)
            self.model, self.base_info = load_model(base_path)
            self.prep = Preprocessing.from_dict(self.base_info.preprocessing)
        # Data
        report = pair_folders(c.images, c.masks)
        if not report.ok:
            raise DataError("no image/mask pairs to train on.\n" + report.summary())
        for line in report.summary().splitlines()[1:]:
            if line.strip():
                yield LogEvent(line.strip(), "warning")
        data = DecodedDataset.build(report.pairs, self.prep, stop=self.stop)
        n = len(data.names)
        train_idx, val_idx = split_indices(n, c.val_fraction, c.seed)
        if n == 1:
            yield LogEvent("only one pair: it is used for both training and validation", "warning")
        self.train_data = data.subset(train_idx)
        self.val_data = data.subset(val_idx) if val_idx else None
        self.dataset_info = {"pairs": n, "train": len(train_idx), "val": len(val_idx),
                             "fingerprint": data.fingerprint(), "images": str(c.images),
                             "masks": str(c.masks)}
        self.sampler = CropSampler(self.train_data, c.crop_size, self.device, seed=c.seed,
                                   intensity=c.intensity_augment)
        mean_area = float(np.mean([im.shape[0] * im.shape[1] for im in self.train_data.images]))
        self.steps_per_epoch = c.steps_per_epoch or default_steps_per_epoch(
            len(train_idx), c.batch_size, c.crop_size, mean_area, c.steps)
        self.total_steps = c.steps or c.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        # Trainable parameters
        self.model.to(self.device)
        if c.full:
            for p in self.model.parameters():
                p.requires_grad_(True)
            self.lora = None
            self.extra_trainable: list[str] = []
        else:
            exclude = list(c.train_modules)
            self.lora = LoRASettings(rank=c.rank, alpha=c.alpha, rslora=c.rslora,
                                     dropout=c.dropout, targets=list(c.targets), exclude=exclude)
            try:
                inject_lora(self.model, self.lora)
            except ValueError as exc:
                raise LoraGuiError(f"{exc}; check the layer patterns (--targets)") from None
            self.model.to(self.device)
            self.extra_trainable = set_extra_trainable(
                self.model, biases=c.train_bias, modules=list(c.train_modules))
            set_forward_mode(self.model, default_forward_mode(self.device))
        if self.device.type != "mps":
            self.model.to(memory_format=torch.channels_last)
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}], lr=c.lr)
        self.warmup = int(c.warmup_fraction * self.total_steps)
        self.autocast = supports_bf16(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if c.resume:
            yield from self._load_checkpoint()
        yield RunStarted(
            run_dir=str(self.out), device=str(self.device), n_train=len(train_idx),
            n_val=len(val_idx), epochs=self.epochs, steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, start_step=self.state.step,
            trainable_params=count_parameters(self.model, trainable_only=True),
            total_params=sum(p.numel() for n_, p in self.model.named_parameters()
                             if ".lora_" not in n_),
            mode="full" if c.full else "lora", config=c.to_dict())

    # ------------------------------------------------------------------ loop
    def run(self) -> Iterator[Event]:
        t_start = time.perf_counter()
        yield from self._setup()
        c = self.config
        if self.state.step == 0 and not (c.full and not c.base):
            yield self._validate(0, None)  # the base model alone
        elif self.state.step == 0:
            self.state.base_dice = None
        steps_done_here = 0
        t_window, n_window = time.perf_counter(), 0
        ips = 0.0
        bad_steps = 0
        epoch_loss_sum, epoch_loss_n = 0.0, 0
        stopped = False
        self.model.train()
        while self.state.step < self.total_steps:
            if self.stop.is_set():
                stopped = True
                break
            step = self.state.step
            epoch = step // self.steps_per_epoch + 1
            for group in self.optimizer.param_groups:
                group["lr"] = c.lr * lr_factor(step, self.total_steps, self.warmup)
            x, y = self.sampler.sample(c.batch_size)
            if self.device.type != "mps":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.model(x)
            loss = dice_bce_loss(logits, y)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                bad_steps += 1
                self.optimizer.zero_grad(set_to_none=True)
                yield LogEvent(f"step {step + 1}: the loss is {loss_value}; step skipped", "warning")
                if bad_steps >= MAX_BAD_STEPS:
                    raise TrainingError(
                        f"the loss was not finite for {bad_steps} steps in a row; try a lower "
                        f"learning rate (now {c.lr:g}). The best adapter so far is kept.")
                self.state.step += 1
                continue
            bad_steps = 0
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.state.step += 1
            steps_done_here += 1
            epoch_loss_sum += loss_value
            epoch_loss_n += 1
            n_window += c.batch_size
            now = time.perf_counter()
            if now - t_window >= 0.5 or steps_done_here <= 2:
                ips = n_window / max(now - t_window, 1e-9)
                t_window, n_window = now, 0
            remaining = (self.total_steps - self.state.step) * c.batch_size / max(ips, 1e-9)
            yield StepEvent(self.state.step, self.total_steps, epoch, loss_value,
                            self.optimizer.param_groups[0]["lr"], ips, remaining)
            if self.state.step % self.steps_per_epoch == 0 or self.state.step == self.total_steps:
                train_loss = epoch_loss_sum / max(1, epoch_loss_n)
                epoch_loss_sum, epoch_loss_n = 0.0, 0
                yield self._validate(epoch, train_loss)
                self._save_checkpoint()
                self.model.train()
        if stopped:
            self._save_checkpoint()
            yield LogEvent(f"stopped at step {self.state.step} of {self.total_steps}; "
                           "resume with --resume", "info")
        if not self._best_written:
            self._save_best()  # a run stopped before its first validation still leaves an output
        self._write_run_json(time.perf_counter() - t_start, stopped)
        yield RunFinished(
            run_dir=str(self.out), output=self.best_output() or "", best_epoch=self.state.best_epoch,
            best_dice=self.state.best_dice, base_dice=self.state.base_dice, steps=self.state.step,
            seconds=time.perf_counter() - t_start, stopped=stopped)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def _validate(self, epoch: int, train_loss: float | None) -> EpochEvent:
        t0 = time.perf_counter()
        c = self.config
        data = self.val_data
        scores = SegmentationScores()
        previews = []
        val_loss_sum = 0.0
        self.model.eval()
        if self.lora is not None:
            set_forward_mode(self.model, "merged")  # one conv per layer: the base model's cost
        if data is not None:
            for i, logits in self._val_logits(data):
                image, mask = data.images[i], data.masks[i]
                target = torch.from_numpy(mask.astype(np.float32))[None, None]
                val_loss_sum += float(dice_bce_loss(logits[None, None], target))
                prob = torch.sigmoid(logits).numpy()
                scores.add(prob > 0.5, mask > 0)
                if i < c.previews:
                    previews.append(Preview(data.names[i], image, mask > 0, prob.astype(np.float32)))
        if self.lora is not None:
            set_forward_mode(self.model, default_forward_mode(self.device))
        summary = scores.summary()
        dice = summary["dice"]
        is_best = False
        if epoch == 0:
            self.state.base_dice = dice
        elif data is None or (dice is not None and (self.state.best_dice is None
                                                     or dice > self.state.best_dice)):
            is_best = True
            self.state.best_dice = dice
            self.state.best_epoch = epoch
            self._save_best(metrics=summary)
        row = {"epoch": epoch, "step": self.state.step, "train_loss": train_loss,
               "val_loss": val_loss_sum / data_len(data) if data is not None else None,
               **{k: summary[k] for k in ("dice", "iou", "dice_pooled", "iou_pooled")},
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        self.state.history.append(row)
        if epoch > 0:
            self._write_metrics()
        return EpochEvent(epoch=epoch, epochs=self.epochs, step=self.state.step,
                          train_loss=train_loss, val_loss=row["val_loss"], dice=dice,
                          iou=summary["iou"], dice_pooled=summary["dice_pooled"],
                          iou_pooled=summary["iou_pooled"], best_epoch=self.state.best_epoch,
                          best_dice=self.state.best_dice, is_best=is_best, previews=previews,
                          seconds=row["seconds"])

    def _val_logits(self, data: DecodedDataset, max_batch_pixels: int = 2**22):
        """(index, logits (H, W) on the CPU) per validation image; same-sized images batched."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(data.images):
            by_shape.setdefault(image.shape, []).append(i)
        results = {}
        for shape, indices in by_shape.items():
            per_batch = max(1, max_batch_pixels // (shape[0] * shape[1]))
            if shape[0] * shape[1] > 2**21:  # big images: tiled, one at a time
                for i in indices:
                    results[i] = predict_probability(self.model, data.images[i], self.device,
                                                     logits=True)
                continue
            for start in range(0, len(indices), per_batch):
                chunk = indices[start:start + per_batch]
                x = torch.from_numpy(np.stack([data.images[i] for i in chunk])).to(self.device)
                x = x.permute(0, 3, 1, 2).float().div_(255)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                    out = self.model.forward_any_size(x).float()[:, 0].cpu()
                for j, i in enumerate(chunk):
                    results[i] = out[j]
        for i in range(len(data.images)):
            yield i, results[i]

    # ------------------------------------------------------------------ files
    def _provenance(self, metrics: dict[str, Any] | None) -> dict[str, Any]:
        c = self.config
        return {
            "base_sha256": self.base_info.sha256 if self.base_info else None,
            "base_name": self.base_info.name if self.base_info else None,
            "architecture": self.model.config.to_dict(),
            "preprocessing": self.prep.to_dict(),
            "training": {k: v for k, v in c.to_dict().items()
                         if k not in ("images", "masks", "out", "resume")},
            "dataset": self.dataset_info,
            "metrics": metrics or {},
            "base_metrics": {"dice": self.state.base_dice},
            "epoch": self.state.best_epoch, "step": self.state.step,
            "created": now_iso(),
        }

    def _save_best(self, metrics: dict[str, Any] | None = None) -> None:
        prov = self._provenance(metrics)
        if self.config.full:
            save_model(self.model, self.out / "model.safetensors", preprocessing=self.prep.to_dict(),
                       extra={k: prov[k] for k in ("training", "dataset", "metrics", "epoch", "step")})
        else:
            saved = sorted({n.rsplit(".", 1)[0] for n in self.extra_trainable
                            if ".base_layer." not in n})
            cfg = adapter_config(self.model, self.lora, trained=self.extra_trainable,
                                 modules_to_save=saved, loragui=prov)
            save_adapter(self.model, cfg, self.out / "adapter")
        self._best_written = True

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: p.detach().cpu() for k, p in self.model.named_parameters() if p.requires_grad}

    def _save_checkpoint(self) -> None:
        ckpt = {
            "format": "loragui.checkpoint", "version": 1, "loragui_version": __version__,
            "config": self.config.to_dict(), "trainable": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(), "sampler": self.sampler.state_dict(),
            "step": self.state.step, "best_dice": self.state.best_dice,
            "best_epoch": self.state.best_epoch, "base_dice": self.state.base_dice,
            "history": json.dumps(self.state.history), "best_written": self._best_written,
            "torch_rng": torch.get_rng_state(),
            "base_sha256": self.base_info.sha256 if self.base_info else None,
        }
        atomic_write(self.out / CHECKPOINT, lambda tmp: torch.save(ckpt, tmp))

    def _load_checkpoint(self) -> Iterator[Event]:
        path = self.out / CHECKPOINT
        if not path.is_file():
            yield LogEvent(f"--resume: no checkpoint in {self.out}; starting from the beginning",
                           "warning")
            return
        try:
            # Only checkpoints loragui wrote itself, and never with full unpickling.
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise LoraGuiError(f"the checkpoint {path} cannot be read ({exc}); delete it to start "
                               "over") from None
        if ckpt.get("format") != "loragui.checkpoint":
            raise LoraGuiError(f"{path} is not a loragui checkpoint")
        want = ckpt.get("base_sha256")
        have = self.base_info.sha256 if self.base_info else None
        if want != have:
            raise LoraGuiError(f"the checkpoint in {self.out} was made with another base model; "
                               "use the same --base as the first run, or another --out")
        state = ckpt["trainable"]
        own = dict(self.model.named_parameters())
        if set(state) != {k for k, p in own.items() if p.requires_grad}:
            raise LoraGuiError("the checkpoint was made with other settings (rank, layers, --full); "
                               "resume with the same settings, or use another --out")
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v.to(own[k].device))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.sampler.load_state_dict(ckpt["sampler"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.state.step = int(ckpt["step"])
        self.state.best_dice = ckpt["best_dice"]
        self.state.best_epoch = int(ckpt["best_epoch"])
        self.state.base_dice = ckpt["base_dice"]
        self.state.history = json.loads(ckpt["history"])
        self._best_written = bool(ckpt["best_written"])
        yield LogEvent(f"resumed from step {self.state.step} (epoch {self.state.best_epoch} best, "
                       f"Dice {self.state.best_dice})")

    def _write_metrics(self) -> None:
        rows = [r for r in self.state.history if r["epoch"] > 0]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())

    def _write_run_json(self, seconds: float, stopped: bool) -> None:
        best = next((r for r in self.state.history if r["epoch"] == self.state.best_epoch
                     and r["epoch"] > 0), None)
        final = self.state.history[-1] if self.state.history else None
        info = {
            "loragui_version": __version__, "created": now_iso(), "config": self.config.to_dict(),
            "device": str(self.device), "mode": "full" if self.config.full else "lora",
            "stopped": stopped, "steps": self.state.step, "total_steps": self.total_steps,
            "epochs": self.epochs, "steps_per_epoch": self.steps_per_epoch,
            "seconds": seconds, "base_dice": self.state.base_dice,
            "best_epoch": self.state.best_epoch, "best": best, "final": final,
            "output": self.best_output(), "dataset": self.dataset_info,
            "trainable_params": count_parameters(self.model, trainable_only=True),
        }
        atomic_write_text(self.out / "run.json", json.dumps(info, indent=2))


def data_len(data: DecodedDataset | None) -> int:
    return len(data.names) if data is not None else 0
