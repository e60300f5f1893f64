"""The resume checkpoint (``checkpoint.pt``): its fields, writing and reading.

A checkpoint holds everything a killed run needs to continue as if it had never
stopped: the trainable weights, the optimizer and crop-sampler state, the random
state, the epoch history and the fault-handling state (learning-rate back-offs,
a batch halved after running out of memory). It is a plain dict saved with
``torch.save`` and read with ``weights_only=True``: only tensors and plain values,
never arbitrary pickled objects. Every field is required; a file without
one is not a checkpoint loragui can resume.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .atomic import atomic_write
from .config import TrainConfig, check_values
from .errors import LoraGuiError
from .runrecord import CHECKPOINT, has_checkpoint

FORMAT = "loragui.checkpoint"
_SETTINGS = {f.name for f in fields(TrainConfig)}
VERSION = 1
OPTIONAL = ("cuda_rng",)  # a checkpoint of a run without a CUDA GPU has no CUDA state


@dataclass
class Checkpoint:
    config: dict[str, Any]  # TrainConfig.to_dict() of the run
    trainable: dict[str, torch.Tensor]  # every trainable parameter, on the CPU
    optimizer: dict[str, Any]
    sampler: dict[str, Any]
    step: int  # steps done
    best_dice: float | None
    best_epoch: int
    base_dice: float | None
    history: list[dict[str, Any]]  # one row per validated epoch (metrics.csv's rows)
    best_written: bool  # the best adapter (or model) is on disk
    torch_rng: torch.Tensor
    base_sha256: str | None  # None: a --full run from scratch
    total_steps: int
    steps_per_epoch: int
    epochs: int
    saved: str  # ISO time
    epoch_loss: list[float]  # [sum, count] of the epoch in progress's training loss
    lr_scale: float  # halved at each back-off from a non-finite loss
    backoffs: int
    batch_size: int  # halved after running out of memory
    faults: list[str]
    fingerprint: str  # of the decoded images and masks
    # Several processes: rank 0's state; each rank's crops follow from (seed, rank, step).
    world_size: int
    cuda_rng: torch.Tensor | None = None  # CUDA runs only
    # The early-stopping rule's state (EarlyStop.state_dict()); None: the rule is off, or
    # a checkpoint written before it existed (its state then follows from the history).
    early_stop: dict[str, Any] | None = None

    def save(self, run_dir: str | os.PathLike) -> None:
        payload: dict[str, Any] = {"format": FORMAT, "version": VERSION,
                                   "loragui_version": __version__}
        payload.update({f.name: getattr(self, f.name) for f in fields(self)})
        # Lists of dicts and strings travel as JSON: weights_only loading accepts them as text.
        payload["history"] = json.dumps(self.history)
        payload["faults"] = json.dumps(self.faults)
        payload["early_stop"] = json.dumps(self.early_stop)
        if self.cuda_rng is None:
            del payload["cuda_rng"]
        atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, run_dir: str | os.PathLike, *, mmap: bool = False) -> Checkpoint:
        """The checkpoint in ``run_dir``; LoraGuiError if it cannot be read or is not one.

        ``mmap``: the tensors stay on disk until used (cheap, for a look at the fields)."""
        path = Path(run_dir) / CHECKPOINT
        try:
            # Only checkpoints loragui wrote itself, and never with full unpickling.
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:
            raise LoraGuiError(f"the checkpoint {path} cannot be read ({exc}); delete it to start "
                               "over") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise LoraGuiError(f"{path} is not a loragui checkpoint")
        required = [f.name for f in fields(cls) if f.name not in OPTIONAL]
        missing = [name for name in required if name not in payload]
        if missing:
            raise LoraGuiError(f"the checkpoint {path} lacks {', '.join(missing)}; delete it to "
                               "start over")
        values = {f.name: payload.get(f.name) for f in fields(cls)}
        try:
            values["history"] = json.loads(payload["history"])
            values["faults"] = json.loads(payload["faults"])
            values["early_stop"] = json.loads(payload["early_stop"])
        except (TypeError, ValueError, RecursionError):
            values["history"] = values["faults"] = None  # refused below, by field
        for name, value in values.items():
            problem = _field_problem(name, value)
            if problem:
                raise LoraGuiError(f"the checkpoint {path} is damaged: its field {name!r} "
                                   f"{problem}; delete it to start over")
        return cls(**values)


# Each field's type; a hand-damaged file must be refused here, not fail later mid-resume.
_TYPES: dict[str, tuple[type, ...]] = {
    "config": (dict,), "trainable": (dict,), "optimizer": (dict,), "sampler": (dict,),
    "step": (int,), "best_dice": (int, float, type(None)), "best_epoch": (int,),
    "base_dice": (int, float, type(None)), "history": (list,), "best_written": (bool,),
    "torch_rng": (torch.Tensor,), "base_sha256": (str, type(None)), "total_steps": (int,),
    "steps_per_epoch": (int,), "epochs": (int,), "saved": (str,), "epoch_loss": (list,),
    "lr_scale": (int, float), "backoffs": (int,), "batch_size": (int,), "faults": (list,),
    "fingerprint": (str,), "world_size": (int,), "cuda_rng": (torch.Tensor, type(None)),
    "early_stop": (dict, type(None)),
}
_POSITIVE = ("total_steps", "steps_per_epoch", "epochs", "batch_size", "world_size")


def _field_problem(name: str, value: Any) -> str | None:
    """What is wrong with one field's value, or None."""
    if not isinstance(value, _TYPES[name]) or (isinstance(value, bool) and bool not in _TYPES[name]):
        return f"has the wrong type ({type(value).__name__})"
    if name in _POSITIVE and value < 1 or isinstance(value, int) and value < 0:
        return f"is out of range ({value})"
    if name == "epoch_loss" and (len(value) != 2 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        return "is not a pair of numbers"
    if name == "trainable" and not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        return "holds something other than named tensors"
    if name == "config":
        try:
            check_values({k: v for k, v in value.items() if k in _SETTINGS})
        except ValueError as exc:  # SettingError included
            return f"holds a setting that cannot be used ({exc})"
    return None


def find_resumable(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What an interrupted run in ``run_dir`` can resume from, or None.

    None when there is no checkpoint, it cannot be read, or the run already
    ended (its last step, or the early-stopping rule). Otherwise a dict with ``step`` (steps done),
    ``total_steps``, ``epoch`` (epochs completed), ``epochs``,
    ``steps_per_epoch``, ``best_epoch``, ``best_dice``, ``saved`` (ISO time),
    ``mode`` ("lora" or "full") and ``config`` (the run's settings with
    ``resume`` set: ``TrainConfig.from_dict(info["config"])`` continues it).
    Cheap: the checkpoint is memory-mapped, not read whole.
    """
    if not has_checkpoint(run_dir):
        return None
    try:
        ckpt = Checkpoint.load(run_dir, mmap=True)
    except Exception:  # unreadable, not a checkpoint, or damaged: nothing to resume
        return None
    if ckpt.step >= ckpt.total_steps or (ckpt.early_stop or {}).get("ended"):
        return None  # the run ended: at its last step, or by the early-stopping rule
    config = dict(ckpt.config)
    config["resume"] = True
    config["out"] = str(Path(run_dir))
    # A warm start resumes from its checkpoint, which holds what grew from the adapter.
    config["init_adapter"] = None
    return {
        "run_dir": str(Path(run_dir)), "step": ckpt.step, "total_steps": ckpt.total_steps,
        "epoch": ckpt.step // ckpt.steps_per_epoch, "epochs": ckpt.epochs,
        "steps_per_epoch": ckpt.steps_per_epoch, "best_epoch": ckpt.best_epoch,
        "best_dice": ckpt.best_dice, "saved": ckpt.saved,
        "mode": "full" if config.get("full") else "lora", "config": config,
    }
