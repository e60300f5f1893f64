"""The window on small and large screens, at scale factors 1, 1.5 and 2: it opens
inside the available screen, its minimum fits the screen, and nothing that
matters is cut (each case in a subprocess: Qt fixes the screen at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QPointF

ROOT = Path(__file__).resolve().parents[2]


def probe(width: int, height: int, scale: float, tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), LORAGUI_CONFIG_DIR=str(tmp_path / "config"),
               LORAGUI_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-m", "tests.gui.layout_probe", str(width),
                           str(height), str(scale)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("width,height,scale", [
    (1024, 640, 1), (1280, 720, 1), (1920, 1080, 1), (1600, 1000, 1.5), (1600, 1000, 2)])
def test_the_window_fits_the_screen(width, height, scale, tmp_path):
    seen = probe(width, height, scale, tmp_path)
    room_w, room_h = seen["room"]
    assert (room_w, room_h) == (round(width / scale), round(height / scale))
    assert seen["opened_inside"], seen  # it opens at a size the screen holds
    min_w, min_h = seen["minimum"]
    assert min_w <= room_w and min_h <= room_h, seen  # and can be made smaller still
    # Nothing is cut at the sides; the columns scroll up and down where the screen
    # is short, and from 1024x640 at scale 1 everything is in sight at once.
    assert seen["cut_across"] == [], seen
    viewport, content = seen["left"]  # the data, the report and the settings: never sideways
    assert content <= viewport, seen
    if scale == 1:
        assert seen["cut"] == [], seen
    assert seen["reason_width"] >= 160  # the status reads as words, not letters


def test_the_base_model_is_named_in_the_legend_away_from_its_line(qtbot):
    from loragui.gui.plots import TrainingCurves

    curves = TrainingCurves()
    qtbot.addWidget(curves)
    curves.resize(420, 220)
    curves.show()
    qtbot.waitExposed(curves)
    for base in (0.05, 0.5, 0.9):
        curves.reset(100, 10)
        curves.add_epoch(0, 0, 0.6, base, None, None, None)
        curves.redraw()
        qtbot.wait(50)
        names = [label.text for _, label in curves.dice_legend.items]
        assert names.count(f"base model {base:.2f}") == 1, names
        legend = curves.dice_legend.sceneBoundingRect()
        line_y = curves.dice_plot.getViewBox().mapViewToScene(
            QPointF(0, base)).y()
        if base != 0.5:  # (a low or a high line: the legend takes the other corner)
            assert not (legend.top() <= line_y <= legend.bottom()), (base, legend, line_y)
    curves.reset(100, 10)  # a new run: no base model yet
    assert not any(label.text.startswith("base model") for _, label in curves.dice_legend.items)

