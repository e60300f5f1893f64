"""Training in the window against training from the command line, on this machine.

The same training (the bundled sample data and base model, the default settings,
``--epochs N``) runs alternately from the command line (``loragui train --sample
--events jsonl``) and from the window (a real ``MainWindow``: "Open sample data",
Train), in turns, the command line first and last (``--repeats`` window runs); each
window run is compared with the command-line runs just before and after it, and the
median of those ratios is reported. The window trains in a child process that runs
that same command; what it can cost is CPU time taken by its GUI thread and the
delay of reading the events. Both are timed the same way: each step event is
timestamped as its line is read from the training process's output, and training
images/s counts only the gaps between consecutive steps (no validation, no log
line between them), after the first ``--skip`` steps.

Also reported for the window runs: the event loop's worst stall while training
(a 10 ms precise timer; the gaps between its ticks), its 99th percentile, and the
window's calls that overlapped the worst stalls (to see what to make cheaper).

    python benchmarks/window_speed.py --epochs 4 --repeats 4

Runs offscreen unless ``DISPLAY`` is set (then on that screen, e.g. Xvfb).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.multigpu import StepClock, run_timed  # noqa: E402


def cli_run(epochs: int, out: Path, skip: int) -> dict:
    cmd = [sys.executable, "-m", "loragui", "train", "--sample", "--epochs", str(epochs),
           "--out", str(out), "--events", "jsonl"]
    clock, returncode, wall = run_timed(cmd, skip)
    if returncode != 0:
        raise SystemExit(f"the command failed: {' '.join(cmd)}")
    return {"images_per_s": clock.images_per_s, "wall_s": wall, "steps": clock.last_step}


class CallTimes:
    """Wrap some methods to record (name, start, end) of each call on the GUI thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []

    def wrap(self, owner: type, name: str) -> None:
        original = getattr(owner, name)
        calls = self.calls

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if threading.current_thread() is threading.main_thread():
                    calls.append((f"{owner.__name__}.{name}", t0, time.perf_counter()))

        setattr(owner, name, timed)


