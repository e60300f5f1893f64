"""Open the real window on a screen of a given size and scale factor, with the
training view, four previews and the results panel shown, and print as JSON what
fits and what is cut (run in a subprocess by test_gui_layout.py: the screen and
the scale factor are fixed when Qt starts).

    python -m tests.gui.layout_probe WIDTH HEIGHT SCALE
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np


def main(width: int, height: int, scale: float) -> dict:
    config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"screens": [{"name": "screen", "x": 0, "y": 0, "width": width,
                            "height": height, "logicalDpi": 96, "dpr": 1}]}, config)
    config.close()
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={config.name}"
    os.environ["QT_SCALE_FACTOR"] = str(scale)
    os.environ.setdefault("LORAGUI_CONFIG_DIR", tempfile.mkdtemp())
    os.environ.setdefault("LORAGUI_DATA_DIR", tempfile.mkdtemp())
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    from loragui.engine.events import Preview, RunFinished
    from loragui.gui.window import MainWindow

    win = MainWindow(background=False)
    win.show()
    app.processEvents()
    room = win.screen().availableGeometry()
    opened = win.frameGeometry()
    minimum = win.minimumSizeHint()

    view = win._build_training_view()  # noqa: SLF001 - what the start-up thread does
    win.stack.setCurrentWidget(view)
    rng = np.random.default_rng(0)
    previews = [Preview(f"a-rather-long-file-name-{i:02d}-of-the-validation-set",
                        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                        rng.random((64, 64)) > 0.5, rng.random((64, 64)).astype(np.float32))
                for i in range(4)]
    view.previews.show_previews(previews, 3, 10)
    view.curves.add_epoch(0, 0, 0.5, 0.3, None, None, None)
    win.results.show_result(RunFinished(output="adapter", run_dir="run", steps=10,
                                        best_epoch=3, best_dice=0.8, base_dice=0.3, seconds=5.0))
    for _ in range(5):
        app.processEvents()

    def cut(widget) -> bool:
        """Part of ``widget`` cannot be seen now (clipped by a parent, or hidden)."""
        return not widget.isVisible() or widget.visibleRegion().boundingRect() != widget.rect()

    def cut_across(widget) -> bool:
        """Part of ``widget`` is cut at the left or right (the columns scroll only
        up and down)."""
        seen = widget.visibleRegion().boundingRect()
        return not widget.isVisible() or (not seen.isEmpty() and seen.width() != widget.width())

    widgets = {"train button": win.train_button, "reason": win.reason,
               "predictions heading": view.previews.title, "legend": view.previews.legend,
               "results text": win.results.text}
    for button in win.results.findChildren(type(win.results.export_button)):
        if button.isVisibleTo(win):
            widgets[button.text()] = button
    screen_rect = view.previews.view.viewport().rect()
    cells, cells_across = [], []
    for i, (label, box, _) in enumerate(view.previews._items):  # noqa: SLF001
        for what, item in (("caption", label), ("image", box)):
            rect = view.previews.view.mapFromScene(item.sceneBoundingRect()).boundingRect()
            if not screen_rect.contains(rect):
                cells.append(f"preview {i + 1} {what}")
            if rect.left() < screen_rect.left() or rect.right() > screen_rect.right():
                cells_across.append(f"preview {i + 1} {what}")
    return {
        "room": [room.width(), room.height()],
        "opened": [opened.x(), opened.y(), opened.width(), opened.height()],
        "opened_inside": room.contains(opened),
        "minimum": [minimum.width(), minimum.height()],
        "cut": sorted(name for name, w in widgets.items() if cut(w)) + cells,
        "cut_across": sorted(name for name, w in widgets.items() if cut_across(w)) + cells_across,
        "reason_width": win.reason.width(), "splitter": win.splitter.sizes(),
        "right": [win.right_scroll.viewport().width(), win.right_scroll.widget().width()],
        "left": [win.left_scroll.viewport().width(), win.left_scroll.widget().width()],
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))))
