"""``loragui --self-test``, as a user runs it after installing: the user's preferences
are left byte-identical."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

from loragui.engine.resources import bundled_sample_dirs


def test_self_test_leaves_the_users_preferences_untouched(tmp_path):
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    prefs = {"epochs": 77, "batch_size": 3, "crop_size": 96, "device": "cpu",
             "images_dir": str(tmp_path / "my-images")}
    (config / "settings.json").write_text(json.dumps(prefs))
    (config / "window.ini").write_text("[General]\ngeometry=@ByteArray(mine)\n")

    def state():
        return {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = state()
    env = dict(os.environ, LORAGUI_CONFIG_DIR=str(config), LORAGUI_DATA_DIR=str(data),
               QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "loragui", "--self-test"], capture_output=True,
                          text=True, env=env, timeout=600)
    if bundled_sample_dirs() is not None:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "self-test: OK" in proc.stdout
    assert state() == before  # nothing changed, nothing added (no runs either)
    assert not data.exists()
