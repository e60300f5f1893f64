"""One optimiser step of a training run, and what keeps it going through faults.

:class:`TrainStep` is composed by :class:`~.train.Trainer`: the loop sets the learning
rate and calls :meth:`TrainStep.run`; a non-finite loss or gradient comes back as a
problem, for :meth:`TrainStep.back_off` (restore the last good weights, halve the
learning rate); a device out of memory halves the batch and retries (see :mod:`.faults`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator

import torch

from .distributed import Dist, StepOutcome
from .errors import TrainingError
from .events import Event, LogEvent
from .faults import (
    MAX_BACKOFFS,
    GoodState,
    device_words,
    first_line,
    format_lr,
    free_memory,
    gradients_finite,
    is_out_of_memory,
    memory_advice,
)
from .metrics import segmentation_loss
from .run_checkpoint import RunState
from .sampler import CropSampler


class TrainStep:
    """The training step of one run, over the model, optimizer and sampler it is given.

    ``fault`` records a change made to keep the run going and returns its warning;
    ``note`` records one where no event can be yielded (shown after the step);
    ``resume_hint`` says which checkpoint is intact, for messages that stop the run."""

    def __init__(self, *, model: torch.nn.Module, compiled: torch.nn.Module | None,
                 optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                 sampler: CropSampler, device: torch.device, dist: Dist | None,
                 stop: threading.Event, state: RunState, seed: int, lr: float,
                 peak_lr: float, world_size: int, autocast: bool, crop_size: int,
                 fault: Callable[[str], LogEvent], note: Callable[[str], None],
                 resume_hint: Callable[[], str]) -> None:
        self.model = model
        self.compiled = compiled  # None: the plain model (or compiling failed)
        self.optimizer = optimizer
        self.params = params
        self.sampler = sampler
        self.device = device
        self.dist = dist
        self.stop = stop
        self.state = state
        self.seed = seed
        self.lr = lr
        self.peak_lr = peak_lr
        self.world_size = world_size
        self.autocast = autocast
        self.crop_size = crop_size
        self.fault = fault
        self.note = note
        self.resume_hint = resume_hint

    @property
    def batch_size(self) -> int:
        return self.state.batch_size

    def run(self) -> Iterator[Event]:
        """One optimiser step. Returns (loss, problem): problem is None, "stop" (nothing
        was computed or updated), "loss" or "gradients" (non-finite; nothing was updated).
        Out of memory: halves the batch and tries again, down to a batch of 1.

        With several processes the step's outcome is agreed in the gradient all-reduce
        (:meth:`_reduce`, see :mod:`.distributed`): the loss is the mean over ranks, and
        every rank stops, backs off or halves its batch together."""
        while True:
            if self.dist is not None:
                # This rank's crops (and dropout) for this step: a pure function of (seed,
                # rank, step, back-offs), so a resumed run draws what the uninterrupted run drew.
                seed = self.dist.step_seed(self.seed, self.state.step, self.state.backoffs)
                self.sampler.load_state_dict(
                    {"generator": torch.Generator().manual_seed(seed).get_state()})
                torch.manual_seed(seed)
            stopped = self.stop.is_set()
            loss_value, oom = (0.0, None) if stopped else self._forward_backward()
            if oom is not None:
                self.optimizer.zero_grad(set_to_none=True)
                free_memory(self.device)
            outcome = self._reduce(loss_value, stop=stopped, oom=oom is not None)
            if not outcome.ok:
                self.optimizer.zero_grad(set_to_none=True)
            if outcome.stop:
                return None, "stop"
            if outcome.oom_ranks:
                yield self._halve_batch(outcome.oom_ranks, oom)
                continue
            if outcome.loss_bad:
                return outcome.loss, "loss"
            if not gradients_finite(self.params):  # several processes: the averaged gradients
                self.optimizer.zero_grad(set_to_none=True)
                return outcome.loss, "gradients"
            self.optimizer.step()
            return outcome.loss, None

    def _forward_backward(self) -> tuple[float, str | None]:
        """(loss, None) with the gradients in ``.grad`` (none for a non-finite loss), or
        (0, what the device said) when it ran out of memory."""
        try:
            x, y = self.sampler.sample(self.batch_size)
            if self.device.type != "mps":
                x = x.contiguous(memory_format=torch.channels_last)
            loss = self._loss(x, y)
            loss_value = float(loss.detach())
            self.optimizer.zero_grad(set_to_none=True)
            if math.isfinite(loss_value):
                loss.backward()
            return loss_value, None
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return 0.0, first_line(exc)  # returning drops the tensors the traceback held

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch, through the compiled model where there is one.
        A compiler failure (no compiler on this machine, an unsupported operation) shows
        at the first call: the run goes on with the plain model and says so."""
        model = self.compiled if self.compiled is not None else self.model
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = model(x)
        except Exception as exc:
            if model is self.model or is_out_of_memory(exc):
                raise
            self.compiled = None
            self.note(f"compiling the training step failed ({type(exc).__name__}: "
                      f"{first_line(exc)}); training without compiling (--no-compile skips "
                      "the attempt)")
            return self._loss(x, y)
        return segmentation_loss(logits, y)

    def _reduce(self, loss: float, *, stop: bool, oom: bool) -> StepOutcome:
        """The step's outcome: this process's own, or (several processes) every rank's,
        agreed in one all-reduce that also averages the gradients."""
        loss_bad = not (stop or oom or math.isfinite(loss))
        if self.dist is None:
            return StepOutcome(loss=loss, stop=stop, loss_bad=loss_bad,
                               oom_ranks=[0] if oom else [])
        # A stop asked for during the step discards it: every rank stops at the same step.
        outcome = self.dist.reduce_step(self.params, loss, stop=self.stop.is_set(),
                                        loss_bad=loss_bad, oom=oom)
        if outcome.loss_bad:
            outcome.loss = float("nan")
        return outcome

    def _halve_batch(self, oom_ranks: list[int], detail: str | None) -> LogEvent:
        """After running out of memory: half the batch from now on, or give up at 1."""
        if self.dist is None:
            where, per = device_words(self.device), ""
        else:
            where = " and ".join(device_words(torch.device(self.dist.devices[r]))
                                 for r in oom_ranks)
            per = " per process"
        if self.batch_size <= 1:
            raise TrainingError(
                f"{where} ran out of memory even with a batch of 1 crop of {self.crop_size}×"
                f"{self.crop_size} pixels{per}" + (f" ({detail})" if detail else "") + ". "
                + memory_advice("Use a smaller --crop-size",
                                offer_cpu=self.dist is None and self.device.type != "cpu")
                + self.resume_hint())
        old = self.batch_size
        self.state.batch_size = max(1, old // 2)
        if self.dist is None:
            what = (f"retrying with a batch of {self.batch_size} (the batch size is now "
                    f"{self.batch_size} for the rest of the run")
        else:
            what = (f"every process retries with a batch of {self.batch_size} (effective batch "
                    f"{self.batch_size * self.world_size} for the rest of the run")
        return self.fault(f"{where} ran out of memory at step {self.state.step + 1} with a batch "
                           f"of {old}{per}; {what}; the learning rate is unchanged)")

    def back_off(self, step: int, value: float, problem: str, good: GoodState) -> Iterator[Event]:
        """Restore the last good weights and halve the learning rate, or give up."""
        st = self.state
        what = {"loss": f"the loss was {value}",
                "gradients": "the gradients were not finite (inf or NaN)",
                "weights": "the weights became inf or NaN"}[problem]
        st.backoffs += 1
        lr_now = self.peak_lr * st.lr_scale
        if st.backoffs > MAX_BACKOFFS:
            raise TrainingError(
                f"step {step + 1}: {what} again, after the learning rate was halved "
                f"{MAX_BACKOFFS} times (to a peak of {format_lr(lr_now)}). Training is unstable "
                f"with these images and settings: try a much lower --lr (for example "
                f"{format_lr(self.lr / 10)}), and check the images for extreme values."
                + self.resume_hint())
        good.restore(self.model, self.optimizer)
        st.lr_scale /= 2
        yield self.fault(
            f"step {step + 1}: {what}; restored {good.describe()} and halved the learning "
            f"rate to a peak of {format_lr(self.peak_lr * st.lr_scale)} "
            f"(back-off {st.backoffs} of at most {MAX_BACKOFFS})")
