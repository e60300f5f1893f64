"""Data-parallel training over several GPUs (or CPU processes) with ``torch.distributed``:
one process's place in the run (:class:`Dist`) and how the processes agree.

Two ways in, one engine:

* ``loragui train ... --devices cuda:0,cuda:1`` (or ``--devices all``) starts the
  processes itself through torchrun (see :mod:`.launcher`).
* ``torchrun --nproc-per-node N -m loragui train ...`` works as it is: the
  training loop sees ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` (:meth:`Dist.from_env`).

What each process does (see :mod:`.train`):

* Device: ``cuda:LOCAL_RANK`` (``--devices`` sets ``CUDA_VISIBLE_DEVICES`` to the
  listed GPUs), or the CPU with ``--device cpu`` / ``--devices cpu,cpu``.
  Backend: NCCL for GPUs, gloo for the CPU; ``LORAGUI_DIST_BACKEND=gloo`` forces
  gloo (debugging, machines without NCCL). NVLink multicast is always off
  (``NCCL_NVLS_ENABLE=0``): nothing here depends on it.
* Every process loads the same base model and builds the same LoRA weights; rank
  0's trainable weights are broadcast once so all start identical. The base stays
  frozen on every rank and is never communicated.
* Synchronisation: after each backward pass the gradients of the *trainable*
  parameters only (LoRA matrices, trained biases and whole modules) are summed
  with one ``all_reduce`` and averaged, so every rank takes the same optimiser
  step and the weights stay identical. (DistributedDataParallel reduces inside the
  backward pass; doing it after lets every rank first agree on the step's outcome:
  the same reduce carries each rank's stop request, non-finite-loss flag and
  out-of-memory flag, so all ranks stop, back off or halve their batch together
  and no rank is ever left waiting in a collective the others skipped.)
* Crops: each process draws its own crops, from a random stream seeded by
  (seed, rank, step, back-offs): the processes train on distinct crops, and a run
  resumed from any checkpoint draws exactly the crops the uninterrupted run would
  have drawn (with the same number of processes), without per-rank state to save.
* Batch, epochs, learning rate: ``--batch-size`` is per process, so the effective
  batch is batch × processes. The default steps per epoch count effective batches
  (an epoch is still about one crop per image area), so N processes finish the
  same epochs in about 1/N of the steps. The peak learning rate is scaled by
  √N (square-root scaling, the rule for Adam-type optimisers: Malladi et al.
  2022; linear scaling is SGD's rule and too aggressive for AdamW at large N).
  The run reports both in its log, ``RunStarted`` and ``run.json``.
* Rank 0 alone validates, writes the checkpoint, adapter, metrics and run.json,
  and reports events; the others run silently. After each validation all ranks
  check that rank 0's writes succeeded (a failed write stops every rank).
* Stop: a stop request on any rank (Ctrl-C, SIGTERM from the launcher, the
  window's Stop) travels in the next step's reduce; every rank stops at the same
  step and rank 0 saves a checkpoint. A rank that dies makes the others' next
  collective fail: rank 0 saves a checkpoint of the last completed step (all ranks
  hold the same weights) and ends with a message saying how to resume; torchrun
  ends the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import DeviceError, LoraGuiError, TrainingError

ENV_BACKEND = "LORAGUI_DIST_BACKEND"  # "gloo" or "nccl": overrides the automatic choice
TIMEOUT = datetime.timedelta(minutes=30)  # a collective waiting longer than this fails
LR_SCALING = "sqrt"


def lr_scale(world_size: int) -> float:
    """The factor applied to ``--lr`` with ``world_size`` processes (square-root rule)."""
    return math.sqrt(world_size)


class PeerLost(TrainingError):
    """A collective failed: another training process ended (or the connection broke)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class AgreedFailure(LoraGuiError):
    """Another rank failed and rank 0 reports it; this rank ends quietly."""


