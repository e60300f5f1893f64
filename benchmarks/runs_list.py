"""Listing the history of runs: 500 run folders by default.

Writes ``--runs`` run folders (run.json, metrics.csv of ``--epochs`` rows, an adapter
folder; a mix of finished, stopped, failed and resumable runs, a few damaged) in a
temporary folder, then times :func:`loragui.engine.runs.list_runs`, what the
window's Runs view and ``loragui runs`` call, and the Runs view's table filled
from its rows and sorted (``--window``). Prints the times; nothing is asserted.

    python benchmarks/runs_list.py --runs 500 [--window]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loragui.engine.runs import list_runs  # noqa: E402
from tests.runfolders import make_run  # noqa: E402


def make_runs(root: Path, n: int, epochs: int) -> None:
    kinds = ("finished", "stopped", "failed")
    for i in range(n):
        status = kinds[i % len(kinds)]
        make_run(root, f"2026-11-{1 + i % 28:02d}_{i:05d}", status=status,
                 created=f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00",
                 checkpoint=status == "stopped", steps=10, total_steps=40 if i % 2 else 10,
                 dice=tuple(0.5 + 0.4 * e / epochs for e in range(epochs)),
                 rank=(4, 8, 16)[i % 3], lr=(5e-3, 1e-3)[i % 2])
        if i % 50 == 49:  # a half-written record now and then
            (root / f"2026-11-{1 + i % 28:02d}_{i:05d}" / "run.json").write_text('{"conf')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=40, help="rows of each metrics.csv")
    ap.add_argument("--repeats", type=int, default=5, help="listings timed")
    ap.add_argument("--window", action="store_true",
                    help="also time filling and sorting the Runs view's table (offscreen)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        make_runs(root, args.runs, args.epochs)
        print(f"wrote {args.runs} run folders in {time.perf_counter() - t0:.1f} s")
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            rows = list_runs(root)
            times.append(time.perf_counter() - t0)
        statuses = {s: sum(r.status == s for r in rows) for s in sorted({r.status for r in rows})}
        print(f"list_runs: {len(rows)} rows {statuses}")
        print(f"list_runs: first {times[0] * 1000:.0f} ms, best {min(times) * 1000:.0f} ms "
              f"of {args.repeats}")
        if args.window:
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
            from PySide6.QtCore import Qt
            from PySide6.QtWidgets import QApplication

            from loragui.gui.runs import RunsView

            app = QApplication.instance() or QApplication([])
            view = RunsView(track=lambda worker: None, log=lambda *a: None)
            view.resize(1400, 400)
            view.show()
            t0 = time.perf_counter()
            view._loaded(rows)  # what the view does with the worker's rows  # noqa: SLF001
            view.table.sortByColumn(10, Qt.SortOrder.DescendingOrder)
            app.processEvents()
            print(f"Runs view: filled, sized and sorted in {(time.perf_counter() - t0) * 1000:.0f} ms")
            view.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
