"""Training in a child process: ``loragui train --config RUN/config.json --events jsonl``.

The window never trains in its own process: the training loop's Python work
would compete with the GUI thread for the GIL (a 10 ms timer then slips by
hundreds of milliseconds). :class:`ProcessTrainWorker` starts the command line
as a child process, reads its JSON lines in a thread, turns them back into the
engine's typed events (:func:`~loragui.engine.events.event_from_line`) and puts
them on the queue the window drains. Each epoch's previews arrive as an .npz
file named in the line; they are read, and their overlays drawn, in this
thread too.

Stopping sends SIGINT (``CTRL_BREAK_EVENT`` on Windows): the command line then
stops after the current step, saves a checkpoint and keeps the best adapter,
exactly as Ctrl-C does in a terminal. :meth:`ProcessTrainWorker.abort` kills
the child (the checkpoint of the last finished epoch survives). A child that
dies without reporting a result ends the run with ``RunFailed``, the tail of
its standard error in the details.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from loragui.engine.runrecord import has_checkpoint, output_path

from .history import put_earlier
from .workers import Worker, add_overlays, describe_exception

CONFIG_FILE = "config.json"  # the run's settings, as passed to the child
STDERR_FILE = "train-stderr.log"  # the child's standard error (warnings, tracebacks)
STDERR_TAIL_LINES = 40

def loragui_command(*args: str) -> list[str]:
    """How to run the ``loragui`` command line from this program: ``python -m loragui``,
    or, in a frozen build (where ``sys.executable`` is the app itself), the app."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "loragui", *args]


def discard_unstarted(run_dir: str | Path) -> bool:
    """Remove the folder of a run that never started (bad data, refused settings),
    when it holds only what starting it wrote: a failed start leaves no run behind.
    Anything else in it (a file loragui did not write) keeps the folder as it is."""
    from loragui.engine.outputs import LOCK, MARKER

    folder = Path(run_dir)
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if not names <= {CONFIG_FILE, STDERR_FILE, MARKER, LOCK}:
        return False
    try:
        for name in names:
            (folder / name).unlink()
        folder.rmdir()
    except OSError:
        return False
    return True


def train_command(config_file: Path, out: Path, resume: bool = False,
                  devices: str | None = None) -> list[str]:
    """The child's command line. ``devices``: run data-parallel over these devices
    (``train --devices``: one process per device, rank 0's events on stdout)."""
    cmd = loragui_command("train", "--config", str(config_file), "--out", str(out),
                          "--events", "jsonl")
    if devices:
        cmd += ["--devices", devices]
    return cmd + ["--resume"] if resume else cmd


def child_environment() -> dict[str, str]:
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):  # a source checkout: the child imports this loragui
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _popen_options(low_priority: bool) -> dict:
    if os.name == "nt":  # CTRL_BREAK_EVENT needs a process group; no console window
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        if low_priority:
            flags |= getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS", 0)
        return {"creationflags": flags}
    return {}


# The niceness of a child that trains on the CPU: when the GUI thread wakes (a redraw, a
# click) it gets a core at once instead of sharing one with a training thread, so a
# 20 ms paint takes 20 ms, not 40. The training loses only the CPU time the window
# really uses. (A GPU training keeps its priority: its one busy thread feeds the GPU.)
CHILD_NICE = 10


def trains_on_cpu(device: str | None) -> bool:
    """Whether a run with this device setting trains on the CPU ("auto": no GPU here)."""
    text = (device or "auto").strip().lower()
    if text != "auto":
        return text == "cpu"
    # Availability only, as engine.devices.resolve_device("auto") decides: resolving the
    # device itself would make a CUDA context in the window's process.
    import torch  # (imported by the start-up thread long before Train can be pressed)

    mps = getattr(torch.backends, "mps", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available()))


def background_priority(pid: int, low_priority: bool) -> None:
    """Linux: schedule the child as a batch job, so a waking GUI thread does not wait
    for the end of its time slice (on a 2-core machine the worst 10 ms-timer gap of an
    idle window fell from 44 to 28 ms); with ``low_priority`` (Linux and macOS) also
    nice it to ``CHILD_NICE``. Set while the child is still starting, so the threads
    torch makes inherit it. (Windows: a creation flag, see ``_popen_options``.)"""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0))
    if low_priority and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, CHILD_NICE)


def best_output(config) -> str | None:
    """The best adapter (or model) a run folder holds, if any."""
    path = output_path(config.out, config.full)
    return str(path) if path.exists() else None


