"""Shared fixtures. Qt runs offscreen; settings and runs go to a temporary folder."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The tests train tiny models: one thread avoids oneDNN's thread spin-up costing more than the
# work (subprocesses inherit it too).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("LORAGUI_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("LORAGUI_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("LORAGUI_LOG_DIR", str(root / "logs"))


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """The messy folder (tests/messy.py) and its pairing report: every case a scan meets."""
    from loragui.engine.pairing import pair_folders
    from tests.messy import make_messy_dataset

    root = tmp_path_factory.mktemp("messy")
    expected = make_messy_dataset(root)
    return expected, pair_folders(expected.images_dir, expected.masks_dir)
