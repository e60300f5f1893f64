"""Object matching, F1 and the DSB 2018 average precision against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from loragui.engine.object_metrics import THRESHOLDS, ObjectScores, iou_matrix, score_image


def fixture():
    """Two true squares of 100 pixels; predicted: the first exactly (IoU 1), 80 pixels of
    the second (IoU 0.8), and one object where there is none."""
    true = np.zeros((50, 50), np.int32)
    true[0:10, 0:10] = 7  # ids need not be consecutive
    true[20:30, 0:10] = 3
    pred = np.zeros_like(true)
    pred[0:10, 0:10] = 1
    pred[20:30, 0:8] = 2
    pred[40:45, 40:45] = 3
    return true, pred


def test_iou_matrix_of_the_fixture():
    true, pred = fixture()
    iou = iou_matrix(true, pred)
    # true ids renumbered in order of value: 3 -> 1, 7 -> 2
    assert iou == pytest.approx(np.array([[0, 0.8, 0], [1.0, 0, 0]]))


def test_iou_of_discs_equals_the_pixel_count():
    yy, xx = np.mgrid[:64, :64]
    a = (yy - 30) ** 2 + (xx - 30) ** 2 <= 100
    b = (yy - 33) ** 2 + (xx - 28) ** 2 <= 81
    expected = (a & b).sum() / (a | b).sum()
    assert iou_matrix(a.astype(int), b.astype(int))[0, 0] == pytest.approx(expected)


def test_scores_of_the_fixture_by_hand():
    true, pred = fixture()
    s = score_image(true, pred)
    assert (s.true_objects, s.predicted_objects) == (2, 3)
    # IoU 0.8 matches up to the threshold 0.8 (7 thresholds), not at 0.85, 0.9, 0.95
    assert s.tp == (2,) * 7 + (1,) * 3
    assert s.precision_per_threshold == pytest.approx([2 / 3] * 7 + [1 / 4] * 3)
    assert s.average_precision == pytest.approx((7 * 2 / 3 + 3 / 4) / 10)
    assert s.f1 == pytest.approx(0.8)  # TP 2, FP 1, FN 0


def test_empty_images_and_missed_objects():
    empty = np.zeros((8, 8), np.int32)
    nothing = score_image(empty, empty)
    assert nothing.average_precision == 1.0 and nothing.f1 == 1.0
    one = empty.copy()
    one[2:4, 2:4] = 1
    missed = score_image(one, empty)
    assert missed.average_precision == 0.0 and missed.f1 == 0.0 and missed.at(0.5) == (0, 0, 1)
    invented = score_image(empty, one)
    assert invented.at(0.5) == (0, 1, 0) and invented.average_precision == 0.0


def test_an_object_matches_at_most_one_other():
    true = np.zeros((1, 4), np.int32)
    true[0, :2] = 1  # two pixels; each half is a prediction of IoU exactly 0.5
    pred = np.array([[1, 2, 0, 0]], np.int32)
    assert score_image(true, pred).at(0.5) == (1, 1, 0)


def test_the_set_summary_pools_counts_and_averages_ap_over_images():
    scores = ObjectScores()
    true, pred = fixture()
    scores.add(true, pred)
    scores.add(np.zeros((8, 8), np.int32), np.zeros((8, 8), np.int32))
    out = scores.summary()
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 0)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == 1.0
    assert out["f1"] == pytest.approx(0.8)
    assert out["ap"] == pytest.approx(((7 * 2 / 3 + 3 / 4) / 10 + 1) / 2)
    assert list(out["ap_per_threshold"]) == [f"{t:.2f}" for t in THRESHOLDS]
    assert out["ap_per_threshold"]["0.95"] == pytest.approx((1 / 4 + 1) / 2)
    assert out["true_objects"] == 2 and out["predicted_objects"] == 3
    assert ObjectScores().summary()["ap"] is None


def test_iou_matrix_equals_pairwise_pixel_counts_on_random_labels():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 5, (12, 12))
    pred = rng.integers(0, 4, (12, 12))
    iou = iou_matrix(true, pred)
    assert iou.shape == (4, 3)
    for i in range(1, 5):
        for j in range(1, 4):
            a, b = true == i, pred == j
            assert iou[i - 1, j - 1] == pytest.approx((a & b).sum() / (a | b).sum())
