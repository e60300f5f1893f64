"""The training loop, shared by the command line and the window.

:func:`run_training` is a generator of typed events (see :mod:`.events`). The
caller decides what to do with them: print a progress bar, draw curves, or
write JSON lines. Stopping is cooperative: set the ``stop`` event and the loop
finishes the current step, saves a checkpoint, keeps the best adapter so far
and ends with ``RunFinished(stopped=True)``.

One run folder holds everything (see :mod:`.runrecord`): the best adapter (or
model) so far, the checkpoint to resume from (:mod:`.checkpoint`), ``metrics.csv``
and ``run.json``.

Faults (see :mod:`.faults`): a non-finite loss or gradient restores the last
good weights and halves the learning rate (up to ``MAX_BACKOFFS`` times); a
device out of memory halves the batch and retries the step (down to 1); a
failed write (disk full, read-only folder) stops the run with a message saying
which checkpoint is intact. The checkpoint is written at every epoch end
*before* the epoch is reported, so whoever has seen an epoch's result can
count on it surviving a crash: a killed run loses at most the epoch in
progress, and ``--resume`` (or :func:`find_resumable` in the window) picks up
from there and ends with the same result as an uninterrupted run.
The images are decoded into memory once at the start, so a folder that is
changed, moved or deleted afterwards does not affect the running training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import clean_folder
from .best_output import provenance, save_best
from .checkpoint import Checkpoint, find_resumable
from .class_metrics import class_columns
from .config import TrainConfig, check_settings
from .devices import resolve_device, supports_bf16
from .distributed import (
    LR_SCALING,
    AgreedFailure,
    Dist,
    PeerLost,
    lr_scale,
)
from .early_stop import EarlyStop, patience_for
from .errors import LoraGuiError, TrainingError
from .events import (
    EpochEvent,
    Event,
    LogEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from .faults import (
    GoodState,
    device_words,
    first_line,
    format_lr,
    is_out_of_memory,
    memory_advice,
    tensors_finite,
)
from .init_adapter import (
    InitAdapter,
    check_combination,
    check_init_adapter,
    load_init_adapter,
)
from .maskkinds import MaskMeaning
from .outputs import RUN, Input, check_output, mark
from .polarity import invert_in_place, score_polarity
from .run_checkpoint import (
    RunState,
    checked_checkpoint,
    damaged_checkpoint,
    restore_training,
    resume_state,
    save_checkpoint,
)
from .runlock import RunLock, probe
from .runrecord import (
    RUN_FILES,
    has_checkpoint,
    output_path,
    run_record,
    write_metrics,
    write_run_record,
)
from .sampler import CropSampler
from .schedule import default_steps_per_epoch, lr_factor
from .setup_steps import (
    compiles,
    load_base,
    make_optimizer,
    make_trainable,
    preflight,
    seed_everything,
)
from .train_step import TrainStep
from .training_data import prepare_data
from .unet import count_parameters
from .validation import Validator

__all__ = ["RUN_FILES", "Trainer", "find_resumable", "lr_factor", "run_training"]


def run_training(config: TrainConfig, stop: threading.Event | None = None) -> Iterator[Event]:
    """Train as ``config`` says, yielding events; ends with RunFinished or RunFailed.

    In a process started by torchrun (``WORLD_SIZE`` > 1) this is one rank of a
    data-parallel run (see :mod:`.distributed`): rank 0 yields the events; the other
    ranks yield nothing but a RunFailed of their own crash (with its traceback)."""
    trainer = Trainer(config, stop or threading.Event())
    events = _run_guarded(trainer, config)
    try:
        if trainer.is_main:
            yield from events
        else:
            for ev in events:
                if isinstance(ev, RunFailed) and ev.details:
                    yield ev
    finally:
        events.close()
        trainer.release()
        if trainer.dist is not None:
            trainer.dist.close()


def _run_guarded(trainer: Trainer, config: TrainConfig) -> Iterator[Event]:
    try:
        yield from trainer.run()
    except AgreedFailure:  # another rank failed; rank 0 says why
        yield RunFailed("stopped because another training process failed", run_dir=config.out)
    except PeerLost as exc:  # a collective failed: another process died
        message = trainer.after_peer_lost(str(exc))
        trainer.record_failure(message)
        yield RunFailed(message, details=exc.detail if trainer.is_main else "",
                        run_dir=config.out, output=trainer.best_output())
    except LoraGuiError as exc:
        trainer.record_failure(str(exc))
        yield RunFailed(str(exc), run_dir=config.out, output=trainer.best_output())
    except Exception as exc:  # a bug or an environment fault: report it, never crash the caller
        if is_out_of_memory(exc):  # outside the training step (loading, moving data to the GPU)
            message = trainer.memory_message(exc)
            trainer.record_failure(message)
            yield RunFailed(message, run_dir=config.out, output=trainer.best_output())
            return
        trainer.record_failure(f"{type(exc).__name__}: {exc}")
        yield RunFailed(f"training failed: {type(exc).__name__}: {exc}",
                        details=traceback.format_exc(), run_dir=config.out,
                        output=trainer.best_output())


class Trainer:
    def __init__(self, config: TrainConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.out = Path(config.out) if config.out else None
        self.state = RunState(batch_size=config.batch_size)
        self._best_written = False
        self._checkpoint_step: int | None = None  # step of the last checkpoint on disk
        self._notes: list[LogEvent] = []  # warnings raised where no event can be yielded
        self.device = torch.device("cpu")
        self.total_steps: int | None = None
        self.val_stems: list[str] = []  # the validation pairs, recorded in run.json
        self.meaning = MaskMeaning()  # what the masks hold (set from the scan and the settings)
        self._started = False  # RunStarted was reported
        self._lock: RunLock | None = None  # rank 0's lock on the run folder while it writes
        self._t_start = time.perf_counter()
        self._elapsed_before = 0.0  # resumed: the seconds the run had trained before
        self.early: EarlyStop | None = None  # the early-stopping rule (None: off)
        self.init: InitAdapter | None = None  # --init-adapter: the adapter a warm start uses
        # Data parallel (torchrun): this process's rank; None in a single process.
        self.dist = Dist.from_env()
        self.world_size = self.dist.world_size if self.dist else 1
        self.is_main = self.dist is None or self.dist.is_main
        # --lr is the single-process peak; several processes scale it (distributed.LR_SCALING).
        self.peak_lr = config.lr * (lr_scale(self.world_size) if self.dist else 1.0)

    @property
    def batch_size(self) -> int:
        """Crops per step in this process (halved when the device runs out of memory)."""
        return self.state.batch_size

    # ------------------------------------------------------------------ setup
    def best_output(self) -> str | None:
        if self.out is None or not self._best_written:
            return None
        path = output_path(self.out, self.config.full)
        return str(path) if path.exists() else None

    def release(self) -> None:
        """Let go of the run folder's lock (the run writes no more)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _folder_gone(self) -> bool:
        return self._lock is not None and not self._lock.still_there()

    def memory_message(self, exc: BaseException) -> str:
        where = device_words(self.device)
        return (f"{where} ran out of memory outside a training step ({first_line(exc)}). "
                + memory_advice("Use fewer or smaller images",
                                offer_cpu=self.device.type != "cpu"))

    # The best adapter so far is not named in failure messages: RunFailed.output carries it
    # (the command line adds "the best result so far is kept in ..."; the window shows it).
    def _resume_hint(self) -> str:
        if self._checkpoint_step:
            return (f" The checkpoint from step {self._checkpoint_step} is intact: fix the problem, "
                    "then resume the run (loragui train --resume, or Resume in the window) to "
                    "continue from there.")
        return ""

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (disk full, read-only folder) stops the run, saying what is intact;
        so does a run folder that was deleted or moved (nothing is written in its place)."""
        try:
            if self._lock is not None:
                self._lock.check()
            yield
            if self._lock is not None:
                self._lock.check()
        except TrainingError:
            raise
        except LoraGuiError as exc:
            raise TrainingError(f"{exc}\nTraining stopped at step {self.state.step} of "
                                f"{self.total_steps}." + self._resume_hint()) from None

    def record_failure(self, message: str) -> None:
        """Best effort: note the failure in run.json (never raises)."""
        if (not self.is_main or not self._started or self.out is None or not self.out.is_dir()
                or self._folder_gone()):
            return  # nothing ran (an earlier run's record stays as it was), or no folder is left
        with contextlib.suppress(Exception):
            self._write_run_json(time.perf_counter() - self._t_start, False, failed=message)

    def _setup(self) -> Iterator[Event]:
        """Everything before the first step, in order; each step sets the attributes it names."""
        self._check_settings()
        self._prepare_run_folder()
        if self.dist is None:  # several processes: the device was agreed before (see run)
            if self.config.devices:  # each device is a process of its own, from the launcher
                raise LoraGuiError(f"devices {self.config.devices!r} train in one process each: "
                                   "start them with loragui train --devices")
            self.device = resolve_device(self.config.device)
        seed_everything(self.config.seed)
        self.model, self.base_info, self.prep = load_base(self.config, self.device)
        self.crop_size = yield from preflight(self.model, self.config, self.device)
        self.init = self._setup_init_adapter()
        dataset = yield from self._setup_data()
        self._setup_schedule(dataset)
        if self.config.early_stop:
            self.early = EarlyStop(patience_for(self.epochs))
        trains = self._setup_head()
        self.lora, self.extra_trainable = make_trainable(self.model, trains, self.device)
        if self.init is not None:  # a warm start: the adapter's tensors as initial values
            load_init_adapter(self.model, self.init)
        self.params, self.optimizer = make_optimizer(self.model, trains, self.device)
        self.warmup = int(self.config.warmup_fraction * self.total_steps)
        self.autocast = supports_bf16(self.device)
        self.validator = Validator(
            self.model, self.device, autocast=self.autocast, lora=self.lora is not None,
            previews=self.config.previews, fault=lambda m: self._notes.append(self._fault(m)),
            resume_hint=self._resume_hint,
            classes=self.meaning.names if self.meaning.k > 1 else None,
            colours=self.meaning.colours if self.meaning.k > 1 else None,
            count_objects=self.meaning.hold == "objects", inverted=self.prep.invert)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.steps = TrainStep(
            model=self.model, compiled=self._setup_compiled(), optimizer=self.optimizer,
            params=self.params, sampler=self.sampler, device=self.device, dist=self.dist,
            stop=self.stop, state=self.state, seed=self.config.seed, lr=self.config.lr,
            peak_lr=self.peak_lr, world_size=self.world_size, autocast=self.autocast,
            crop_size=self.crop_size, fault=self._fault,
            note=lambda m: self._notes.append(self._fault(m)), resume_hint=self._resume_hint)
        yield from self._setup_resume()
        self._started = True
        if self.is_main:  # a list of runs shows it as running (and, if killed, as interrupted)
            with self._writing():
                self._write_run_json(0.0, False, running=True)
        yield from self._announce(dataset)

    def _check_settings(self) -> None:
        if not self.config.out:
            raise LoraGuiError("no output folder given: pass --out DIR")
        check_settings(self.config)  # the declared bounds: as the command line checks them
        check_combination(self.config)  # --init-adapter with --resume or --full

    def _prepare_run_folder(self) -> None:
        if not self.is_main:  # rank 0 alone writes the run folder (and holds its lock)
            return
        c = self.config
        if self.out.is_dir():
            probe(self.out)  # a run in progress there is named as such, before anything else
        check_output(self.out, RUN, [Input("the images folder", c.images, nest_ok=True),
                                     Input("the masks folder", c.masks, nest_ok=True),
                                     Input("the corrections folder", c.corrections, nest_ok=True),
                                     Input("the initial adapter", c.init_adapter),
                                     Input("the base model (--base)", c.base)],
                     overwrite=c.overwrite, resume=c.resume)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LoraGuiError(f"cannot create the output folder {self.out}: "
                               f"{exc.strerror or exc}. Choose another folder.") from None
        self._lock = RunLock(self.out)
        mark(self.out, RUN)
        clean_folder(self.out, RUN_FILES)  # what a killed run left half-written

    def _setup_init_adapter(self) -> InitAdapter | None:
        """--init-adapter: the adapter, checked against the base and the settings before
        any image is decoded; None without one."""
        if not self.config.init_adapter:
            return None
        return check_init_adapter(self.config, self.model, self.base_info)

    def _setup_data(self) -> Iterator[Event]:
        """Pair and decode the folders; sets meaning, train_data, val_data, val_stems,
        dataset_info, pairing_problems and sampler. Returns dataset_info."""
        data = yield from prepare_data(self.config, self.prep, self.stop)
        self.meaning, self.train_data, self.val_data = data.meaning, data.train, data.val
        self.val_stems, self.dataset_info = data.val_stems, data.info
        self.pairing_problems = data.problems
        yield from self._setup_polarity()
        self.sampler = CropSampler(self.train_data, self.crop_size, self.device,
                                   seed=self.config.seed, intensity=self.config.intensity_augment)
        return self.dataset_info

    def _setup_polarity(self) -> Iterator[Event]:
        """Invert the decoded images (before the sampler copies them) where the run trains
        on inverted images (polarity.py): where the base model finds the objects better so,
        or where a warm start's adapter was trained so. A resumed run scores the same base
        model on the same images and chooses alike; so does every process of a
        data-parallel run."""
        c = self.config
        invert = self.prep.invert  # as decoded: a merged base may invert already
        if self.init is not None:
            trained = self.init.adapter.loragui.get("preprocessing") or {}
            invert = trained.get("invert", invert) is True
        elif c.auto_invert and self.base_info is not None and self.model.config.out_channels == 1:
            scorer = Validator(self.model, self.device, autocast=supports_bf16(self.device),
                               lora=False, previews=0, fault=lambda m: self._notes.append(
                                   self._fault(m)), resume_hint=self._resume_hint)
            polarity = score_polarity(scorer, self.val_data or self.train_data)
            invert ^= polarity.invert  # the decoded images turned round once more
            if self.is_main:
                yield LogEvent(polarity.message())
        if invert != self.prep.invert:
            self.prep = dataclasses.replace(self.prep, invert=invert)
            for data in (self.train_data, self.val_data):
                if data is not None:
                    invert_in_place(data)

    def _setup_head(self) -> TrainConfig:
        """A model whose head does not give one channel per class gets a fresh head (a
        binary base adapted to K classes), trained whole. Returns the settings that
        say what trains (the head added to --train-modules where it is fresh)."""
        c, k = self.config, self.meaning.k
        if self.model.config.out_channels == k:
            return c
        self.model.replace_head(k)
        if c.full or "head" in c.train_modules:
            return c
        return dataclasses.replace(c, train_modules=[*c.train_modules, "head"])

    def _setup_schedule(self, dataset_info: dict[str, Any]) -> None:
        """Sets steps_per_epoch, total_steps and epochs."""
        c = self.config
        mean_area = float(np.mean([im.shape[0] * im.shape[1] for im in self.train_data.images]))
        # With several processes an epoch counts effective batches (batch × processes).
        self.steps_per_epoch = c.steps_per_epoch or default_steps_per_epoch(
            dataset_info["train"], c.batch_size * self.world_size, self.crop_size, mean_area,
            c.steps, self.device.type)
        self.total_steps = c.steps or c.epochs * self.steps_per_epoch
        prior = self._schedule_of_other_world() if c.resume else None
        if prior is not None:  # resumed with another number of processes: same epochs
            self.steps_per_epoch, self.total_steps = prior
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    def _setup_compiled(self) -> torch.nn.Module | None:
        """The model compiled for training on a CUDA GPU (compiled lazily, at the first
        step), or None: the CPU and MPS train the plain model, where compiling takes longer
        than it saves in a run of a few minutes, and so does a short run on a GPU."""
        planned = self.total_steps * self.config.batch_size * self.world_size
        if not compiles(self.config, self.device.type, planned):
            return None
        return torch.compile(self.model)

    def _setup_resume(self) -> Iterator[Event]:
        if self.config.resume:
            yield from self._load_checkpoint()
        elif self.is_main and (damaged := damaged_checkpoint(self.out)):
            yield LogEvent(f"{damaged}; this run starts over and replaces it", "warning")
        elif self.is_main and find_resumable(self.out) is not None:
            yield LogEvent(f"{self.out} holds a checkpoint of an earlier run; this run starts over "
                           "and replaces it (use --resume to continue it instead)", "warning")

    def _announce(self, dataset_info: dict[str, Any]) -> Iterator[Event]:
        c = self.config
        if self.dist is not None:
            yield LogEvent(
                f"data-parallel training in {self.dist.describe()}: batch {self.batch_size} per "
                f"process, effective batch {self.batch_size * self.world_size}; peak learning rate "
                f"{format_lr(c.lr)} × √{self.world_size} = {format_lr(self.peak_lr)} "
                "(square-root scaling with the effective batch)")
        yield RunStarted(
            run_dir=str(self.out), device=self._device_text(), n_train=dataset_info["train"],
            n_val=dataset_info["val"], epochs=self.epochs, steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, start_step=self.state.step,
            trainable_params=count_parameters(self.model, trainable_only=True),
            total_params=sum(p.numel() for n_, p in self.model.named_parameters()
                             if ".lora_" not in n_),
            mode="full" if c.full else "lora", config=c.to_dict(), world_size=self.world_size,
            batch_size=self.batch_size, effective_batch_size=self.batch_size * self.world_size,
            peak_lr=self.peak_lr, masks=self._masks_record())

    def _masks_record(self) -> dict[str, Any] | None:
        """What the masks hold, for RunStarted and run.json: the classes' names and
        colours of a run of several classes; None for foreground/background."""
        return self.meaning.to_dict() if self.meaning.k > 1 else None

    def _device_text(self) -> str:
        return ", ".join(self.dist.devices) if self.dist is not None else str(self.device)

    def _schedule_of_other_world(self) -> tuple[int, int] | None:
        """(steps per epoch, total steps) of a checkpoint made with another number of
        processes, so that a resumed run keeps its epochs; None otherwise."""
        if not has_checkpoint(self.out) or self.config.steps_per_epoch or self.config.steps:
            return None
        try:
            ckpt = Checkpoint.load(self.out, mmap=True)
        except LoraGuiError:
            return None  # _load_checkpoint says what is wrong with it
        if ckpt.world_size == self.world_size:
            return None
        return ckpt.steps_per_epoch, ckpt.total_steps

    def after_peer_lost(self, message: str) -> str:
        """Another process died: rank 0 keeps the last completed step (every rank held the
        same weights) as a checkpoint, and says how to resume."""
        st = self.state
        if (self.is_main and self._started and self.out is not None and st.step > 0
                and st.step != self._checkpoint_step):
            with contextlib.suppress(Exception):
                self._save_checkpoint()
        where = (f" Training stopped at step {st.step} of {self.total_steps}."
                 if self._started and self.total_steps else "")
        return f"{message}.{where}" + self._resume_hint()

    # ------------------------------------------------------------------ loop
    def run(self) -> Iterator[Event]:
        self._t_start = t_start = time.perf_counter()
        c = self.config
        st = self.state
        if self.dist is None:
            yield from self._setup()
        else:  # join the other processes first: from here on they all agree on each outcome
            self.device, note = self.dist.resolve_device(c.device)
            self.dist.start(self.device)
            self.dist.watch_parent(self.stop)
            if note:
                yield LogEvent(note, "warning")
            error = None
            try:
                yield from self._setup()
            except Exception as exc:
                error = exc
            self.dist.check(error, "while starting")
            self.dist.broadcast_parameters(self.params)  # identical weights on every rank
        if st.step == 0 and not (c.full and not c.base):
            event = None
            with self._agreed("validating the base model"):
                if self.is_main:
                    event = self._validate(0, None)  # the base model alone
            if event is not None:
                yield event
                yield from self._drain_notes()
        elif st.step == 0:
            st.base_dice = None
        self._good = GoodState.capture(self.model, self.optimizer, st.step,
                                       st.step // self.steps_per_epoch)
        steps_done_here = 0
        t_window, n_window = time.perf_counter(), 0
        ips = 0.0
        stopped = False
        self.model.train()
        while st.step < self.total_steps and not self._ended_early():
            step = st.step
            epoch = step // self.steps_per_epoch + 1
            for group in self.optimizer.param_groups:
                group["lr"] = (self.peak_lr * st.lr_scale * group["lr_mult"]
                               * lr_factor(step, self.total_steps, self.warmup))
            loss_value, problem = yield from self.steps.run()
            if problem == "stop":
                stopped = True
                break
            if problem is not None:
                # The step is retried from the last good state with half the learning rate.
                yield from self.steps.back_off(step, loss_value, problem, self._good)
                continue
            st.step += 1
            steps_done_here += 1
            st.epoch_loss_sum += loss_value
            st.epoch_loss_n += 1
            n_window += self.batch_size * self.world_size
            now = time.perf_counter()
            if now - t_window >= 0.5 or steps_done_here <= 2:
                ips = n_window / max(now - t_window, 1e-9)
                t_window, n_window = now, 0
            remaining = ((self.total_steps - st.step) * self.batch_size * self.world_size
                         / max(ips, 1e-9))
            yield StepEvent(st.step, self.total_steps, epoch, loss_value,
                            self.optimizer.param_groups[0]["lr"], ips, remaining)
            if st.step % self.steps_per_epoch == 0 or st.step == self.total_steps:
                if not tensors_finite([p.detach() for p in self.params]):
                    yield from self.steps.back_off(st.step - 1, float("nan"), "weights",
                                                    self._good)
                train_loss = st.epoch_loss_sum / max(1, st.epoch_loss_n)
                st.epoch_loss_sum, st.epoch_loss_n = 0.0, 0
                event = None
                with self._agreed(f"at the end of epoch {epoch}"), self._writing():
                    if self.is_main:  # several processes: rank 0 validates and writes
                        event = self._validate(epoch, train_loss)
                        # Saved before the epoch is reported: a reported epoch survives a crash.
                        self._save_checkpoint()
                self._good = GoodState.capture(self.model, self.optimizer, st.step, epoch)
                if self.dist is not None and self.early is not None:  # rank 0 validated
                    self.early = EarlyStop.from_state(self.dist.gather(self.early.state_dict())[0])
                if event is not None:
                    yield from self._drain_notes()
                    yield event
                self.model.train()
        early_stopped = self._ended_early()
        reason = self._end_reason(stopped, early_stopped)
        if self.is_main:
            with self._writing():
                if stopped:
                    self._save_checkpoint()
                if not self._best_written:
                    self._save_best()  # a run stopped before its first validation leaves one too
                self._write_run_json(time.perf_counter() - t_start, stopped, reason=reason)
        # (how to resume is said by the command line and the window, each in its words)
        yield RunFinished(
            run_dir=str(self.out), output=self.best_output() or "", best_epoch=st.best_epoch,
            best_dice=st.best_dice, base_dice=st.base_dice, steps=st.step,
            seconds=time.perf_counter() - t_start, stopped=stopped, reason=reason,
            early_stopped=early_stopped)

    def _ended_early(self) -> bool:
        """The early-stopping rule ended the run before its last step."""
        return (self.early is not None and self.early.ended
                and self.state.step < self.total_steps)

    def _end_reason(self, stopped: bool, early_stopped: bool) -> str:
        st = self.state
        if stopped:
            return f"stopped at step {st.step} of {self.total_steps}"
        if early_stopped:
            return self.early.reason(st.best_dice, st.best_epoch)
        return f"reached the maximum of {self.total_steps} steps ({self.epochs} epochs)"

    @contextlib.contextmanager
    def _agreed(self, when: str) -> Iterator[None]:
        """Several processes: what the block raised on any rank stops every rank (rank 0
        reports it). One process: nothing changes."""
        if self.dist is None:
            yield
            return
        error = None
        try:
            yield
        except Exception as exc:
            error = exc
        self.dist.check(error, when)

    def _drain_notes(self) -> Iterator[LogEvent]:
        notes, self._notes = self._notes, []
        yield from notes

    def _fault(self, message: str) -> LogEvent:
        self.state.faults.append(message)
        return LogEvent(message, "warning")

    # ------------------------------------------------------------------ validation
    def _validate(self, epoch: int, train_loss: float | None) -> EpochEvent:
        """Validate, keep the best adapter so far, and add the epoch's row to the history."""
        result = self.validator.run(self.val_data)
        summary = result.summary
        dice = summary["dice"]
        is_best = False
        if epoch == 0:
            self.state.base_dice = dice
        # A warm start's epoch 0 is its initial adapter: the run keeps it unless an epoch
        # beats it, so training again never ends with a worse adapter than it began with.
        warm_start = epoch == 0 and self.init is not None and dice is not None
        if warm_start or epoch > 0 and (
                self.val_data is None or (dice is not None and (self.state.best_dice is None
                                                                or dice > self.state.best_dice))):
            is_best = True
            previous = self.state.best_dice, self.state.best_epoch
            self.state.best_dice = dice
            self.state.best_epoch = epoch
            try:
                self._save_best(metrics=summary)
            except BaseException:  # not written: the previous best is still the one on disk
                self.state.best_dice, self.state.best_epoch = previous
                raise
        row = {"epoch": epoch, "step": self.state.step, "train_loss": train_loss,
               "val_loss": result.val_loss,
               **{k: summary[k] for k in ("dice", "iou", "dice_pooled", "iou_pooled")},
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": result.seconds,
               "elapsed": self.elapsed(), **class_columns(summary)}
        self.state.history.append(row)
        if epoch > 0 and self.early is not None:
            self.early.update(epoch, dice)
        if epoch > 0:
            self._write_metrics()
        return EpochEvent(epoch=epoch, epochs=self.epochs, step=self.state.step,
                          train_loss=train_loss, val_loss=row["val_loss"], dice=dice,
                          iou=summary["iou"], dice_pooled=summary["dice_pooled"],
                          iou_pooled=summary["iou_pooled"], best_epoch=self.state.best_epoch,
                          best_dice=self.state.best_dice, is_best=is_best,
                          previews=result.previews, seconds=row["seconds"],
                          elapsed=row["elapsed"], classes=summary.get("classes"))

    def elapsed(self) -> float:
        """Seconds since the run started, counting a resumed run's earlier part."""
        return self._elapsed_before + time.perf_counter() - self._t_start

    # ------------------------------------------------------------------ files
    def _save_best(self, metrics: dict[str, Any] | None = None) -> None:
        st = self.state
        prov = provenance(self.config, base_info=self.base_info, model=self.model,
                          prep=self.prep, dataset=self.dataset_info, meaning=self.meaning,
                          metrics=metrics, base_dice=st.base_dice, epoch=st.best_epoch,
                          step=st.step)
        save_best(self.out, self.config, model=self.model, prep=self.prep, lora=self.lora,
                  extra_trainable=self.extra_trainable, provenance=prov)
        self._best_written = True

    def _save_checkpoint(self) -> None:
        save_checkpoint(
            self.out, config=self.config, model=self.model, optimizer=self.optimizer,
            sampler=self.sampler, state=self.state, best_written=self._best_written,
            device=self.device, base_sha256=self.base_info.sha256 if self.base_info else None,
            total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
            epochs=self.epochs, fingerprint=self.dataset_info["fingerprint"],
            world_size=self.world_size, early=self.early)
        self._checkpoint_step = self.state.step

    def _load_checkpoint(self) -> Iterator[Event]:
        if not has_checkpoint(self.out):
            yield LogEvent(f"--resume: no checkpoint in {self.out}; starting from the beginning",
                           "warning")
            return
        ckpt = checked_checkpoint(self.out, self.config,
                                  self.base_info.sha256 if self.base_info else None, self.model)
        restore_training(ckpt, self.model, self.optimizer, self.sampler, self.device)
        resumed = yield from resume_state(
            ckpt, self.state, config=self.config, early=self.early, peak_lr=self.peak_lr,
            fingerprint=self.dataset_info["fingerprint"], world_size=self.world_size)
        self._best_written, self.early = resumed.best_written, resumed.early
        self._elapsed_before = resumed.elapsed_before
        self._checkpoint_step = self.state.step
        if self.is_main and any(r["epoch"] > 0 for r in self.state.history):  # rows of epochs
            self._write_metrics()  # after the checkpoint go

    def _write_metrics(self) -> None:
        write_metrics(self.out, self.state.history)

    def _write_run_json(self, seconds: float, stopped: bool, failed: str | None = None,
                        running: bool = False, reason: str | None = None) -> None:
        st = self.state
        write_run_record(self.out, run_record(
            config=self.config.to_dict(), full=self.config.full, device=self._device_text(),
            status=("running" if running else "failed" if failed else "stopped" if stopped
                    else "finished"),
            failed=failed, stopped=stopped, reason=reason, early_stopped=self._ended_early(),
            early_stop=self.early.state_dict() if self.early is not None else None,
            history=st.history, steps=st.step, total_steps=self.total_steps,
            epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, seconds=seconds,
            base_dice=st.base_dice, best_epoch=st.best_epoch, best_dice=st.best_dice,
            output=self.best_output(), dataset=self.dataset_info, validation=self.val_stems,
            pairing_problems=getattr(self, "pairing_problems", {}),
            trainable_params=count_parameters(self.model, trainable_only=True),
            batch_size=self.batch_size, lr_scale=st.lr_scale, backoffs=st.backoffs,
            faults=st.faults, world_size=self.world_size,
            init_adapter=self.init.record() if self.init is not None else None,
            masks=self._masks_record(),
            distributed=None if self.dist is None else {
                "backend": self.dist.backend, "devices": self.dist.devices,
                "lr_scaling": LR_SCALING, "lr": self.config.lr, "peak_lr": self.peak_lr}))
