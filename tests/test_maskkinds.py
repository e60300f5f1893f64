"""What the masks hold: the scan's proposal and its words, the ids read from masks, and
the refusals of contradictory class settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui.engine.errors import DataError
from loragui.engine.maskkinds import (
    MaskMeaning,
    propose,
    read_classes_file,
    resolve,
)
from loragui.engine.masks import read_mask_values
from loragui.engine.pairing import pair_folders


def _disc(size: int, cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def write_set(root: Path, masks: list[np.ndarray], *, palette: bool = False) -> tuple[Path, Path]:
    images, mdir = root / "images", root / "masks"
    images.mkdir(parents=True)
    mdir.mkdir()
    rng = np.random.default_rng(0)
    for i, m in enumerate(masks):
        Image.fromarray(rng.integers(0, 255, (*m.shape, 3), dtype=np.uint8)).save(
            images / f"im{i}.png")
        if palette:
            im = Image.fromarray(m.astype(np.uint8), mode="P")
            im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
            im.save(mdir / f"im{i}.png")
        else:
            Image.fromarray(m.astype(np.uint16 if m.max() > 255 else np.uint8)).save(
                mdir / f"im{i}.png")
    return images, mdir


def class_masks(n: int = 6, size: int = 32) -> list[np.ndarray]:
    out = []
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        m[_disc(size, 10, 10, 6)] = 1
        m[20 + i % 3:28, 18:28] = 2
        out.append(m)
    return out


def object_masks(n: int = 5, size: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(n):
        m = np.zeros((size, size), np.uint16)
        for j in range(3 + 4 * i):  # 3, 7, 11, ... objects: ids vary between masks
            y, x = divmod(j, 6)
            m[y * 8:y * 8 + 6, x * 8:x * 8 + 6] = j + 1
        out.append(m)
    return out


def test_binary_masks_propose_binary_and_say_nothing(tmp_path):
    masks = [(_disc(32, 16, 16, 8) * 255).astype(np.uint8) for _ in range(4)]
    report = pair_folders(*write_set(tmp_path, masks))
    assert report.proposal.kind == "binary"
    assert report.mask_kind == []
    assert "What the masks hold" not in report.summary()


def test_class_ids_propose_classes_with_the_values_seen(tmp_path):
    report = pair_folders(*write_set(tmp_path, class_masks()))
    assert report.proposal.kind == "classes"
    assert report.proposal.ids == (0, 1, 2)
    line = report.summary().splitlines()
    text = next(t for t in line if t.startswith("What the masks hold"))
    assert "values {0, 1, 2} in the masks, more than two in 6 of 6" in text
    assert "2 classes besides background (0)?" in text
    assert "--masks-hold classes" in text
    assert report.to_dict()["masks_hold"] == "classes"


def test_palette_masks_give_their_indices(tmp_path):
    report = pair_folders(*write_set(tmp_path, class_masks(), palette=True))
    assert report.proposal.kind == "classes"
    assert report.proposal.ids == (0, 1, 2)
    ids = read_mask_values(tmp_path / "masks" / "im0.png")
    assert ids.dtype == np.int32 and set(np.unique(ids)) == {0, 1, 2}


def test_object_labels_propose_objects(tmp_path):
    report = pair_folders(*write_set(tmp_path, object_masks()))
    assert report.proposal.kind == "objects"
    assert report.proposal.most_ids == 20  # 19 objects and background
    assert "up to 20 distinct ids per mask, varying between masks: object labels of one " \
           "class?" in report.summary()
    assert "--masks-hold objects" in report.summary()


@pytest.mark.parametrize("kind, masks", [("classes", class_masks), ("objects", object_masks)])
def test_the_proposal_says_how_to_train_the_masks_so_in_the_words_it_is_given(tmp_path, kind,
                                                                              masks):
    report = pair_folders(*write_set(tmp_path, masks()))
    line = next(t for t in report.summary().splitlines() if t.startswith("What the masks hold"))
    assert f"add --masks-hold {kind}" in line  # the command line's option by default
    assert report.to_dict()["mask_kind"] == [report.proposal.words()]

    def elsewhere(k: str) -> str:
        return f"pick {k} in the list"

    said = report.summary(choose=elsewhere) + repr(report.problem_groups(choose=elsewhere))
    assert f"train them as {kind}" in said and f"pick {kind} in the list" in said
    assert "--masks-hold" not in said and "--classes" not in said


def test_masks_of_classes_trained_as_foreground_background_are_said_to_be_flattened(tmp_path):
    report = pair_folders(*write_set(tmp_path, class_masks()))
    for hold in ("auto", "binary"):
        line = next(t for t in report.summary(hold=hold).splitlines()
                    if t.startswith("Masks with more than two values (6)"))
        assert "Trained as foreground/background (every non-zero value is foreground)" in line
        assert "look like classes" in line and "save black (0) and white (255)" not in line


def test_object_labels_trained_as_foreground_background_are_said_to_be_merged(tmp_path):
    report = pair_folders(*write_set(tmp_path, object_masks()))
    line = next(t for t in report.summary().splitlines() if t.startswith("Masks with more"))
    assert "every object is foreground" in line and "look like object labels" in line


@pytest.mark.parametrize("hold, masks", [("classes", class_masks), ("objects", object_masks)])
def test_masks_trained_as_ids_are_not_a_problem_for_having_many_values(tmp_path, hold, masks):
    report = pair_folders(*write_set(tmp_path, masks()))
    assert report.not_binary and report.mask_kind  # what the scan saw, kept
    text = report.summary(hold=hold)
    assert "more than two values" not in text and "What the masks hold" not in text
    assert "foreground/background" not in text
    titles = [title for title, _ in report.problem_groups(hold)]
    assert not [t for t in titles if "more than two values" in t or "What the masks" in t]
    assert any("more than two values" in t for t, _ in report.problem_groups("auto"))


def test_nearly_full_class_masks_are_not_told_to_be_inverted(tmp_path):
    masks = [np.full((32, 32), 1 + i % 2, np.uint8) for i in range(4)]
    for m in masks:
        m[:2, :10] = 0  # a sliver of background: over 95 % foreground
    report = pair_folders(*write_set(tmp_path, masks))
    line = next(t for t in report.summary().splitlines() if "almost all foreground" in t)
    assert "--invert-masks" in line  # foreground/background: they may be inverted
    line = next(t for t in report.summary(hold="classes").splitlines()
                if "almost all foreground" in t)
    assert "--invert-masks" not in line and "0 marks the background" in line


def test_training_as_classes_logs_no_doubt_about_the_values(tmp_path):
    import threading

    from loragui.engine.config import TrainConfig
    from loragui.engine.preprocessing import Preprocessing
    from loragui.engine.training_data import prepare_data

    images, masks = write_set(tmp_path, class_masks())

    def said(hold: str) -> str:
        config = TrainConfig(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                             masks_hold=hold)
        steps = prepare_data(config, Preprocessing(), threading.Event())
        lines = []
        try:
            while True:
                lines.append(next(steps).message)
        except StopIteration as done:
            data = done.value
        return " ".join(lines), data.problems

    text, problems = said("classes")
    assert "more than two values" not in text and "foreground" not in text
    assert not [title for title in problems if "more than two values" in title]
    text, problems = said("auto")
    assert "Masks with more than two values (6)" in text and "look like classes" in text
    assert "Masks with more than two values (6)" in problems


def test_many_ids_are_objects_even_when_shared():
    from loragui.engine.maskkinds import MaskSeen

    ids = tuple(range(40))
    assert propose([MaskSeen(f"m{i}", 40, ids) for i in range(3)]).kind == "objects"
    assert propose([MaskSeen("m", 300, None)]).kind == "objects"


def test_rgb_colours_become_consecutive_ids_black_is_0(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:2] = (255, 0, 0)
    rgb[2:4] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    ids = read_mask_values(tmp_path / "m.png")
    assert ids[0, 0] == 2 and ids[2, 0] == 1 and ids[5, 0] == 0  # (0,0,255) < (255,0,0)


def _resolve(tmp_path, hold="classes", names=(), **kw):
    images, masks = write_set(tmp_path, class_masks())
    report = pair_folders(images, masks)
    return resolve(hold, list(names), report.proposal, report.masks_seen, masks, **kw)


def test_auto_trains_binary_whatever_is_proposed(tmp_path):
    assert _resolve(tmp_path, "auto").hold == "binary"


def test_classes_default_names_and_colours(tmp_path):
    meaning = _resolve(tmp_path)
    assert meaning.k == 3
    assert meaning.names == ["background", "class 1", "class 2"]
    assert meaning.colours[0] == "#000000"
    assert MaskMeaning.from_dict(meaning.to_dict()) == meaning


def test_classes_named_on_the_command_line(tmp_path):
    meaning = _resolve(tmp_path, "auto", ["background", "nucleus", "membrane"])
    assert meaning.hold == "classes" and meaning.names == ["background", "nucleus", "membrane"]


def test_wrong_number_of_names_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"--classes names 2 classes .* 3 values \{0, 1, 2\}"):
        _resolve(tmp_path, names=["background", "nucleus"])


def test_classes_file_names_and_colours(tmp_path):
    images, masks = write_set(tmp_path, class_masks())
    (masks / "classes.json").write_text(json.dumps({"classes": [
        {"id": 0, "name": "background", "colour": "#000000"},
        {"id": 1, "name": "nucleus", "colour": "#FF0000"},
        {"id": 2, "name": "membrane"}]}))
    report = pair_folders(images, masks)
    meaning = resolve("classes", [], report.proposal, report.masks_seen, masks)
    assert meaning.names == ["background", "nucleus", "membrane"]
    assert meaning.colours[1] == "#ff0000"
    # the classes file is read, so the scan does not list it as ignored
    (masks / "notes.txt").write_text("x")
    assert pair_folders(images, masks).ignored_files == [f"{masks.name}/notes.txt"]


def test_a_mask_value_the_classes_file_lacks_is_refused(tmp_path):
    images, masks = write_set(tmp_path, class_masks())
    (masks / "classes.json").write_text(json.dumps({"classes": [
        {"id": 0, "name": "background"}, {"id": 1, "name": "nucleus"}]}))
    report = pair_folders(images, masks)
    with pytest.raises(DataError, match=r"im0.png holds the value\(s\) \{2\}, which .* does not"):
        resolve("classes", [], report.proposal, report.masks_seen, masks)


@pytest.mark.parametrize("text, words", [
    ("{", "cannot be read as JSON"),
    ('{"classes": []}', "no list of classes"),
    ('{"classes": [{"id": 0, "name": "a"}, {"id": 0, "name": "b"}]}', "id 0 appears twice"),
    ('{"classes": [{"id": 0, "name": "a", "colour": "red"}]}', "not #rrggbb"),
])
def test_bad_classes_files_are_refused(tmp_path, text, words):
    (tmp_path / "classes.json").write_text(text)
    with pytest.raises(DataError, match=words):
        read_classes_file(tmp_path / "classes.json")


def test_object_labels_refused_as_classes(tmp_path):
    images, masks = write_set(tmp_path, [np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)])
    report = pair_folders(images, masks)
    with pytest.raises(DataError, match="object labels.*--masks-hold objects"):
        resolve("classes", [], report.proposal, report.masks_seen, masks)
    with pytest.raises(DataError, match="object labels.*To train them as objects, pick objects"):
        resolve("classes", [], report.proposal, report.masks_seen, masks,
                choose=lambda kind: f"pick {kind}")


def test_contradictions_are_refused(tmp_path):
    with pytest.raises(DataError, match="--masks-hold must be"):
        _resolve(tmp_path / "a", "many")
    with pytest.raises(DataError, match="add --masks-hold classes"):
        _resolve(tmp_path / "b", "objects", ["a", "b", "c"])
    with pytest.raises(DataError, match="--invert-masks"):
        _resolve(tmp_path / "c", invert=True)


def test_targets_of_classes_and_objects():
    meaning = MaskMeaning.from_dict({"hold": "classes", "classes": [
        {"name": "bg", "colour": "#000000"}, {"name": "a", "colour": "#ff0000"}]})
    assert meaning.target(np.array([[0, 1]]), "m").tolist() == [[0, 1]]
    with pytest.raises(DataError, match=r"m holds the value\(s\) \{5\}"):
        meaning.target(np.array([[0, 5]]), "m")
    objects = resolve("objects", [], propose([]), [], Path("."))
    labels = np.zeros((8, 12), np.int32)
    labels[1:7, 1:6] = 1
    labels[1:7, 6:11] = 2  # touching the first
    target = objects.target(labels, "m")
    assert set(np.unique(target)) == {0, 1, 2}
    assert (target[:, 5] == 2).all() or (target[1:7, 5] == 2).all()  # the shared edge
    assert (target[1:7, 6] == 2).all()
    assert target[3, 3] == 1 and target[0, 0] == 0
