"""What the training loop does when something goes wrong mid-run.

* A non-finite loss or gradient: :class:`GoodState` holds an in-memory copy of
  the trainable weights and the optimizer state, taken at the start and at
  every epoch end (the states that were validated and checkpointed). The loop
  puts it back, halves the learning rate and carries on; after
  ``MAX_BACKOFFS`` such back-offs it gives up, keeping the best adapter.
* Out of memory: :func:`is_out_of_memory` recognises CUDA, MPS and CPU
  allocation failures; :func:`free_memory` gives cached blocks back. The loop
  halves the batch and retries the same step, down to a batch of 1.

Nothing here imports Qt; the messages are for people.
"""

from __future__ import annotations

import copy
import gc
import math
import threading
from dataclasses import dataclass
from typing import Any

import torch

MAX_BACKOFFS = 4  # non-finite losses survived by halving the learning rate (lr / 16 at most)

_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory",
             "failed to allocate", "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device or host allocation failure (CUDA, MPS, CPU)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(t in text for t in _OOM_TEXT)
    return False


def free_memory(device: torch.device) -> None:
    """Give cached device memory back after an out-of-memory error."""
    if threading.current_thread() is threading.main_thread():
        # Off it (the window's evaluation worker) a cycle may hold the window's Qt objects.
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "empty_cache"):
            mps.empty_cache()


def device_words(device: torch.device) -> str:
    if device.type == "cuda":
        return f"the GPU ({device})"
    if device.type == "mps":
        return "the Apple GPU (MPS)"
    return "the computer (CPU memory)"


def memory_advice(first: str, *, offer_cpu: bool) -> str:
    """What to do after running out of memory, as one sentence: ``first`` (the change
    that helps most where it happened), closing other programs, and (``offer_cpu``)
    training on the CPU instead."""
    cpu = ", or train on the CPU (--device cpu)" if offer_cpu else ""
    return f"{first}, close other programs using that memory{cpu}."


def gradients_finite(params: list[torch.nn.Parameter]) -> bool:
    """All gradients finite (one device sync). Parameters without a gradient are skipped."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads) if hasattr(torch, "_foreach_norm") else \
        [g.norm() for g in grads]
    return bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum()))


def tensors_finite(tensors: list[torch.Tensor]) -> bool:
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


@dataclass
class GoodState:
    """A copy of the trainable weights and optimizer state known to be good."""

    step: int
    epoch: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]

    @classmethod
    def capture(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                epoch: int) -> GoodState:
        # Kept in host memory: a copy on the GPU would make running out of memory likelier.
        weights = {k: p.detach().to("cpu", copy=True) for k, p in model.named_parameters()
                   if p.requires_grad}
        return cls(step, epoch, weights, _to_cpu(optimizer.state_dict()))

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        own = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in self.weights.items():
                own[k].copy_(v.to(own[k].device))
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))
        optimizer.zero_grad(set_to_none=True)

    def describe(self) -> str:
        if self.step == 0:
            return "the weights from the start of the run"
        return f"the weights from step {self.step} (end of epoch {self.epoch})"


def _to_cpu(value: Any) -> Any:
    """A deep copy with every tensor in host memory."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)


def format_lr(lr: float) -> str:
    return f"{lr:.3g}" if math.isfinite(lr) else str(lr)


def first_line(exc: BaseException) -> str:
    """The first line of what an exception says (at most 160 characters), for messages."""
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__
