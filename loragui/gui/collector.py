"""Python's cycle collector, run on the GUI thread only.

CPython collects reference cycles in whichever thread happens to allocate past
the collector's threshold. In the window that is often a worker thread (a scan
opening images, a prediction), and a cycle it frees may hold a Qt object made
on the GUI thread, a closed dialog or a widget's lambda: destroying that from
another thread crashes the process (a segmentation fault "Garbage-collecting"
in a worker's stack). So while any worker can run, automatic collection is off
and a timer on the GUI thread collects instead, by the same per-generation
thresholds. pyqtgraph's ``GarbageCollector`` does the same, but importing
pyqtgraph costs half a second that the window keeps off the GUI thread until it
is shown, and it cannot be stopped again.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QCoreApplication, QThread, QTimer

INTERVAL_MS = 500

_timer: QTimer | None = None


def _collect() -> None:
    """Collect the oldest generation whose count is past its threshold (and those
    younger), as the automatic collector would have."""
    counts, thresholds = gc.get_count(), gc.get_threshold()
    generation = -1
    for g, (count, threshold) in enumerate(zip(counts, thresholds, strict=False)):
        if threshold <= 0 or count <= threshold:
            break
        generation = g
    if generation >= 0:
        gc.collect(generation)


def collect_on_gui_thread() -> bool:
    """Move automatic collection to the GUI thread (once per application; call it
    on the GUI thread before a worker thread starts). True when it is in force."""
    global _timer
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        return _timer is not None
    if _timer is None:
        _timer = QTimer(app)
        _timer.setInterval(INTERVAL_MS)
        _timer.timeout.connect(_collect)
        _timer.start()
    gc.disable()
    return True


def collect_anywhere() -> None:
    """Give collection back to CPython after a full collection here (the tests'
    teardown, after every worker has ended)."""
    global _timer
    if _timer is not None:
        _timer.stop()
        _timer.deleteLater()
        _timer = None
    gc.enable()
    gc.collect()
