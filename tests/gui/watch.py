"""The window watched from outside, for the tests, the benchmarks and the screenshot
tool: how responsive its GUI thread is (:class:`EventLoopMonitor`), and which of its
background threads and training processes still run (:class:`WorkerWatch`).

    monitor = EventLoopMonitor()
    monitor.start()
    ...  # train
    monitor.stop()
    print(monitor.summary())

    with WorkerWatch() as watch:
        ...  # use the window
        assert not watch.running()
"""

from __future__ import annotations

import subprocess
import time

from PySide6.QtCore import QObject, Qt, QTimer

from loragui.gui.child import ProcessTrainWorker
from loragui.gui.workers import Worker


class EventLoopMonitor(QObject):
    """A 10 ms timer that records the gaps between its ticks: a frozen window shows up
    as a long gap."""

    def __init__(self, interval_ms: int = 10, parent=None) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gaps_ms: list[float] = []
        self.tick_times: list[float] = []  # time.perf_counter() at the end of each gap
        self._last: float | None = None

    def start(self) -> None:
        self.gaps_ms.clear()
        self.tick_times.clear()
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps_ms.append(1000.0 * (now - self._last))
            self.tick_times.append(now)
        self._last = now

    @property
    def worst_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    def percentile(self, q: float) -> float:
        if not self.gaps_ms:
            return 0.0
        ordered = sorted(self.gaps_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]

    def summary(self) -> str:
        return (f"{len(self.gaps_ms)} ticks of a {self.interval_ms} ms timer: worst gap "
                f"{self.worst_ms:.1f} ms, 99th percentile {self.percentile(99):.1f} ms, "
                f"median {self.percentile(50):.1f} ms")


class WorkerWatch:
    """Every :class:`~loragui.gui.workers.Worker` thread started inside the ``with``
    block (``Worker.start`` is wrapped meanwhile), and the training child processes
    they started."""

    current: WorkerWatch | None = None  # the innermost active watch

    def __init__(self) -> None:
        self.started: list[Worker] = []
        self._outer: WorkerWatch | None = None

    def __enter__(self) -> WorkerWatch:
        original = Worker.start
        self._had_own = "start" in vars(Worker)
        self._original = original
        started = self.started

        def start(worker: Worker, *args) -> None:
            started.append(worker)
            original(worker, *args)

        Worker.start = start  # type: ignore[method-assign]
        self._outer, WorkerWatch.current = WorkerWatch.current, self
        return self

    def __exit__(self, *exc) -> None:
        if self._had_own:
            Worker.start = self._original  # type: ignore[method-assign]
        else:
            del Worker.start
        WorkerWatch.current = self._outer

    def running(self) -> list[Worker]:
        """The threads still running."""
        running = []
        for worker in self.started:
            try:
                if worker.isRunning():
                    running.append(worker)
            except RuntimeError:  # the Qt object was deleted (with its finished thread)
                pass
        return running

    def started_a(self, kind: type[Worker]) -> bool:
        """Whether a thread of this class has been started."""
        return any(isinstance(w, kind) for w in self.started)

    def processes(self) -> list[subprocess.Popen]:
        """The training child processes still alive."""
        return [w.proc for w in self.started if isinstance(w, ProcessTrainWorker)
                and w.proc is not None and w.proc.poll() is None]
