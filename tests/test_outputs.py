"""The one rule for output paths, through the real command line (``cli.main``, and a
subprocess where two processes meet): an output never replaces an input, a user's
file, or (without --overwrite) loragui's own earlier output. Each case checks the
user's files byte-identical afterwards."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from loragui import cli
from loragui.engine.outputs import LOCK, MARKER
from loragui.engine.runlock import RunLock
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base

TRAIN = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "32",
         "--device", "cpu", "--rank", "2", "--previews", "0"]


def hashes(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under ``paths`` (and of the paths that are files)."""
    found = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            found[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


def run_cli(capsys, *args) -> tuple[int, str]:
    """``loragui ARGS`` in this process: (exit status, standard error)."""
    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    return status, capsys.readouterr().err


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A tiny data set, base model and finished run, made once (copy before changing)."""
    root = tmp_path_factory.mktemp("made")
    images, masks = make_tiny_dataset(root / "data", n=6, size=32)
    base = make_tiny_base(root / "base.safetensors", width=4)
    run = root / "run"
    assert cli.main(["train", "--images", str(images), "--masks", str(masks), "--out", str(run),
                     "--base", str(base), *TRAIN]) == 0
    merged = root / "merged.safetensors"
    assert cli.main(["merge", "--adapter", str(run / "adapter"), "--base", str(base),
                     "--out", str(merged)]) == 0
    return {"root": root, "images": images, "masks": masks, "base": base, "run": run,
            "adapter": run / "adapter", "merged": merged}


@pytest.fixture
def world(made, tmp_path):
    """A private copy of everything in ``made``."""
    shutil.copytree(made["root"], tmp_path / "w")
    return {k: tmp_path / "w" / Path(v).relative_to(made["root"]) for k, v in made.items()}


def train_args(w, out, *extra):
    return ["train", "--images", w["images"], "--masks", w["masks"], "--out", out,
            "--base", w["base"], *TRAIN, *extra]


def refused(capsys, before: dict, *args) -> str:
    """Run ``args``, expect one-line refusal (exit 2) and ``before`` unchanged; the message."""
    status, err = run_cli(capsys, *args)
    assert status == 2, err
    assert err.startswith("loragui: error: ") and "Traceback" not in err, err
    assert hashes(*map(Path, before["paths"])) == before["hashes"]
    return err


def snapshot(*paths) -> dict:
    return {"paths": [str(p) for p in paths], "hashes": hashes(*map(Path, paths))}


# -- the reproductions of the issue ---------------------------------------------------------

def test_export_into_a_folder_holding_a_users_file_is_refused(world, capsys, tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "thesis.docx").write_bytes(b"years of work")
    before = snapshot(d, world["run"])
    err = refused(capsys, before, "export", world["adapter"], "--out", d)
    assert "1 file loragui did not write (thesis.docx)" in err
    assert "choose an empty or new folder" in err
    err = refused(capsys, before, "export", world["adapter"], "--out", d, "--overwrite")
    assert "thesis.docx" in err


def test_export_into_its_own_run_folder_is_refused(world, capsys):
    before = snapshot(world["run"])
    err = refused(capsys, before, "export", world["adapter"], "--out", world["run"])
    assert "holds the source" in err
    refused(capsys, before, "export", world["adapter"], "--out", world["adapter"])


def test_predict_into_the_images_or_masks_folder_is_refused(world, capsys):
    before = snapshot(world["images"], world["masks"])
    common = ["--base", world["base"], "--adapter", world["adapter"], "--device", "cpu"]
    err = refused(capsys, before, "predict", "--images", world["images"], "--out",
                  world["images"], *common)
    assert "is the images folder itself" in err
    err = refused(capsys, before, "predict", "--images", world["images"], "--out",
                  world["masks"], *common, "--overwrite")
    assert "6 files loragui did not write" in err


def test_predict_twice_needs_overwrite_and_an_existing_file_is_no_folder(world, capsys, tmp_path):
    out = tmp_path / "pred"
    common = ["--images", world["images"], "--base", world["base"], "--device", "cpu"]
    assert run_cli(capsys, "predict", *common, "--out", out)[0] == 0
    assert (out / MARKER).is_file() and len(list(out.glob("*.png"))) == 6
    before = snapshot(out)
    err = refused(capsys, before, "predict", *common, "--out", out)
    assert "masks loragui predicted earlier" in err and "--overwrite" in err
    assert run_cli(capsys, "predict", *common, "--out", out, "--overwrite")[0] == 0
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    err = refused(capsys, snapshot(file), "predict", *common, "--out", file)
    assert "is a file, not a folder" in err


def test_train_into_a_finished_run_needs_overwrite(world, capsys):
    run = world["run"]
    before = snapshot(run)
    err = refused(capsys, before, *train_args(world, run))
    assert f"{run} holds a finished run (best Dice " in err
    assert "use --resume to continue it, --overwrite to replace it, or another --out" in err
    status, err = run_cli(capsys, *train_args(world, run, "--overwrite"))
    assert status == 0, err
    assert hashes(run / "adapter") != {k: v for k, v in before["hashes"].items()
                                       if "/adapter/" in k}


def test_a_stop_right_after_the_start_never_replaces_the_trained_adapter(world):
    from loragui.engine.config import TrainConfig
    from loragui.engine.events import RunFailed, RunFinished, StepEvent
    from loragui.engine.train import run_training

    run = world["run"]
    before = hashes(run)
    stop = threading.Event()
    stop.set()  # Ctrl-C as the run starts
    config = TrainConfig(images=str(world["images"]), masks=str(world["masks"]), out=str(run),
                         base=str(world["base"]), epochs=1, steps_per_epoch=2, batch_size=2,
                         crop_size=32, device="cpu", rank=2, previews=0)
    events = list(run_training(config, stop))
    assert isinstance(events[-1], RunFailed) and "finished run" in events[-1].message
    assert hashes(run) == before
    # With --overwrite, a stop while loading leaves everything as it was ...
    config.overwrite = True
    events = list(run_training(config, stop))
    assert isinstance(events[-1], RunFailed) and hashes(run / "adapter") == {
        k: v for k, v in before.items() if "/adapter/" in k}
    # ... and a stop after the first step replaces the adapter by a new one, whole.
    stop.clear()
    events = []
    for ev in run_training(config, stop):
        events.append(ev)
        if isinstance(ev, StepEvent):
            stop.set()
    assert isinstance(events[-1], RunFinished) and events[-1].stopped
    from loragui.engine.adapters import load_adapter

    assert load_adapter(run / "adapter").loragui["step"] == 1


def test_a_folder_holding_the_users_own_adapter_is_refused(world, capsys, tmp_path):
    f = tmp_path / "F"
    shutil.copytree(world["adapter"], f / "adapter")
    before = snapshot(f)
    err = refused(capsys, before, *train_args(world, f))
    assert "1 file loragui did not write (adapter/)" in err
    refused(capsys, before, *train_args(world, f, "--overwrite"))


def test_full_training_never_writes_over_its_base(world, capsys, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    shutil.copy(world["base"], out / "model.safetensors")
    before = snapshot(out)
    err = refused(capsys, before, "train", "--images", world["images"], "--masks",
                  world["masks"], "--full", "--base", out / "model.safetensors", "--out", out,
                  *TRAIN, "--overwrite")
    assert "holds the base model (--base)" in err


def test_merge_and_export_never_replace_the_base_or_the_source(world, capsys):
    base, merged, adapter = world["base"], world["merged"], world["adapter"]
    before = snapshot(base, merged, adapter)
    err = refused(capsys, before, "merge", "--adapter", adapter, "--base", base, "--out", base)
    assert "is the base model (--base) itself" in err
    err = refused(capsys, before, "export", adapter, "--single-file", "--out", base,
                  "--overwrite")
    assert "is a base model; it is kept" in err
    err = refused(capsys, before, "export", merged, "--onnx", "--out", merged, "--overwrite")
    assert "is the source itself" in err
    err = refused(capsys, before, "merge", "--adapter", adapter, "--base", base, "--out",
                  world["root"] / "m2.safetensors", "--onnx", base)
    assert "--onnx" in err


def test_export_out_dot_names_what_is_there(world, capsys, monkeypatch, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    err = refused(capsys, snapshot(here), "export", world["adapter"], "--out", ".")
    assert f"{here} holds 1 file loragui did not write (notes.txt)" in err
    monkeypatch.chdir(world["root"])  # the current folder holds the adapter itself
    err = refused(capsys, snapshot(world["root"]), "export", world["adapter"], "--out", ".")
    assert "holds the source" in err


def test_a_merged_model_is_replaced_only_with_overwrite(world, capsys):
    args = ["merge", "--adapter", world["adapter"], "--base", world["base"], "--out",
            world["merged"]]
    err = refused(capsys, snapshot(world["merged"]), *args)
    assert "a merged model loragui wrote earlier" in err and "--overwrite" in err
    assert run_cli(capsys, *args, "--overwrite")[0] == 0


# -- the rule in general: every output flag at every input, at a user's file, at its own ------

def _writers(w, tmp):
    """(name, argument list with OUT for the output, the kind of output OUT may replace)."""
    return [
        ("train", train_args(w, "OUT")),
        ("predict", ["predict", "--images", w["images"], "--out", "OUT", "--base", w["base"],
                     "--adapter", w["adapter"], "--device", "cpu"]),
        ("merge", ["merge", "--adapter", w["adapter"], "--base", w["base"], "--out", "OUT"]),
        ("export", ["export", w["adapter"], "--out", "OUT"]),
        ("export-single", ["export", w["adapter"], "--single-file", "--out", "OUT"]),
        ("export-onnx", ["export", w["merged"], "--onnx", "--out", "OUT"]),
    ]


INPUTS = {"train": ["images", "masks", "base"], "predict": ["images", "base", "adapter"],
          "merge": ["adapter", "base"], "export": ["adapter"], "export-single": ["adapter"],
          "export-onnx": ["merged"]}
CASES = [(cmd, inp) for cmd, inputs in INPUTS.items() for inp in inputs]


@pytest.mark.parametrize(("command", "target"), CASES)
def test_each_output_pointed_at_each_input_is_refused(world, capsys, tmp_path, command, target):
    args = dict(_writers(world, tmp_path))[command]
    before = snapshot(world["root"])
    for overwrite in ([], ["--overwrite"]):
        refused(capsys, before, *[world[target] if a == "OUT" else a for a in args], *overwrite)


@pytest.mark.parametrize("command", list(INPUTS))
def test_each_output_at_a_users_file_is_refused(world, capsys, tmp_path, command):
    args = dict(_writers(world, tmp_path))[command]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"x" * 100)
    file = tmp_path / "mine.safetensors"
    file.write_bytes(b"not a model")
    for target in (folder, file):
        before = snapshot(folder, file)
        refused(capsys, before, *[target if a == "OUT" else a for a in args], "--overwrite")


@pytest.mark.parametrize("command", ["train", "predict", "merge", "export", "export-single"])
def test_each_output_replaces_its_own_earlier_output_only_with_overwrite(world, capsys, tmp_path,
                                                                         command):
    args = dict(_writers(world, tmp_path))[command]
    out = tmp_path / ("out.safetensors" if command in ("merge", "export-single") else "out")
    given = [out if a == "OUT" else a for a in args]
    assert run_cli(capsys, *given)[0] == 0
    refused(capsys, snapshot(out), *given)
    status, err = run_cli(capsys, *given, "--overwrite")
    assert status == 0, err


# -- concurrent runs and a vanishing run folder ----------------------------------------------

def test_a_run_folder_in_use_is_refused_naming_the_process(world, capsys, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    # A second process: flock locks belong to an open file, so a lock held here is held
    # against the child exactly as another training's would be.
    lock = RunLock(out)
    try:
        proc = subprocess.run([sys.executable, "-m", "loragui", *map(str, train_args(world, out))],
                              capture_output=True, text=True, timeout=300)
    finally:
        lock.release()
    assert proc.returncode == 2, proc.stderr
    assert f"{out} is in use by process {__import__('os').getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert run_cli(capsys, *train_args(world, out))[0] == 0  # released: the folder is free


def test_two_trainings_on_one_folder_at_once(world, tmp_path):
    out = tmp_path / "both"
    slow = [a if a != "2" else "400" for a in train_args(world, out)]  # 400 steps per epoch
    first = subprocess.Popen([sys.executable, "-m", "loragui", *map(str, slow)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK).exists() or (out / LOCK).read_text() != str(first.pid):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "loragui",
                                 *map(str, train_args(world, out))],
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert f"is in use by process {first.pid}" in second.stderr
    finally:
        first.kill()
        first.wait()
        first.stderr.close()


def test_a_run_whose_folder_disappears_fails_with_exit_2(world, tmp_path):
    from loragui.cli_train import _print_events
    from loragui.engine.config import TrainConfig
    from loragui.engine.events import RunFailed, RunFinished, StepEvent
    from loragui.engine.train import run_training

    out = tmp_path / "gone"
    config = TrainConfig(images=str(world["images"]), masks=str(world["masks"]), out=str(out),
                         base=str(world["base"]), epochs=2, steps_per_epoch=2, batch_size=2,
                         crop_size=32, device="cpu", rank=2, previews=0)
    seen = []

    def deleting(events):
        for ev in events:
            seen.append(ev)
            if isinstance(ev, StepEvent) and out.exists():
                shutil.rmtree(out)
            yield ev

    status = _print_events(deleting(run_training(config, threading.Event())))
    assert status == 2
    assert not any(isinstance(ev, RunFinished) for ev in seen)
    failed = seen[-1]
    assert isinstance(failed, RunFailed) and "disappeared while training" in failed.message
    assert failed.output is None and not out.exists()
