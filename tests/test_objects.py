"""Objects from predictions: components, touching discs split, measurements, label files,
and the counts a run of objects puts on its validation previews."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from loragui.engine.maskkinds import MaskClass, MaskMeaning
from loragui.engine.masks import read_mask_values
from loragui.engine.objects import (
    OBJECT_COLUMNS,
    count,
    labels_from_classes,
    labels_from_foreground,
    measure,
    write_labels,
    write_tables,
)
from tests.object_data import class_picture, class_reader, disc_labels, write_disc_set


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def touching_discs():
    """Two discs of radius 10 overlapping by 4 pixels, and a third apart: instance labels."""
    truth = np.zeros((64, 64), np.int32)
    truth[disc(truth.shape, 20, 16, 10)] = 1
    truth[disc(truth.shape, 20, 32, 10) & (truth == 0)] = 2
    truth[disc(truth.shape, 48, 44, 8)] = 3
    return truth


def probabilities_of(truth: np.ndarray) -> np.ndarray:
    """The (3, H, W) softmax an ideal objects model gives for these labels."""
    from skimage.segmentation import find_boundaries

    boundary = find_boundaries(truth, mode="inner") & (truth > 0)
    target = np.where(truth == 0, 0, np.where(boundary, 2, 1))
    probs = np.full((3, *truth.shape), 0.05, np.float32)
    for c in range(3):
        probs[c][target == c] = 0.9
    return probs


def test_components_of_a_foreground_are_numbered_from_one_and_small_ones_dropped():
    fg = np.zeros((20, 20), bool)
    fg[1:5, 1:5] = True  # 16 pixels
    fg[10:12, 10:12] = True  # 4 pixels
    fg[15:19, 15:19] = True
    labels = labels_from_foreground(fg)
    assert labels.dtype == np.int32 and count(labels) == 3
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    kept = labels_from_foreground(fg, min_size=5)
    assert count(kept) == 2 and set(np.unique(kept)) == {0, 1, 2}
    assert not kept[10:12, 10:12].any()


def test_touching_discs_are_one_component_but_two_objects_from_classes():
    truth = touching_discs()
    assert count(labels_from_foreground(truth > 0)) == 2  # merged: why objects models exist
    labels = labels_from_classes(probabilities_of(truth))
    assert count(labels) == 3
    # every object covers most of one true object and nothing of another
    for t in (1, 2, 3):
        ids, n = np.unique(labels[truth == t], return_counts=True)
        assert n.max() / n.sum() > 0.95 and ids[np.argmax(n)] != 0
    assert (labels > 0).sum() == (truth > 0).sum()  # grown back over the whole foreground


def test_boundary_fragments_without_interior_are_no_objects():
    probs = np.zeros((3, 16, 16), np.float32)
    probs[0] = 1
    probs[:, 2:4, 2:4] = np.array([0, 0, 1], np.float32)[:, None, None]  # boundary only
    assert count(labels_from_classes(probs)) == 0
    with pytest.raises(ValueError):
        labels_from_classes(np.zeros((2, 4, 4)))


def test_measurements_of_a_fixture():
    labels = np.zeros((10, 12), np.int32)
    labels[2:4, 3:7] = 1  # 8 pixels
    labels[6:9, 9:10] = 2  # 3 pixels
    image = np.zeros((10, 12, 3), np.uint8)
    image[2:4, 3:7] = 100
    image[6:9, 9:10] = (255, 255, 255)
    rows = measure(labels, image, "a.png")
    assert [r["object"] for r in rows] == [1, 2]
    first, second = rows
    assert first["area"] == 8 and first["centroid_y"] == pytest.approx(2.5)
    assert first["centroid_x"] == pytest.approx(4.5)
    assert (first["bbox_min_y"], first["bbox_min_x"], first["bbox_max_y"], first["bbox_max_x"]) \
        == (2, 3, 4, 7)
    assert first["mean_intensity"] == pytest.approx(100, abs=0.5)
    assert second["area"] == 3 and second["mean_intensity"] == pytest.approx(255, abs=0.5)
    assert measure(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.uint8), "b") == []


def test_tables_have_the_columns_and_values(tmp_path):
    labels = np.zeros((8, 8), np.int32)
    labels[1:3, 1:3] = 1
    rows = measure(labels, np.full((8, 8), 7, np.uint8), "x.tif")
    objects, counts = write_tables(tmp_path, rows, [{"image": "x.tif", "objects": 1}])
    with open(objects, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert tuple(table[0]) == OBJECT_COLUMNS
    assert table[0]["image"] == "x.tif" and table[0]["area"] == "4"
    assert float(table[0]["mean_intensity"]) == 7.0 and float(table[0]["centroid_y"]) == 1.5
    assert counts.read_text() == "image,objects\nx.tif,1\n"


def test_label_files_are_16_bit_png_and_32_bit_tiff_past_65535(tmp_path):
    labels = np.zeros((4, 4), np.int32)
    labels[0, 0], labels[3, 3] = 1, 300
    path = write_labels(tmp_path, "a", labels)
    assert path.name == "a.png"
    with Image.open(path) as im:
        assert im.mode.startswith("I") and np.array_equal(np.asarray(im), labels)
    assert np.array_equal(read_mask_values(path), labels)
    many = np.arange(300 * 300, dtype=np.int32).reshape(300, 300)
    path = write_labels(tmp_path, "b", many)
    assert path.name == "b.tif"
    assert np.array_equal(read_mask_values(path), many)


def test_mask_values_of_palette_and_colour_masks(tmp_path):
    idx = np.array([[0, 1], [2, 2]], np.uint8)
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_mask_values(tmp_path / "p.png"), idx)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (200, 10, 10)
    rgb[1, :] = (10, 200, 10)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    values = read_mask_values(tmp_path / "c.png")
    assert values.dtype == np.int32 and values[0, 0] == 0
    assert len(np.unique(values)) == 3 and values[1, 0] == values[1, 1] != values[0, 1]
    grey = np.array([[0, 5], [9, 9]], np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "g.png")
    assert np.array_equal(read_mask_values(tmp_path / "g.png"), grey)


def test_a_prediction_s_objects_by_its_shape():
    from loragui.engine.objects import labels_of_prediction

    truth = touching_discs()
    assert count(labels_of_prediction(truth > 0)) == 2
    assert count(labels_of_prediction(probabilities_of(truth))) == 3


OBJECTS = MaskMeaning("objects", (MaskClass(0, "background", "#000000"),
                                  MaskClass(1, "object", "#ffff00"),
                                  MaskClass(2, "boundary", "#ff00ff")))


def test_an_objects_run_s_previews_count_the_predicted_and_the_true_objects():
    """Four true discs (two touching); the model sees the touching pair as one object
    and misses a third disc: 2 objects predicted, 4 in the mask."""
    import torch

    from loragui.engine.dataset import DecodedDataset
    from loragui.engine.validation import Validator

    truth = disc_labels()
    seen = np.where(truth == 2, 1, np.where(truth == 3, 0, truth))
    shown, mask = OBJECTS.target(seen, "d0"), OBJECTS.target(truth, "d0")
    validator = Validator(class_reader(), torch.device("cpu"), autocast=False, lora=False,
                          previews=1, fault=print, resume_hint=str, classes=OBJECTS.names,
                          colours=OBJECTS.colours, count_objects=True)
    data = DecodedDataset(["d0", "d1"], [class_picture(shown), class_picture(mask)], [mask, mask])
    previews = validator.run(data).previews
    assert [p.name for p in previews] == ["d0"]  # only the previewed images are counted
    assert np.array_equal(previews[0].classes, shown)  # the model predicts what it is shown
    assert (previews[0].predicted_objects, previews[0].true_objects) == (2, 4)


def test_an_objects_training_puts_the_mask_s_objects_on_every_preview(tmp_path):
    from loragui.engine.config import TrainConfig
    from loragui.engine.events import EpochEvent, RunFailed
    from loragui.engine.train import run_training
    from tests.tiny import make_tiny_base

    images, masks = write_disc_set(tmp_path / "data", n=4)
    config = TrainConfig(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                         base=str(make_tiny_base(tmp_path / "base.safetensors")),
                         masks_hold="objects", epochs=1, steps_per_epoch=1, batch_size=2,
                         crop_size=32, val_fraction=0.5, device="cpu", previews=2,
                         early_stop=False)
    events = list(run_training(config))
    assert not [e for e in events if isinstance(e, RunFailed)]
    previews = [p for e in events if isinstance(e, EpochEvent) for p in e.previews]
    assert len(previews) == 4  # the base model's validation and epoch 1's, two images each
    assert all(p.true_objects == 4 for p in previews)  # each disc image holds four discs
    assert all(isinstance(p.predicted_objects, int) for p in previews)
