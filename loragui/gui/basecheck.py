"""The base model is checked when it is chosen, in a worker thread: a file that
cannot be a base model (an adapter, a damaged file, something else) is named
under the Base model box in plain words, and Train waits until a usable one is
chosen. The engine's own reason is in that note's tooltip."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject

from .workers import CallWorker, Worker

CHOOSE = "Choose a base model: the bundled one, or a model file made by loragui."


def base_problem(path: str | os.PathLike) -> tuple[str, str]:
    """``("", "")`` when ``path`` is a usable base (or merged) model, else the plain
    message and the engine's reason. Loads the model, as training would (torch)."""
    from loragui.engine.basemodel import load_model
    from loragui.engine.errors import LoraGuiError
    from loragui.engine.info import file_kind

    path = Path(path)
    name = path.name or str(path)
    if not path.exists():
        return f"{name} is no longer there. {CHOOSE}", str(path)
    try:
        kind = file_kind(path)
    except (LoraGuiError, OSError) as exc:
        return (f"{name} cannot be read as a model: it may be damaged, or another kind of "
                f"file. {CHOOSE}", str(exc))
    if kind == "adapter":
        return (f"{name} is an adapter (what a training makes), not a base model. {CHOOSE}",
                "")
    try:
        load_model(path)
    except (LoraGuiError, OSError) as exc:
        return f"{name} cannot be used as a base model: it is damaged or incomplete. {CHOOSE}", \
            str(exc)
    return "", ""


class BaseCheck(QObject):
    """Checks ``settings``' base model whenever another one is chosen.

    ``track(worker)`` hands each check to the window (which waits for it on
    closing); ``changed()`` is called when the answer arrives.
    """

    def __init__(self, settings, *, track: Callable[[Worker], None],
                 changed: Callable[[], None]) -> None:
        super().__init__(settings)
        self._settings, self._track, self._changed = settings, track, changed
        self.path: str | None = None  # the base the answer below is about (None: bundled)
        self.problem = ""
        self.checking = False
        settings.changed.connect(self._settings_changed)

    def blocker(self) -> str:
        """Why Train waits for the base model ("" when it does not)."""
        if self.checking:
            return "Checking the base model…"
        if self.problem:
            return "The base model cannot be used (see Settings)."
        return ""

    def _settings_changed(self) -> None:
        path = self._settings.values()["base"]
        if path == self.path:
            return
        self.path, self.problem = path, ""
        self._settings.show_base_problem("", "")
        self.checking = path is not None  # (the bundled model ships checked)
        self._changed()
        if path is None:
            return
        worker = CallWorker(base_problem, path)
        worker.succeeded.connect(lambda answer: self._answered(path, *answer))
        worker.failed.connect(lambda m, d: self._answered(
            path, f"{Path(path).name} could not be read: {m} {CHOOSE}", d))
        self._track(worker)
        worker.start()

    def _answered(self, path: str, problem: str, reason: str) -> None:
        if path != self.path:
            return  # another base was chosen meanwhile
        self.checking = False
        self.problem = problem
        self._settings.show_base_problem(problem, reason)
        self._changed()
