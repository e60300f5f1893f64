"""A preferences file that is damaged, or wrong-typed field by field, never keeps the
window from opening: each unusable field falls back to its default, with a note in
the window's log; the usable fields are kept."""

from __future__ import annotations

import json

from loragui.engine.config import OPTIONS_BY_NAME
from loragui.gui.prefs import Preferences


def _write(text: str) -> None:
    path = Preferences.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_wrong_typed_fields_fall_back_to_their_defaults_with_a_note_each():
    _write(json.dumps({"images_dir": 123, "browse_dir": "/somewhere", "export_kind": None,
                       "train": {"rank": 1e300, "epochs": 7, "lr": "fast", "alpha": -1,
                                 "device": "cpu", "batch_size": True}}))
    prefs = Preferences.load()
    assert prefs.images_dir == "" and prefs.export_kind == "peft"
    assert prefs.browse_dir == "/somewhere"
    assert prefs.train == {"epochs": 7, "device": "cpu"}
    joined = "\n".join(prefs.notes)
    for name in ("images_dir", "export_kind", "rank", "lr", "alpha", "batch_size"):
        assert name in joined, (name, joined)
    assert len(prefs.notes) == 6


def test_a_damaged_file_gives_the_defaults_with_a_note():
    for text in ("{not json", "[1, 2]", "[" * 100000):
        _write(text)
        prefs = Preferences.load()
        assert prefs == Preferences() and len(prefs.notes) == 1, text


def test_the_window_opens_on_wrong_typed_preferences_and_says_what_it_reset(qtbot):
    from loragui.gui.window import MainWindow

    _write(json.dumps({"images_dir": 123, "train": {"rank": 1e300, "epochs": 3}}))
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.settings.epochs.value() == 3
    assert win.settings.rank.value() == OPTIONS_BY_NAME["rank"].default
    log = win.log_view.toPlainText()
    assert "images_dir" in log and "rank" in log


def test_the_window_controls_offer_the_declared_ranges(qtbot):
    from loragui.gui.settings import SettingsPanel

    panel = SettingsPanel()
    qtbot.addWidget(panel)
    for name in ("rank", "epochs", "batch_size", "crop_size"):
        bounds = OPTIONS_BY_NAME[name].bounds
        spin = getattr(panel, name)
        assert (spin.minimum(), spin.maximum()) == (bounds.low, bounds.high), name
    assert panel.alpha.minimum() > 0 and panel.lr.minimum() > 0
    assert panel.lr.maximum() == OPTIONS_BY_NAME["lr"].bounds.high


def test_the_data_panel_invert_checkbox_reaches_the_training_settings(window, monkeypatch):
    started = []
    monkeypatch.setattr(window, "train_blocker", lambda: None)
    monkeypatch.setattr(window, "_start_run", started.append)
    window.data.invert_masks.setChecked(True)
    window.start_training()
    assert started and started[0].invert_masks is True
    window.data.invert_masks.setChecked(False)
    window.start_training()
    assert started[1].invert_masks is False
