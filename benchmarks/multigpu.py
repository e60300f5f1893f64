"""Several GPUs against one: ``loragui train --devices`` against ``--device``.

Runs the same ``loragui train`` command twice, as a user would, on the same data,
split, seed, step budget and batch per GPU: once on one device, once data-parallel
over ``--devices``. Each run's event stream (``--events jsonl``) is read line by
line and timed as it arrives, which gives

* training images/s: crops per second over the steps, leaving out the first
  ``--skip`` steps (start-up, cuDNN's algorithm search) and every gap between two
  steps that held a validation or a log message (rank 0 validates alone);
* wall time from start to the end, validation and writing the adapter included;
* the validation Dice (mean per image) of the final adapter and of the best one,
  from the run's ``run.json``.

and prints a table with the ratio of the two throughputs. Usage (two GPUs):

    python benchmarks/multigpu.py --base resources/base/loragui-base-medium.safetensors \\
        --devices cuda:0,cuda:1 --steps 1500 --batch-size 16

``--devices cpu,cpu --device cpu`` runs the same comparison with two CPU processes
(gloo), to try the script without GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, data_root  # noqa: E402
from loragui.engine.runrecord import read_run_record  # noqa: E402


class StepClock:
    """Training images/s from step events timed as they arrive: the gaps between
    consecutive steps, leaving out the first ``skip`` steps and any gap that held
    another event (a validation, a log line)."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.batch = 0  # crops per optimiser step (all processes)
        self.images = 0
        self.seconds = 0.0
        self.last_step = 0
        self._last_time: float | None = None
        self._interrupted = False
        self.started: dict = {}
        self.finished: dict | None = None
        self.failed: dict | None = None

    def feed(self, event: dict, now: float) -> None:
        kind = event.get("event")
        if kind == "RunStarted":
            self.started = event
            self.batch = event.get("effective_batch_size") or event.get("batch_size") or 0
        elif kind == "StepEvent":
            step = event["step"]
            if self._last_time is not None and not self._interrupted \
                    and step == self.last_step + 1 and step > self.skip:
                self.images += self.batch
                self.seconds += now - self._last_time
            self.last_step, self._last_time, self._interrupted = step, now, False
        else:
            self._interrupted = True
            if kind == "RunFinished":
                self.finished = event
            elif kind == "RunFailed":
                self.failed = event

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else float("nan")


def run_timed(cmd: list[str], skip: int) -> tuple[StepClock, int, float]:
    """Run a ``loragui train --events jsonl`` command, timing its events as they arrive:
    (the clock, the exit status, wall seconds)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", NCCL_NVLS_ENABLE="0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    clock = StepClock(skip)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter()
        try:
            clock.feed(json.loads(line), now)
        except ValueError:
            continue
    return clock, proc.wait(), time.perf_counter() - t0


def run_once(cmd: list[str], skip: int) -> dict:
    """One training run: its throughput, times and validation Dice."""
    clock, returncode, wall = run_timed(cmd, skip)
    started, finished, failed = clock.started, clock.finished, clock.failed
    if failed or finished is None or returncode:
        raise SystemExit(f"run failed (exit {returncode}): "
                         f"{(failed or {}).get('message', 'no result')}\n{' '.join(cmd)}")
    run = read_run_record(finished["run_dir"])
    return {
        "world_size": started.get("world_size", 1),
        "batch_per_process": started.get("batch_size"),
        "effective_batch": started.get("effective_batch_size"),
        "peak_lr": started.get("peak_lr"),
        "steps": run["steps"],
        "images_per_s": clock.images_per_s,
        "wall_s": wall,
        "train_s": run["seconds"],
        "dice_final": run["final"]["dice"],
        "dice_best": (run.get("best") or run["final"])["dice"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=None, help="base model (default: the bundled one)")
    ap.add_argument("--domain", default="histology")
    ap.add_argument("--devices", default="cuda:0,cuda:1")
    ap.add_argument("--device", default=None, help="the single device (default: the first of "
                    "--devices)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16, help="per device")
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--val-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=50, help="first steps left out of images/s")
    ap.add_argument("--extra", default="", help="more train options, one string")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()

    root = data_root() / args.domain
    single = args.device or args.devices.split(",")[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, where in (("one device", ["--device", single]),
                             (f"--devices {args.devices}", ["--devices", args.devices])):
            out = Path(tmp) / f"run{len(rows)}"
            cmd = [sys.executable, "-m", "loragui", "train", "--images", str(root / "images"),
                   "--masks", str(root / "masks"), "--out", str(out), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--crop-size", str(args.crop_size),
                   "--val-fraction", str(args.val_fraction), "--seed", str(args.seed),
                   "--events", "jsonl", *where, *args.extra.split()]
            if args.base:
                cmd += ["--base", args.base]
            print("$", " ".join(cmd[1:]), flush=True)
            result = run_once(cmd, args.skip)
            result["label"] = label
            rows.append(result)
            print(json.dumps(result), flush=True)
    one, many = rows
    print(f"\n{args.domain}, {args.steps} steps, batch {args.batch_size} per process, "
          f"crops {args.crop_size}²\n")
    print("| run | processes | effective batch | peak lr | train images/s | wall s | "
          "val Dice final | val Dice best |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['world_size']} | {r['effective_batch']} | {r['peak_lr']:.2e} | "
              f"{r['images_per_s']:.0f} | {r['wall_s']:.1f} | {r['dice_final']:.4f} | "
              f"{r['dice_best']:.4f} |")
    print(f"\nthroughput ratio: {many['images_per_s'] / one['images_per_s']:.2f}× with "
          f"{many['world_size']} processes; Dice difference (final): "
          f"{many['dice_final'] - one['dice_final']:+.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
