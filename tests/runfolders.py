"""Run folders as loragui writes them, made without training: for the runs list's tests
and benchmark. Records and metrics go through the engine's own writers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loragui.engine.class_metrics import class_column
from loragui.engine.config import TrainConfig
from loragui.engine.maskkinds import MaskClass, MaskMeaning
from loragui.engine.runrecord import (
    ADAPTER,
    CHECKPOINT,
    RUN_JSON,
    this_process,
    write_metrics,
    write_run_record,
)


def make_run(root: Path, name: str, *, status: str = "finished", images: str = "",
             created: str = "2026-11-30T10:00:00", adapter: bool = True,
             checkpoint: bool = False, steps: int = 20, total_steps: int = 20,
             dice: tuple[float, ...] = (0.5, 0.7, 0.8), process: dict | None = None,
             classes: dict[str, str] | None = None, **settings) -> Path:
    """A run folder ``root/name``: run.json with ``status`` and ``settings`` (TrainConfig
    fields), metrics.csv with one epoch per value of ``dice``, the adapter folder unless
    ``adapter`` is False, a checkpoint file when ``checkpoint``. ``classes`` (name ->
    colour, background first): a run of several classes, class ``i``'s Dice that of its
    epoch less ``i / 20`` (epoch 0, the base model's, Dice 0.1)."""
    run = root / name
    run.mkdir(parents=True)
    images = images or str(root / "histology" / "images")
    config = TrainConfig(images=images, masks=str(Path(images).parent / "masks"), out=str(run),
                         **settings).to_dict()
    history = [{"epoch": i + 1, "step": (i + 1) * steps // len(dice), "train_loss": 1.0 / (i + 2),
                "val_loss": 1.2 / (i + 2), "dice": d, "iou": d * 0.8, "dice_pooled": d,
                "iou_pooled": d * 0.8, "lr": 0.005, "seconds": 1.0}
               for i, d in enumerate(dice)]
    base_row = {"epoch": 0, "step": 0, "train_loss": None, "val_loss": 0.9, "dice": 0.1,
                "iou": 0.08, "dice_pooled": 0.1, "iou_pooled": 0.08, "lr": 0.005,
                "seconds": 1.0}
    for row in (base_row, *history):
        for i, class_name in enumerate(classes or {}):
            row[class_column(class_name)] = round(row["dice"] - i / 20, 3)
    write_metrics(run, history)
    best = max(history, key=lambda r: r["dice"])
    record = {
        "loragui_version": "0.1", "created": created, "config": config, "device": "cpu",
        "mode": "lora", "status": status, "error": "disk full" if status == "failed" else None,
        "stopped": status == "stopped", "steps": steps, "total_steps": total_steps,
        "seconds": 75.0, "base_dice": 0.1, "best_epoch": best["epoch"], "best": best,
        "final": history[-1], "base_validation": base_row,
        "dataset": {"pairs": 40, "train": 32, "val": 8, "images": "images", "masks": "masks"},
        "masks": None if classes is None else MaskMeaning("classes", tuple(
            MaskClass(i, n, c) for i, (n, c) in enumerate(classes.items()))).to_dict(),
    }
    if status == "running":
        record["process"] = process or this_process()
    write_run_record(run, record)
    if adapter:
        (run / ADAPTER).mkdir()
        (run / ADAPTER / "adapter_model.safetensors").write_bytes(b"not read by the list")
    if checkpoint:
        (run / CHECKPOINT).write_bytes(b"not read by the list")
    return run


def make_history(root: Path) -> dict[str, Path]:
    """One run folder of each kind the list tells apart, by kind."""
    runs = {
        "finished": make_run(root, "2026-11-30_10-00-00", rank=8),
        "stopped": make_run(root, "2026-11-30_11-00-00", status="stopped",
                            created="2026-11-30T11:00:00", steps=20, total_steps=40),
        "failed": make_run(root, "2026-11-30_12-00-00", status="failed",
                           created="2026-11-30T12:00:00", lr=0.001),
        "resumable": make_run(root, "2026-11-30_13-00-00", status="stopped", checkpoint=True,
                              created="2026-11-30T13:00:00", steps=10, total_steps=40),
        "missing": make_run(root, "2026-11-30_14-00-00", adapter=False,
                            created="2026-11-30T14:00:00"),
        "running": make_run(root, "2026-11-30_15-00-00", status="running",
                            created="2026-11-30T15:00:00"),
        "killed": make_run(root, "2026-11-30_16-00-00", status="running", checkpoint=True,
                           created="2026-11-30T16:00:00",
                           process={"pid": _dead_pid(), "host": this_process()["host"]}),
    }
    damaged = root / "2026-11-30_17-00-00"
    damaged.mkdir()
    (damaged / RUN_JSON).write_text('{"loragui_version": "0.1", "config": {"ima')
    runs["damaged"] = damaged
    newer = make_run(root, "2026-11-30_18-00-00", created="2026-11-30T18:00:00")
    text = (newer / RUN_JSON).read_text().replace('"record_version": 1', '"record_version": 99')
    (newer / RUN_JSON).write_text(text)
    runs["newer"] = newer
    return runs


def _dead_pid() -> int:
    """The id of a process that has ended (a child that exited and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
