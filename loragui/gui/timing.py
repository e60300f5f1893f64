"""Measure how responsive the GUI thread is: a 10 ms timer records the longest
gap between its ticks. A frozen window shows up as a long gap.

    monitor = EventLoopMonitor()
    monitor.start()
    ...  # train
    monitor.stop()
    print(monitor.summary())
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer


class EventLoopMonitor(QObject):
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
