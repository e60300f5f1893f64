"""loragui never touches the network at run time: no hub downloads, no telemetry.

Training, evaluating and predicting run with every way of opening a socket
replaced by one that records the attempt and fails; an audit hook also sees
sockets opened from C code through Python's socket module. Once in this
process, and once in a fresh ``python`` that runs the command line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loragui.engine.config import TrainConfig
from loragui.engine.events import RunFinished
from loragui.engine.predict import evaluate_folders, predict_folder
from loragui.engine.train import run_training
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base

ROOT = Path(__file__).resolve().parents[1]
_AUDIT = {"on": False, "events": []}


def _audit(event: str, args) -> None:
    if _AUDIT["on"] and (event.startswith("socket.") or event == "urllib.Request"):
        _AUDIT["events"].append((event, repr(args)[:200]))


sys.addaudithook(_audit)  # cannot be removed; records only while a test switches it on


@pytest.fixture
def no_sockets(monkeypatch):
    attempts: list[str] = []

    def refuse(name):
        def fail(*args, **kwargs):
            attempts.append(name)
            raise OSError(f"network access attempted during a test: {name}")
        return fail

    for name in ("connect", "connect_ex", "bind", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex",
                 "create_server"):
        monkeypatch.setattr(socket, name, refuse(name))
    real_init = socket.socket.__init__

    def init(self, *args, **kwargs):
        attempts.append("socket.socket()")
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "__init__", init)
    _AUDIT["events"].clear()
    _AUDIT["on"] = True
    try:
        yield attempts
    finally:
        _AUDIT["on"] = False


def test_train_evaluate_predict_open_no_socket(tmp_path, no_sockets):
    images, masks = make_tiny_dataset(tmp_path / "data", n=4, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors", width=4)
    config = TrainConfig(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                         base=str(base), epochs=2, steps_per_epoch=2, batch_size=2, crop_size=32,
                         device="cpu", rank=2, alpha=4)
    events = list(run_training(config))
    assert isinstance(events[-1], RunFinished), events[-1]
    evaluate_folders(images, masks, base=base, adapter=events[-1].output, device="cpu")
    list(predict_folder(images, tmp_path / "pred", base=base, adapter=events[-1].output,
                        device="cpu"))
    assert len(list((tmp_path / "pred").glob("*.png"))) == 4
    assert no_sockets == [], no_sockets
    assert _AUDIT["events"] == [], _AUDIT["events"]


def test_the_guard_itself_works(no_sockets):
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("example.org", 80), timeout=0.1)
    with socket.socket() as s, pytest.raises(OSError, match="network access attempted"):
        s.connect(("127.0.0.1", 9))
    assert no_sockets == ["create_connection", "socket.socket()", "socket.connect"]
    assert [event for event, _ in _AUDIT["events"]] == ["socket.__new__"]


CHILD = textwrap.dedent("""
    import json, socket, sys
    def hook(event, args):
        if event.startswith("socket.") or event == "urllib.Request":
            sys.stderr.write(f"NETWORK {event} {args!r}\\n")
            sys.stderr.flush()
            import os
            os._exit(97)
    sys.addaudithook(hook)
    from loragui.cli import main
    train, predict = json.loads(sys.argv[1])
    status = main(train) or main(predict)
    sys.exit(status)
""")


def test_command_line_opens_no_socket(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=4, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors", width=4)
    run = tmp_path / "run"
    train = ["train", "--images", images, "--masks", masks, "--out", run, "--base", base,
             "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32",
             "--device", "cpu"]
    predict = ["predict", "--images", images, "--out", tmp_path / "pred", "--base", base,
               "--adapter", run / "adapter", "--device", "cpu"]
    # no proxy, no hub: a download attempt would fail fast rather than hang
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", no_proxy="*",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    argv = json.dumps([list(map(str, train)), list(map(str, predict))])
    proc = subprocess.run([sys.executable, "-c", CHILD, argv], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert "NETWORK" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((tmp_path / "pred").glob("*.png"))) == 4