def window_run(app, epochs: int, skip: int, calls: CallTimes | None, dice: float = 0.8,
               stop_at_dice: bool = False) -> dict:
    """One training from the window. With ``calls`` (the timed methods), the event loop
    is watched by a 10 ms timer as well; without, nothing is added to the window."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    from loragui.gui import child
    from loragui.gui.window import MainWindow
    from tests.gui.watch import EventLoopMonitor, WorkerWatch

    clock = StepClock(skip)
    original = child.ProcessTrainWorker._event
    reached: dict[str, float] = {}  # "pressed": Train pressed; "dice": first val Dice >= dice

    def timed_event(self, raw):  # the worker thread reads the child's lines here
        now = time.perf_counter()
        event = original(self, raw)
        with contextlib.suppress(ValueError):
            data = json.loads(raw)
            clock.feed(data, now)
            if data.get("event") == "EpochEvent" and data.get("epoch", 0) > 0 \
                    and (data.get("dice") or 0) >= dice and "dice" not in reached:
                reached["dice"] = now - reached["pressed"]
                reached["epoch"] = data["epoch"]
        return event

    child.ProcessTrainWorker._event = timed_event
    watch = WorkerWatch().__enter__()  # the window's background threads
    try:
        win = MainWindow()
        win.show()
        win.open_sample_when_ready = True

        def wait(condition, timeout_s: float) -> None:
            """Run the event loop as the app does (asleep until there is work), looking
            at ``condition`` every 100 ms. (Polling with processEvents() in a tight loop
            would cost this process more CPU than the window itself.)"""
            if condition():
                return
            clock = QElapsedTimer()
            clock.start()
            loop = QEventLoop()
            timed_out = []

            def check() -> None:
                if condition():
                    loop.quit()
                elif clock.elapsed() > timeout_s * 1000:
                    timed_out.append(True)
                    loop.quit()

            timer = QTimer()
            timer.setInterval(100)
            timer.timeout.connect(check)
            timer.start()
            loop.exec()
            timer.stop()
            if timed_out:
                raise SystemExit("the window did not get there in time")

        # Ready as a user finds it: the background start-up (torch, devices, thumbnails)
        # done, then a quiet second before Train is pressed.
        wait(lambda: win.train_button.isEnabled() and "devices" in win.info
             and win.training_view is not None and not watch.running(), 120)
        quiet_until = time.perf_counter() + 1.0
        wait(lambda: time.perf_counter() > quiet_until, 5)
        win.settings.set_values({"epochs": epochs})
        monitor = EventLoopMonitor()
        if calls is not None:
            monitor.start()
        cpu0 = time.process_time()
        t0 = reached["pressed"] = time.perf_counter()
        start = len(calls.calls) if calls is not None else 0
        win.start_training()

        def done() -> bool:
            if stop_at_dice and "dice" in reached and not win.run.stopping:
                win.stop_training()
            return win.result is not None and not win.training()

        wait(done, 1800)
        wall = time.perf_counter() - t0
        gui_cpu = time.process_time() - cpu0
        monitor.stop()
        result = win.result
        win.close()
        app.processEvents()
    finally:
        watch.__exit__(None, None, None)
        child.ProcessTrainWorker._event = original
    if type(result).__name__ != "RunFinished":
        raise SystemExit(f"the window's training failed: {getattr(result, 'message', result)}")
    worst = sorted(zip(monitor.gaps_ms, monitor.tick_times, strict=True), reverse=True)[:5]
    recorded = calls.calls[start:] if calls is not None else []
    stalls = []
    for gap_ms, end in worst:
        begin = end - gap_ms / 1000
        during = sorted({f"{n} {1000 * (b - a):.0f} ms" for n, a, b in recorded
                         if a < end and b > begin and b - a > 0.005})
        stalls.append({"gap_ms": round(gap_ms, 1), "calls": during,
                       "at_s": round(begin - reached["pressed"], 2)})
    totals: dict[str, float] = {}
    for n, a, b in recorded:
        totals[n] = totals.get(n, 0.0) + (b - a)
    return {"images_per_s": clock.images_per_s, "wall_s": wall, "steps": clock.last_step,
            "gui_seconds_by_call": dict(sorted(totals.items(), key=lambda kv: -kv[1])),
            "gui_cpu_s": gui_cpu,
            "gui_cpu_fraction": gui_cpu / wall, "seconds_to_dice": reached.get("dice"), "epoch_of_dice": reached.get("epoch"),
            "worst_stall_ms": monitor.worst_ms, "p99_ms": monitor.percentile(99),
            "ticks": len(monitor.gaps_ms), "stalls": stalls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", type=int, default=10, help="first steps left out of images/s")
    ap.add_argument("--time-to-dice", type=float, metavar="D", help="instead: one window run "
                    "with the default epochs, timed from pressing Train to the first validation "
                    "Dice >= D (then stopped)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LORAGUI_CONFIG_DIR"] = str(Path(tmp) / "config")  # no user preferences
        os.environ["LORAGUI_DATA_DIR"] = str(Path(tmp) / "data")  # runs go here
        from pyqtgraph import AxisItem, GraphicsView, ImageItem, PlotCurveItem
        from PySide6.QtWidgets import QApplication

        from loragui.gui import logview, plots, prefs, previews, results, training, window

        app = QApplication.instance() or QApplication(["loragui"])
        calls = CallTimes()
        # The public methods the window's work passes through (and pyqtgraph's paints).
        for owner, names in ((training.TrainingRun, ("drain", "start", "__init__")),
                             (training.TrainingView, ("reset",)),
                             (previews.PredictionPreviews, ("prepare", "show_previews")),
                             (logview.LogView, ("add",)), (prefs.Preferences, ("save",)),
                             (window.MainWindow, ("start_training", "stop_training", "log")),
                             (plots.TrainingCurves, ("redraw",)),
                             (results.ResultsPanel, ("show_running", "show_result")),
                             (GraphicsView, ("paintEvent",)), (AxisItem, ("paint",)),
                             (PlotCurveItem, ("paint",)), (ImageItem, ("paint",))):
            for name in names:
                if hasattr(owner, name):
                    calls.wrap(owner, name)
        if args.time_to_dice:
            from loragui.engine.config import TrainConfig

            r = window_run(app, TrainConfig().epochs, args.skip, calls, args.time_to_dice, True)
            print(f"window, sample data, default settings: validation Dice >= "
                  f"{args.time_to_dice} after {r['seconds_to_dice']:.1f} s from pressing Train "
                  f"(epoch {r['epoch_of_dice']}); {r['images_per_s']:.2f} images/s; worst "
                  f"event-loop stall {r['worst_stall_ms']:.0f} ms")
            for s in r["stalls"]:
                print(f"    stall {s['gap_ms']:.0f} ms at {s['at_s']:.1f} s during: "
                      f"{', '.join(s['calls']) or '-'}")
            return 0
        rows: dict[str, list[dict]] = {"command line": [], "window": []}

        def cli(i: int) -> None:
            r = cli_run(args.epochs, Path(tmp) / f"cli{i}", args.skip)
            rows["command line"].append(r)
            print(f"command line {i + 1}: {r['images_per_s']:.2f} images/s, {r['wall_s']:.1f} s",
                  flush=True)

        # Command line and window in turns, the command line first and last: each window
        # run is compared with the command-line runs just before and after it, so a
        # machine whose speed drifts (clocks, neighbours) does not favour either.
        for i in range(args.repeats):
            cli(i)
            r = window_run(app, args.epochs, args.skip, None)  # nothing added to the window
            rows["window"].append(r)
            print(f"window {i + 1}: {r['images_per_s']:.2f} images/s, {r['wall_s']:.1f} s; "
                  f"the window's process used {100 * r['gui_cpu_fraction']:.1f} % of a core",
                  flush=True)
        if args.repeats:
            cli(args.repeats)
        # The event loop's pauses, in one more run from the window (the 10 ms timer that
        # measures them costs the window some CPU of its own, so it is not in the runs above).
        r = window_run(app, args.epochs, args.skip, calls)
        rows["window, event loop watched"] = [r]
        print(f"window, event loop watched: {r['images_per_s']:.2f} images/s; worst event-loop "
              f"stall {r['worst_stall_ms']:.0f} ms from pressing Train to the end, 99th "
              f"percentile {r['p99_ms']:.0f} ms over {r['ticks']} ticks")
        for s in r["stalls"]:
            print(f"    stall {s['gap_ms']:.0f} ms at {s['at_s']:.1f} s during: "
                  f"{', '.join(s['calls']) or '-'}")
        print(f"    the window's process: {r['gui_cpu_s']:.2f} s of CPU; time in (nested) calls: "
              + ", ".join(f"{n} {t:.2f} s" for n, t in list(r["gui_seconds_by_call"].items())[:8]))
    if not args.repeats:
        return 0
    cli_ips = [r["images_per_s"] for r in rows["command line"]]
    win_ips = [r["images_per_s"] for r in rows["window"]]
    ratios = [w / ((cli_ips[i] + cli_ips[i + 1]) / 2) for i, w in enumerate(win_ips)]
    print("\n| run | training images/s (median) | worst event-loop stall |")
    print("|---|---|---|")
    print(f"| command line | {statistics.median(cli_ips):.2f} | - |")
    worst = rows["window, event loop watched"][0]["worst_stall_ms"]
    print(f"| window | {statistics.median(win_ips):.2f} | {worst:.0f} ms |")
    print(f"\nwindow / command line, each window run against the command-line runs around "
          f"it: median {100 * statistics.median(ratios):.1f} % (runs: "
          + ", ".join(f"{100 * x:.1f}" for x in ratios) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
