"""What each rank of a data-parallel run holds, for tests/test_distributed.py.

The tests put this folder on ``PYTHONPATH`` of the processes they start, so Python
imports this module at startup in every process: the launcher and each rank. When
``LORAGUI_DIST_DEBUG_DIR`` is set, it wraps two public methods the ranks run, as
soon as ``loragui.engine.train`` is imported:

* ``Dist.broadcast_parameters`` (every rank, once, when all start with rank 0's
  weights): writes ``started``, ``device`` and ``pid``;
* ``Trainer.run`` (the training generator): at its ``RunFinished`` writes ``step``,
  ``stopped`` and ``digest`` (:func:`loragui.engine.distributed.parameters_digest`
  of the trainable weights).

Each rank's record goes to ``$LORAGUI_DIST_DEBUG_DIR/rank<RANK>.json``, merged with
what is there, replaced atomically so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

ENV_DEBUG_DIR = "LORAGUI_DIST_DEBUG_DIR"
PATCHED_MODULE = "loragui.engine.train"


def record(**info: Any) -> None:
    """Merge ``info`` and this process's id into this rank's JSON file."""
    path = os.path.join(os.environ[ENV_DEBUG_DIR], f"rank{os.environ.get('RANK', '0')}.json")
    with contextlib.suppress(OSError):
        old = {}
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
        old.update(info, pid=os.getpid())
        with open(path + ".tmp", "w") as f:
            json.dump(old, f)
        os.replace(path + ".tmp", path)


def patch(train: Any) -> None:
    """Wrap the methods named in the module docstring (``train`` is the loaded module)."""
    from loragui.engine.distributed import Dist, parameters_digest
    from loragui.engine.events import RunFinished

    broadcast = Dist.broadcast_parameters

    def broadcast_and_record(self: Dist, params: Any) -> None:
        broadcast(self, params)
        record(started=True, device=str(self.device))

    run = train.Trainer.run

    def run_and_record(self: Any) -> Iterator[Any]:
        events = run(self)
        try:
            for event in events:
                if isinstance(event, RunFinished) and self.dist is not None:
                    record(step=event.steps, stopped=event.stopped,
                           digest=parameters_digest(self.params))
                yield event
        finally:
            events.close()

    Dist.broadcast_parameters = broadcast_and_record
    train.Trainer.run = run_and_record


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches the training module right after it loads, so that processes that never
    train (and the launcher, until it needs it) do not import torch because of this."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != PATCHED_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


if os.environ.get(ENV_DEBUG_DIR):
    sys.meta_path.insert(0, PatchOnImport())
