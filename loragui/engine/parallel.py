"""``map`` for the folder scan and the decoding: in order, on threads only when it pays."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .errors import DataError

T = TypeVar("T")
R = TypeVar("R")

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_TIMED_ITEMS = 8  # items timed on the calling thread before deciding on threads
_SLOW_ITEM_S = 0.003  # an item slower than this (large images) is worth a thread


def ordered_map(fn: Callable[[T], R], items: Sequence[T], *, stop: threading.Event | None,
                stopped: str) -> Iterator[R]:
    """``map(fn, items)``, results in input order, on threads only when it pays.

    Pillow and zlib release the GIL while decoding, so threads speed up large
    images. For thousands of tiny files the work is Python overhead, and
    threads contending for the GIL make the scan slower, not faster. So the
    first few items run on this thread, timed, and the rest go to a pool only
    if the median item took longer than ``_SLOW_ITEM_S``. At most
    ``2 * workers`` items run ahead of the consumer, so a stop request, an
    error or a memory limit wastes little work. A set ``stop`` raises
    :class:`DataError` with the message ``stopped``.
    """
    def check() -> None:
        if stop is not None and stop.is_set():
            raise DataError(stopped)

    times = []
    for item in items[:_TIMED_ITEMS]:
        check()
        start = time.perf_counter()
        result = fn(item)
        times.append(time.perf_counter() - start)
        yield result
    rest = items[_TIMED_ITEMS:]
    slow = bool(times) and sorted(times)[len(times) // 2] > _SLOW_ITEM_S
    if not slow or _WORKERS == 1 or len(rest) < 2:
        for item in rest:
            check()
            yield fn(item)
        return
    source = iter(rest)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="loragui-data") as pool:
        try:
            for item in itertools.islice(source, 2 * _WORKERS):
                pending.append(pool.submit(fn, item))
            while pending:
                check()
                result = pending.popleft().result()
                for item in itertools.islice(source, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for future in pending:
                future.cancel()
