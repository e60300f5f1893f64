"""Validation you can trust: a small validation set is warned about, run.json lists the
validation stems, ``evaluate --run`` re-scores exactly those, ``--per-image`` writes a row
per image."""

from __future__ import annotations

import csv
import json

import pytest

from loragui import cli
from loragui.engine.dataset import split_indices
from loragui.engine.events import LogEvent, RunFinished
from loragui.engine.pairing import pair_folders
from loragui.engine.runrecord import read_metrics, read_run_record
from loragui.engine.train import run_training
from tests.tiny import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run (8 pairs, 2 held out) and its events."""
    tmp = tmp_path_factory.mktemp("evalrun")
    config = tiny_config(tmp)
    events = list(run_training(config))
    assert isinstance(events[-1], RunFinished), events[-1]
    return config, events


def test_a_validation_set_under_five_images_is_warned_about_with_what_to_do(run):
    _, events = run
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]
    small = [w for w in warnings if "validation image(s)" in w]
    assert len(small) == 1, warnings
    assert "only 2 validation image(s)" in small[0]
    assert "--val-fraction (now 0.25)" in small[0] and "add image/mask pairs" in small[0]


def test_no_warning_with_five_validation_images(tmp_path):
    config = tiny_config(tmp_path, val_fraction=0.6, epochs=1, steps_per_epoch=1)
    warnings = [e.message for e in run_training(config)
                if isinstance(e, LogEvent) and e.level == "warning"]
    assert not [w for w in warnings if "validation image(s)" in w], warnings


def test_run_json_lists_the_validation_stems(run):
    config, _ = run
    record = read_run_record(config.out)
    pairs = pair_folders(config.images, config.masks).pairs
    _, val_idx = split_indices(len(pairs), config.val_fraction, config.seed)
    assert record["validation"] == [pairs[i].stem for i in val_idx]
    assert len(record["validation"]) == record["dataset"]["val"] == 2


def test_evaluate_run_rescores_exactly_the_validation_images(run, tmp_path, capsys):
    config, _ = run
    record = read_run_record(config.out)
    table = tmp_path / "per-image.csv"
    status = cli.main(["evaluate", "--run", config.out, "--device", "cpu", "--json",
                       "--per-image", str(table)])
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)
    assert result["images"] == 2
    # the figure the run recorded for its best adapter, reproduced
    best = next(r for r in read_metrics(config.out) if int(r["epoch"]) == record["best_epoch"])
    assert result["dice"] == pytest.approx(float(best["dice"]), abs=1e-4)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["stem"] for r in rows] == record["validation"]
    assert list(rows[0]) == ["stem", "dice", "iou", "true_pixels", "predicted_pixels", "image",
                             "mask"]
    mean = sum(float(r["dice"]) for r in rows) / len(rows)
    assert mean == pytest.approx(result["dice"], abs=1e-5)
    assert f"wrote {table} (2 rows)" in err


def test_per_image_table_for_folders_has_a_row_per_pair(run, tmp_path, capsys):
    config, _ = run
    table = tmp_path / "all.csv"
    status = cli.main(["evaluate", "--images", config.images, "--masks", config.masks,
                       "--base", config.base, "--device", "cpu", "--per-image", str(table)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.startswith("8 images: Dice ")
    assert len(table.read_text().splitlines()) == 1 + 8


def test_per_image_table_never_replaces_a_file_unasked(run, tmp_path, capsys):
    config, _ = run
    table = tmp_path / "mine.csv"
    table.write_text("the user's own table\n")
    args = ["evaluate", "--images", config.images, "--masks", config.masks, "--base",
            config.base, "--device", "cpu", "--per-image", str(table)]
    assert cli.main(args) == 2
    _, err = capsys.readouterr()
    assert "exists; use --overwrite" in err and len(err.strip().splitlines()) == 1
    assert table.read_text() == "the user's own table\n"
    assert cli.main([*args, "--overwrite"]) == 0
    assert len(table.read_text().splitlines()) == 1 + 8


@pytest.mark.parametrize("args, expected", [
    ([], "evaluate needs one of --images DIR --masks DIR, --sample or --run RUN"),
    (["--images", "x"], "--masks is missing"),
    (["--sample", "--images", "x", "--masks", "y"], "not --images/--masks and --sample together"),
    (["--run", "nowhere"], "nowhere is not a run folder (it holds no run.json)"),
    (["--sample", "--per-image", "table.txt"], "give a file name ending in .csv"),
])
def test_evaluate_asks_for_one_source_of_images(args, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = cli.main(["evaluate", *args, "--device", "cpu"])
    _, err = capsys.readouterr()
    assert status == 2
    assert err.startswith("loragui: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_run_of_an_older_record_says_what_to_do(run, tmp_path, capsys):
    config, _ = run
    record = read_run_record(config.out)
    del record["validation"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text(json.dumps(record))
    status = cli.main(["evaluate", "--run", str(old)])
    _, err = capsys.readouterr()
    assert status == 2 and "does not list the images the run validated on" in err
    assert "--images and --masks" in err


def test_evaluate_sample_scores_the_bundled_sample(capsys):
    status = cli.main(["evaluate", "--sample", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["images"] >= 24
