"""Reference cycles are collected on the GUI thread, never in a worker (collector.py)."""

from __future__ import annotations

import gc
import threading
import weakref

from loragui.gui.workers import CallWorker


class _Node:
    pass


def _make_cyclic_garbage() -> int:
    """Leave cycles behind as a scan does (tracebacks, image plugins): far more than
    the youngest generation's threshold."""
    for _ in range(5_000):
        node = _Node()
        node.cycle = node
    return 5_000


def test_a_cycle_freed_while_a_worker_allocates_is_collected_on_the_gui_thread(qtbot):
    collected_in: list[str] = []
    gc.collect()  # the cycle below is then the youngest generation's
    worker = CallWorker(_make_cyclic_garbage)
    node = _Node()
    node.cycle = node
    weakref.finalize(node, lambda: collected_in.append(threading.current_thread().name))
    del node
    with qtbot.waitSignal(worker.succeeded, timeout=10_000):
        worker.start()
    worker.wait()
    assert not gc.isenabled()
    qtbot.waitUntil(lambda: bool(collected_in), timeout=5_000)
    assert collected_in == [threading.main_thread().name]