@dataclass
class Dist:
    """This process's place in a torchrun launch (``WORLD_SIZE`` > 1)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str = ""
    device: torch.device | None = None
    devices: list[str] = field(default_factory=list)  # every rank's device, rank order
    started: bool = False  # the process group is up
    broken: bool = False  # a collective failed: leave the group without a goodbye
    _owns_group: bool = False
    _watch: threading.Thread | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Dist | None:
        env = os.environ if environ is None else environ
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            if world <= 1:
                return None
            rank = int(env.get("RANK", "0"))
            local_rank = int(env.get("LOCAL_RANK", str(rank)))
            local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
        except ValueError:
            return None
        return cls(rank, world, local_rank, local_world)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes ({self.backend}: {', '.join(self.devices)})"

    # ---------------------------------------------------------------- start / end
    def resolve_device(self, name: str | None) -> tuple[torch.device, str | None]:
        """This rank's device for ``--device name``, and a note for the log (or None)."""
        name = (name or "auto").strip().lower()
        if name == "mps":
            raise DeviceError("several training processes cannot share the Apple GPU (MPS); "
                              "train in one process (without torchrun / --devices)")
        cuda = torch.cuda.is_available()
        if name == "cpu" or (name == "auto" and not cuda):
            return torch.device("cpu"), None
        if name == "auto" or name == "cuda" or name.startswith("cuda:"):
            if not cuda:
                raise DeviceError("CUDA was asked for, but no CUDA GPU is available here; use "
                                  "--device cpu (gloo) or train without torchrun")
            count = torch.cuda.device_count()
            if self.local_world_size > count:
                raise DeviceError(
                    f"{self.local_world_size} training processes were started on this machine "
                    f"but only {count} CUDA device(s) are visible: start at most {count} "
                    "(torchrun --nproc-per-node, or --devices)")
            note = None
            if name.startswith("cuda:"):
                note = (f"--device {name} is ignored with several processes: each process uses "
                        "the GPU of its local rank (choose GPUs with --devices or "
                        "CUDA_VISIBLE_DEVICES)")
            return torch.device("cuda", self.local_rank), note
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda with several processes")

    def start(self, device: torch.device) -> None:
        """Join the process group (NCCL for CUDA, gloo otherwise)."""
        import torch.distributed as dist

        backend = (os.environ.get(ENV_BACKEND) or "").strip().lower()
        if not backend:
            backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        if backend not in ("nccl", "gloo"):
            raise DeviceError(f"{ENV_BACKEND}={backend!r}: use nccl or gloo")
        if backend == "nccl" and device.type != "cuda":
            raise DeviceError(f"the NCCL backend needs GPUs; unset {ENV_BACKEND} or set it to gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        os.environ["NCCL_NVLS_ENABLE"] = "0"  # never NVLink multicast
        self.backend, self.device = backend, device
        if not dist.is_initialized():
            try:
                dist.init_process_group(backend, timeout=TIMEOUT)
            except Exception as exc:
                raise PeerLost("the training processes could not connect",
                               detail=_short(exc, 2000)) from None
            self._owns_group = True
        self.started = True
        self.devices = [str(d) for d in self.gather(str(device))]

    def close(self) -> None:
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized() and not self.broken:
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
        self._owns_group = False
        self.started = False

    def watch_parent(self, stop: threading.Event) -> None:
        """Stop (after the current step, with a checkpoint) if the launcher goes away."""
        parent = os.getppid()
        if parent <= 1:
            return

        def watch() -> None:
            while not stop.wait(1.0):
                if os.getppid() != parent:
                    stop.set()
                    return

        self._watch = threading.Thread(target=watch, name="loragui-parent-watch", daemon=True)
        self._watch.start()

    # ---------------------------------------------------------------- collectives
    def _collective(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.broken = True
            raise PeerLost("another training process ended unexpectedly or could not be reached",
                           detail=_short(exc, 2000)) from None

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        self._collective(lambda: dist.all_gather_object(out, obj))
        return out

    def broadcast_parameters(self, params: Sequence[torch.Tensor]) -> None:
        """Rank 0's values into every rank's ``params`` (one flat broadcast)."""
        import torch.distributed as dist

        if not params:
            return
        flat = torch.cat([p.detach().reshape(-1).float() for p in params])
        self._collective(lambda: dist.broadcast(flat, src=0))
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                p.copy_(flat[offset:offset + n].view(p.shape))
                offset += n

    def reduce_step(self, params: Sequence[torch.Tensor], loss: float, *, stop: bool,
                    loss_bad: bool, oom: bool) -> StepOutcome:
        """One all-reduce per step: gradient sum of the trainable parameters plus every
        rank's flags. Gradients are averaged into ``p.grad`` only when the step is good
        everywhere (no stop, no non-finite loss, no out-of-memory)."""
        import torch.distributed as dist

        w = self.world_size
        skip = stop or loss_bad or oom
        parts = []
        if not skip:
            parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                     for p in params]
        n_grads = sum(p.numel() for p in params)
        tail = torch.zeros(3 + w, dtype=torch.float32)
        tail[0] = loss if (not skip and math.isfinite(loss)) else 0.0
        tail[1], tail[2], tail[3 + self.rank] = float(stop), float(loss_bad), float(oom)
        if skip:
            flat = torch.zeros(n_grads + 3 + w, dtype=torch.float32, device=self.device)
            flat[n_grads:] = tail.to(self.device)
        else:
            flat = torch.cat(parts + [tail.to(self.device)])
        self._collective(lambda: dist.all_reduce(flat, op=dist.ReduceOp.SUM))
        t = flat[n_grads:].tolist()
        outcome = StepOutcome(loss=t[0] / w, stop=t[1] > 0, loss_bad=t[2] > 0,
                              oom_ranks=[r for r in range(w) if t[3 + r] > 0])
        if outcome.ok:
            offset = 0
            flat = flat[:n_grads].div_(w)
            for p in params:
                n = p.numel()
                g = flat[offset:offset + n].view(p.shape)
                if p.grad is None:
                    p.grad = g.to(p.dtype).clone()
                else:
                    p.grad.copy_(g)
                offset += n
        return outcome

    def check(self, error: BaseException | None, when: str) -> None:
        """Every rank says whether it got through ``when``; if one did not, all stop.

        Rank 0 raises its own error, or one naming the rank that failed; the other
        ranks raise :class:`AgreedFailure` (quiet) or their own unexpected error."""
        mine = None
        if error is not None:
            mine = _short(error, 600) if isinstance(error, LoraGuiError) else (
                f"{type(error).__name__}: {_short(error, 600)}")
        gathered = self.gather(mine)
        failed = [(r, m) for r, m in enumerate(gathered) if m is not None]
        if not failed:
            return
        if error is not None and (self.is_main or not isinstance(error, LoraGuiError)):
            raise error
        if not self.is_main:
            raise AgreedFailure(f"stopped because rank {failed[0][0]} failed {when}")
        rank, message = failed[0]
        device = self.devices[rank] if rank < len(self.devices) else "?"
        raise TrainingError(f"training process {rank} of {self.world_size} ({device}) failed "
                            f"{when}: {message}")

    def step_seed(self, seed: int, step: int, backoffs: int) -> int:
        """The seed of this rank's random draws for ``step`` (see the module docstring)."""
        key = f"loragui/{seed}/{self.rank}/{step}/{backoffs}".encode()
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


@dataclass
class StepOutcome:
    loss: float  # mean over ranks (0 where a rank had none)
    stop: bool
    loss_bad: bool
    oom_ranks: list[int]

    @property
    def ok(self) -> bool:
        return not (self.stop or self.loss_bad or self.oom_ranks)


def parameters_digest(params: Sequence[torch.Tensor]) -> str:
    """A digest of the values of ``params``: ranks holding the same weights give the same."""
    h = hashlib.sha256()
    for p in params:
        h.update(p.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _short(exc: BaseException, limit: int = 300) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text[:limit]
