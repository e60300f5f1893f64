"""The base model is checked when chosen, off the GUI thread, and said in plain words."""

from __future__ import annotations

import threading

from tests.gui.helpers import wait_idle


def test_an_unusable_base_is_named_when_chosen_and_train_waits(qtbot, window, dataset, tiny_base,
                                                               tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    from loragui.engine.formats import ADAPTER_FORMAT
    from loragui.gui import basecheck

    threads: list[threading.Thread] = []
    real = basecheck.base_problem
    monkeypatch.setattr(basecheck, "base_problem",
                        lambda path: threads.append(threading.current_thread()) or real(path))
    adapter = tmp_path / "my-adapter.safetensors"
    save_file({"w": torch.zeros(2)}, str(adapter), metadata={"format": ADAPTER_FORMAT})
    damaged = tmp_path / "cut.safetensors"
    damaged.write_bytes(tiny_base.read_bytes()[:-100])
    from safetensors import safe_open

    with safe_open(str(tiny_base), "pt") as f:  # its tensors, but a wider architecture
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata() | {"architecture": '{"width": 8, "depth": 2}'}
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(tensors, str(mismatched), metadata=metadata)
    other = tmp_path / "notes.safetensors"
    other.write_text("not a model")

    window.load_folders(*dataset)
    qtbot.waitUntil(window.train_button.isEnabled, timeout=20000)
    note = window.settings.base_note
    for path, words in ((adapter, "is an adapter (what a training makes), not a base model"),
                        (damaged, "cannot be read as a model: it may be damaged"),
                        (other, "cannot be read as a model"),
                        (mismatched, "cannot be used as a base model: it is damaged")):
        window.settings.set_base(str(path))
        assert not window.train_button.isEnabled()  # while it is checked
        qtbot.waitUntil(note.isVisible, timeout=20000)
        assert words in note.text() and "Choose a base model" in note.text()
        words_alone = note.text().replace(path.name, "")
        for jargon in ("--", "metadata", "header", "format", "tensor"):
            assert jargon not in words_alone
        assert not window.train_button.isEnabled()
        assert window.reason.text() == "The base model cannot be used (see Settings)."
        window.start_training()  # (the shortcut) refuses too
        assert window.run is None
    assert threads and threading.main_thread() not in threads

    window.settings.set_base(str(tiny_base))
    qtbot.waitUntil(window.train_button.isEnabled, timeout=20000)
    assert not note.isVisible()
    window.settings.set_base(str(adapter))  # and again when chosen a second time
    qtbot.waitUntil(note.isVisible, timeout=20000)
    window.settings.set_base(None)  # the bundled model: nothing to wait for
    assert not note.isVisible() and window.base_check.blocker() == ""
    wait_idle(qtbot, window)
