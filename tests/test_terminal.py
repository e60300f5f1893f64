"""What the command line prints: a closed pipe ends it quietly, an unexpected failure
is one line naming a log of its details, and names are printed with their control
characters escaped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loragui import cli
from loragui.terminal import printable
from tests.tiny import make_tiny_base


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    base = make_tiny_base(tmp_path / "base.safetensors")
    # `loragui info BASE | head -1`, with the reader gone before anything is written.
    proc = subprocess.Popen([sys.executable, "-m", "loragui", "info", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert err == "", err
    head = subprocess.run(f'"{sys.executable}" -m loragui info "{base}" | head -1', shell=True,
                          capture_output=True, text=True, timeout=120)
    assert head.stdout.startswith("kind: ") and head.stderr == "", head.stderr


def test_an_unexpected_failure_is_one_line_and_a_log(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "info", broken)
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("loragui: error: unexpected failure (RuntimeError: a bug); the "
                          "details are in ")
    log = Path(err.split("the details are in ")[1].split("; please report")[0])
    assert log.parent == Path(os.environ["LORAGUI_LOG_DIR"])
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: a bug" in text and "loragui " in text


def test_names_with_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    evil = tmp_path / "evil\x1b]0;pwned\x07\x1b[2J\u202e.safetensors"
    evil.write_bytes(b"not a model")
    assert cli.main(["info", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J\\u202e.safetensors" in err
    assert err.count("\n") == 1


def test_printable_keeps_text_and_line_breaks():
    assert printable("cell ä 1.png\n細胞.png\tok") == "cell ä 1.png\n細胞.png\tok"
    assert printable("a\rb\x9bc\x7f") == "a\\rb\\x9bc\\x7f"