def read_tail(path: Path, lines: int = STDERR_TAIL_LINES, limit: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def exit_words(code: int) -> str:
    """"exit status 1", "killed by SIGKILL", ..."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


class ProcessTrainWorker(Worker):
    """Run one training in a child process and put its events on ``events``.

    The same interface as :class:`~loragui.gui.workers.TrainWorker` (``events``,
    ``last_step``, ``cancel()``): the last event put is always a ``RunFinished``
    or ``RunFailed``.
    """

    def __init__(self, config, events: queue.SimpleQueue | None = None, parent=None) -> None:
        super().__init__(parent)
        self.config = config
        self.events: queue.SimpleQueue = events if events is not None else queue.SimpleQueue()
        self.last_step = 0
        self.returncode: int | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # proc is made and signalled under it
        self._reported = False  # the child's result has arrived (set under the lock)
        self._noise: collections.deque[str] = collections.deque(maxlen=20)  # non-JSON stdout

    # -- control (GUI thread) -----------------------------------------------------------------
    def cancel(self) -> None:
        """Stop after the current step: SIGINT (CTRL_BREAK_EVENT on Windows) to the child."""
        super().cancel()
        with self._lock:
            proc = self.proc
            # A child that has reported its result is ending by itself: a signal now
            # would come after it gave back its handler, and kill it on its way out.
            if proc is None or proc.poll() is not None or self._reported:
                return
            try:
                proc.send_signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)
            except (OSError, ValueError, AttributeError):
                proc.terminate()  # also a stop after the current step (SIGTERM handler)

    def abort(self) -> None:
        """Kill the child now (the checkpoint of the last finished epoch is kept)."""
        super().cancel()
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()

    # -- the thread -----------------------------------------------------------------------------
    def run(self) -> None:
        from loragui.engine.events import RunFailed

        try:
            terminal = self._run_child()
        except BaseException as exc:  # noqa: BLE001 - reported, never lost
            message, details = describe_exception(exc)
            self.events.put(RunFailed(f"The training could not start: {message}", details,
                                      run_dir=self.config.out or None))
            return
        if terminal is None:
            self.events.put(self._no_result())

    def _run_child(self):
        from loragui.engine.atomic import atomic_write_text
        from loragui.engine.events import RunFailed, RunFinished

        out = Path(self.config.out)
        out.mkdir(parents=True, exist_ok=True)
        config_file = out / CONFIG_FILE
        devices = self.config.devices
        settings = self.config.to_dict() | {"resume": False, "devices": None}  # the options say these
        atomic_write_text(config_file, json.dumps(settings, indent=2) + "\n")
        low_priority = trains_on_cpu(self.config.device) and not devices
        self._t0 = time.monotonic()
        with open(out / STDERR_FILE, "wb") as stderr:
            with self._lock:
                if self.cancelled():
                    return None  # stopped before it started
                self.proc = subprocess.Popen(
                    train_command(config_file, out, self.config.resume, devices),
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                    env=child_environment(), **_popen_options(low_priority))
            background_priority(self.proc.pid, low_priority)
            terminal = None
            try:
                for raw in self.proc.stdout:
                    event = self._event(raw)
                    if event is None or terminal is not None:
                        continue
                    self.last_step = getattr(event, "step", self.last_step)
                    if isinstance(event, RunFinished | RunFailed):
                        with self._lock:
                            self._reported = True
                        terminal = event
                    self.events.put(event)
                    put_earlier(event, self.config, self.events)  # a resumed run's past
            finally:
                self.proc.stdout.close()
                self.returncode = self.proc.wait()
        return terminal

    def _event(self, raw: bytes):
        """The typed event of one stdout line (its previews read), or None."""
        from loragui.engine.events import EpochEvent, LogEvent, event_from_line, read_previews

        line = raw.decode("utf-8", "replace").strip()
        if not line:
            return None
        try:
            event = event_from_line(line)
        except ValueError:  # not one of our lines (a library printing to stdout)
            self._noise.append(line)
            return None
        if isinstance(event, EpochEvent) and event.previews_file:
            try:
                event.previews = read_previews(event.previews_file)
            except Exception as exc:  # noqa: BLE001 - the curves go on without pictures
                self.events.put(LogEvent(f"the previews of epoch {event.epoch} could not be "
                                         f"read ({exc})", "warning"))
            else:
                event = add_overlays(event)
        return event

    def _no_result(self):
        """The child ended without a RunFinished/RunFailed: stopped early, or it died."""
        from loragui.engine.events import RunFailed, RunFinished

        seconds = time.monotonic() - getattr(self, "_t0", time.monotonic())
        if self.cancelled():
            return RunFinished(self.config.out, best_output(self.config) or "", 0, None, None,
                               self.last_step, seconds, stopped=True)
        code = self.returncode if self.returncode is not None else -1
        tail = read_tail(Path(self.config.out) / STDERR_FILE)
        details = "\n".join(p for p in (
            f"Command: {subprocess.list2cmdline(self.proc.args) if self.proc else '?'}",
            f"The training process ended ({exit_words(code)}) after step {self.last_step}.",
            "Its last output on standard error:\n" + tail if tail else "",
            "Other output:\n" + "\n".join(self._noise) if self._noise else "") if p)
        why = " It may have run out of memory." if code in (-9, 137) else ""
        if has_checkpoint(self.config.out):
            kept = " The checkpoint of the last finished epoch is kept: Resume continues from there."
        else:
            kept = " No epoch had finished, so there is nothing to resume from."
        return RunFailed(
            f"The training process ended unexpectedly ({exit_words(code)}) at step "
            f"{self.last_step}.{why}{kept}",
            details, run_dir=self.config.out, output=best_output(self.config))
