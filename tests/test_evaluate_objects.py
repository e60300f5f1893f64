"""evaluate --objects: object precision, recall, F1 and AP of predicted components."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from loragui import cli
from loragui.engine.object_metrics import THRESHOLDS
from loragui.engine.objects import mask_objects
from loragui.engine.predict import evaluate_folders
from tests.object_data import disc_labels, threshold_base, write_disc_set


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate-objects")
    images, masks = write_disc_set(root / "data", n=2)
    return images, masks, str(threshold_base(root / "base.safetensors"))


def expected_ap() -> float:
    """The prediction has 3 objects: discs 3 and 4 exactly, and discs 1 and 2 as one.
    A true disc inside that merged object has IoU area(disc) / area(merged)."""
    truth = disc_labels()
    merged = np.isin(truth, (1, 2)).sum()
    best = max((truth == 1).sum(), (truth == 2).sum()) / merged
    per_t = []
    for t in THRESHOLDS:
        tp = 2 + (best >= t)
        per_t.append(tp / (tp + (3 - tp) + (4 - tp)))
    return float(np.mean(per_t)), bool(best >= 0.5)


def test_touching_true_objects_merged_by_the_prediction_count_against_it(discs):
    images, masks, base = discs
    result = evaluate_folders(images, masks, base=base, device="cpu", objects=True)
    o = result["objects"]
    ap, pair_matches = expected_ap()
    tp = 2 + pair_matches
    assert (o["true_objects"], o["predicted_objects"]) == (8, 6)
    assert (o["tp"], o["fp"], o["fn"]) == (2 * tp, 2 * (3 - tp), 2 * (4 - tp))
    assert o["precision"] == pytest.approx(tp / 3) and o["recall"] == pytest.approx(tp / 4)
    assert o["f1"] == pytest.approx(2 * tp / 7)
    assert o["ap"] == pytest.approx(ap)
    assert result["dice"] == pytest.approx(1.0)  # the pixels are right; the objects are not
    row = result["per_image"][0]
    assert (row["true_objects"], row["predicted_objects"]) == (4, 3)
    assert row["object_ap"] == pytest.approx(ap)
    assert "objects" not in evaluate_folders(images, masks, base=base, device="cpu")


def test_binary_true_masks_are_split_into_components(discs, tmp_path):
    images, _, base = discs
    masks = tmp_path / "binary"
    masks.mkdir()
    for path in sorted(images.iterdir()):
        fg = np.asarray(Image.open(path))[..., 0] > 0
        Image.fromarray(fg.astype(np.uint8) * 255).save(masks / path.name)
    assert mask_objects(masks / "d0.png").max() == 3
    o = evaluate_folders(images, masks, base=base, device="cpu", objects=True)["objects"]
    assert (o["f1"], o["ap"], o["true_objects"]) == (1.0, 1.0, 6)


def test_the_command_line_reports_objects_in_text_json_and_csv(discs, tmp_path, capsys):
    images, masks, base = discs
    argv = ["evaluate", "--images", str(images), "--masks", str(masks), "--base", base,
            "--device", "cpu", "--objects"]
    assert cli.main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["objects"]["ap"] == pytest.approx(expected_ap()[0])
    assert set(out["objects"]["ap_per_threshold"]) == {f"{t:.2f}" for t in THRESHOLDS}
    csv_path = tmp_path / "rows.csv"
    assert cli.main([*argv, "--per-image", str(csv_path)]) == 0
    text = capsys.readouterr().out
    assert "objects: 6 predicted, 8 true; at IoU 0.5 precision" in text
    assert "average precision (IoU 0.5-0.95)" in text
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["true_objects"] == "4" and float(rows[0]["object_ap"]) == \
        pytest.approx(expected_ap()[0], abs=1e-6)
