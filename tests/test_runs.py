"""The history of runs: listing, comparing and acting on run folders (engine and command
line), from run.json alone."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from loragui import cli
from loragui.engine.errors import LoraGuiError
from loragui.engine.events import RunStarted
from loragui.engine.runcompare import compare_settings, read_curves
from loragui.engine.runrecord import NAME_FILE, RUN_JSON
from loragui.engine.runs import (
    command_line,
    delete_run,
    list_runs,
    read_run,
    rename_run,
    train_again_config,
)
from tests.runfolders import make_history, make_run

EXPECTED = {"finished": "finished", "stopped": "stopped", "failed": "failed",
            "resumable": "resumable", "missing": "finished", "running": "running",
            "killed": "resumable", "damaged": "damaged", "newer": "newer"}


@pytest.fixture
def history(tmp_path):
    return make_history(tmp_path / "runs")


def test_every_kind_of_run_folder_is_listed_with_its_status(history):
    rows = {Path(r.path): r for r in list_runs(history["finished"].parent)}
    assert {kind: rows[path].status for kind, path in history.items()} == EXPECTED


def test_the_list_is_newest_first(history):
    dated = [r.date for r in list_runs(history["finished"].parent) if r.config]
    assert dated == sorted(dated, reverse=True)


def test_a_row_says_what_is_wrong_with_its_folder(history):
    assert "adapter (adapter/) is missing" in read_run(history["missing"]).problem
    assert "damaged or was half-written" in read_run(history["damaged"]).problem
    assert "newer loragui" in read_run(history["newer"]).problem
    assert "killed or crashed" in read_run(history["killed"]).problem
    assert read_run(history["failed"]).problem == "disk full"
    assert read_run(history["finished"]).problem == ""


def test_a_row_holds_the_data_base_settings_and_dice(history):
    row = read_run(history["finished"])
    assert row.name == "histology 2026-11-30 10:00"  # the data folder's parent and the date
    assert (row.pairs, row.base, row.device, row.seconds) == (40, "bundled", "cpu", 75.0)
    assert row.changed == {"rank": 8}  # only what differs from the defaults
    assert (row.base_dice, row.best_dice, row.best_epoch) == (0.1, 0.8, 3)
    assert row.output.endswith("adapter")


def test_a_folder_without_run_files_is_not_a_run(history, tmp_path):
    (history["finished"].parent / "notes").mkdir()
    assert all(Path(r.path).name != "notes" for r in list_runs(history["finished"].parent))
    assert list_runs(tmp_path / "nowhere") == []


def test_a_name_given_to_a_run_is_kept_beside_its_record(history):
    rename_run(history["stopped"], "  rank 4,  more masks ")
    assert read_run(history["stopped"]).name == "rank 4, more masks"
    rename_run(history["stopped"], "")
    assert read_run(history["stopped"]).name == "histology 2026-11-30 11:00"
    assert not (history["stopped"] / NAME_FILE).exists()


def test_compare_marks_the_settings_that_differ(history):
    table = {s.name: s for s in compare_settings(
        [read_run(history["finished"]), read_run(history["failed"]),
         read_run(history["damaged"])])}
    assert table["rank"].values == [8, 4, None] and table["rank"].differs
    assert table["lr"].differs and not table["batch_size"].differs
    assert not table["device used"].differs


def test_curves_come_from_metrics_csv(history):
    curves = read_curves(history["finished"])
    assert curves.epochs == [1.0, 2.0, 3.0] and curves.dice == [0.5, 0.7, 0.8]
    assert curves.train_loss[0] == 0.5 and len(curves.val_loss) == 3
    assert read_curves(history["damaged"]).epochs == []


def test_the_curves_of_a_class_run_carry_each_class_from_the_base_models_epoch_on(tmp_path):
    run = make_run(tmp_path, "classes", dice=(0.5, 0.7),
                   classes={"background": "#000000", "nucleus": "#ff00ff", "membrane": "#00ff00"})
    curves = read_curves(run, base=True)
    assert curves.epochs == [0.0, 1.0, 2.0] and curves.dice == [0.1, 0.5, 0.7]
    assert curves.classes == {"background": [0.1, 0.5, 0.7], "nucleus": [0.05, 0.45, 0.65],
                              "membrane": [0.0, 0.4, 0.6]}
    assert curves.colours == ["#000000", "#ff00ff", "#00ff00"]
    assert read_curves(run).epochs == [1.0, 2.0]  # metrics.csv's epochs alone
    assert read_curves(run).classes["membrane"] == [0.4, 0.6]


def test_a_run_recorded_without_its_classes_gives_plain_curves(tmp_path):
    run = make_run(tmp_path, "older", dice=(0.5, 0.7), classes={"background": "#000000",
                                                                 "nucleus": "#ff00ff"})
    record = json.loads((run / RUN_JSON).read_text())
    del record["masks"], record["base_validation"]  # as an older loragui wrote it
    (run / RUN_JSON).write_text(json.dumps(record))
    curves = read_curves(run, base=True)
    assert curves.classes == {} and curves.colours == []
    assert curves.epochs == [0.0, 1.0, 2.0] and curves.dice == [0.1, 0.5, 0.7]
    record["masks"] = {"hold": "classes", "classes": "not a list"}  # another version's
    (run / RUN_JSON).write_text(json.dumps(record))
    assert read_curves(run, base=True).classes == {}
    (run / RUN_JSON).write_text("{ half")  # unreadable: metrics.csv's epochs still
    assert read_curves(run, base=True).epochs == [1.0, 2.0]


def test_train_again_keeps_the_settings_and_the_data_folders_that_exist(history, tmp_path):
    row = read_run(history["failed"])
    config = train_again_config(row)
    assert config.lr == 0.001 and config.out == "" and not config.resume
    assert config.images == ""  # the generated data folder does not exist
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    make_run(tmp_path / "more", "run", images=str(images), rank=16)
    again = train_again_config(read_run(tmp_path / "more" / "run"))
    assert again.images == str(images) and again.rank == 16
    assert "--rank 16" in command_line(read_run(tmp_path / "more" / "run"))


def test_delete_removes_that_run_folder_only(history):
    root = history["finished"].parent
    before = {p.name for p in root.iterdir()}
    assert delete_run(history["stopped"]) == []
    assert {p.name for p in root.iterdir()} == before - {history["stopped"].name}


def test_delete_keeps_files_loragui_did_not_write(history):
    (history["finished"] / "my notes.txt").write_text("keep me")
    assert delete_run(history["finished"]) == ["my notes.txt"]
    assert [p.name for p in history["finished"].iterdir()] == ["my notes.txt"]


def test_a_running_run_is_not_deleted(history):
    with pytest.raises(LoraGuiError, match="is training"):
        delete_run(history["running"])
    assert (history["running"] / RUN_JSON).is_file()


def test_a_training_run_is_listed_as_running_then_finished(tmp_path):
    from loragui.engine.train import run_training
    from tests.tiny import tiny_config

    config = tiny_config(tmp_path, epochs=2)
    seen = []
    for event in run_training(config, threading.Event()):
        if isinstance(event, RunStarted):
            seen.append(read_run(config.out).status)
    row = read_run(config.out)
    assert seen == ["running"] and row.status == "finished" and row.problem == ""
    assert row.pairs == 8 and row.best_dice is not None and row.base_dice is not None
    assert row.changed["epochs"] == 2 and row.name.startswith("data ")


# ------------------------------------------------------------------ the command line

def test_the_command_line_lists_every_run(history, capsys):
    assert cli.main(["runs", "--json", "--dir", str(history["finished"].parent)]) == 0
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert {kind: rows[path.name]["status"] for kind, path in history.items()} == EXPECTED
    assert cli.main(["runs", "--dir", str(history["finished"].parent)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "date", "status"]
    assert "histology 2026-11-30 10:00" in out and "rank=8" in out
    assert "newer loragui" in out  # what is wrong, under the table


def test_the_command_line_compares_runs_side_by_side(history, capsys):
    root = history["finished"].parent
    assert cli.main(["runs", "compare", history["finished"].name, str(history["failed"]),
                     "--dir", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("* rank") and " 8 " in line for line in lines)
    assert any(line.startswith("  batch_size") for line in lines)
    assert cli.main(["runs", "--dir", str(root), "compare", history["finished"].name,
                     history["failed"].name, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in data["runs"]] == ["finished", "failed"]
    assert {s["name"] for s in data["settings"] if s["differs"]} == {"rank", "lr"}


def test_the_command_line_refuses_what_is_not_a_run(history, capsys):
    root = history["finished"].parent
    assert cli.main(["runs", "compare", "nope", history["failed"].name, "--dir", str(root)]) == 2
    assert "nope is not a run folder" in capsys.readouterr().err
    assert cli.main(["runs", "compare", history["failed"].name, "--dir", str(root)]) == 2
    assert "two runs or more" in capsys.readouterr().err
    assert cli.main(["runs", "--dir", str(root / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_listing_imports_no_torch(history):
    import subprocess

    code = ("import sys; from loragui.engine.runs import list_runs; "
            f"rows = list_runs({str(history['finished'].parent)!r}); "
            "print(len(rows), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(len(history)), "False"]
