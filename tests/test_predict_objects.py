"""predict --objects: label files, objects.csv and counts.csv, through the output rule."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from loragui import cli
from loragui.engine.errors import DataError
from loragui.engine.objects import OBJECT_COLUMNS, labels_from_foreground
from loragui.engine.outputs import MARKER, PREDICTIONS, OutputRefused, mark
from loragui.engine.predict import predict_folder
from tests.object_data import disc_labels, threshold_base, write_disc_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Disc images, and a model whose mask is exactly their discs (no adapter)."""
    root = tmp_path_factory.mktemp("objects")
    images, _ = write_disc_set(root / "data", n=2)
    return images, str(threshold_base(root / "base.safetensors")), None


def predict(trained, out, **kwargs):
    images, base, adapter = trained
    return list(predict_folder(images, out, base=base, adapter=adapter, device="cpu", **kwargs))


def table(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_objects_are_the_components_of_each_mask_with_their_rows(trained, tmp_path):
    out = tmp_path / "pred"
    predict(trained, out, objects=True)
    images = sorted(trained[0].iterdir())
    # the two touching discs are one component: 3 objects per image
    assert table(out / "counts.csv") == [{"image": p.name, "objects": "3"} for p in images]
    rows = table(out / "objects.csv")
    assert tuple(rows[0]) == OBJECT_COLUMNS and len(rows) == 6
    truth = disc_labels()
    merged = np.isin(truth, (1, 2))
    by_area = {int(r["area"]): r for r in rows if r["image"] == "d0.png"}
    assert sorted(by_area) == sorted([merged.sum(), (truth == 3).sum(), (truth == 4).sum()])
    pair = by_area[merged.sum()]
    grey = np.where(truth == 1, 175, 200)[merged]
    assert float(pair["mean_intensity"]) == pytest.approx(grey.mean(), abs=1e-3)
    ys, xs = np.nonzero(merged)
    assert float(pair["centroid_y"]) == pytest.approx(ys.mean(), abs=1e-3)
    assert (int(pair["bbox_min_y"]), int(pair["bbox_min_x"]), int(pair["bbox_max_y"]),
            int(pair["bbox_max_x"])) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
    assert float(by_area[(truth == 4).sum()]["mean_intensity"]) == pytest.approx(250)
    for path in images:
        mask = np.asarray(Image.open(out / f"{path.stem}.png")) > 0
        with Image.open(out / "objects" / f"{path.stem}.png") as im:
            assert im.mode.startswith("I")  # 16-bit
            labels = np.asarray(im).astype(np.int32)
        assert np.array_equal(labels, labels_from_foreground(mask))
        assert np.array_equal(labels > 0, mask)


def test_min_size_drops_small_objects(trained, tmp_path):
    predict(trained, tmp_path / "all", objects=True)
    least = (disc_labels() == 3).sum()  # the smallest disc
    predict(trained, tmp_path / "big", objects=True, min_size=least + 1)
    kept = table(tmp_path / "big" / "objects.csv")
    assert len(kept) == 4 and all(int(r["area"]) > least for r in kept)
    assert [r["objects"] for r in table(tmp_path / "big" / "counts.csv")] == ["2", "2"]
    predict(trained, tmp_path / "same", objects=True, min_size=least)
    assert len(table(tmp_path / "same" / "objects.csv")) == 6
    with pytest.raises(DataError, match="0 or more"):
        predict(trained, tmp_path / "neg", objects=True, min_size=-1)


def test_a_users_csv_is_never_replaced(trained, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "counts.csv").write_text("my counts\n")
    with pytest.raises(OutputRefused, match="counts.csv"):
        predict(trained, out, objects=True)
    assert (out / "counts.csv").read_text() == "my counts\n"


def test_loragui_replaces_its_own_tables_only_when_asked(trained, tmp_path):
    out = tmp_path / "pred"
    predict(trained, out, objects=True)
    with pytest.raises(OutputRefused) as refused:
        predict(trained, out, objects=True)
    assert refused.value.replaceable
    (out / "counts.csv").write_text("old\n")
    predict(trained, out, objects=True, overwrite=True)
    assert (out / "counts.csv").read_text().startswith("image,objects\n")
    (out / "objects" / "notes.txt").write_text("mine")  # a user's file among the labels
    with pytest.raises(OutputRefused, match="objects/"):
        predict(trained, out, objects=True, overwrite=True)


def test_a_marked_folder_with_only_tables_is_loragui_s(tmp_path):
    from loragui.engine.outputs import foreign_entries

    (tmp_path / "objects").mkdir()
    (tmp_path / "objects.csv").write_text("x")
    assert foreign_entries(tmp_path, PREDICTIONS) == ["objects/", "objects.csv"]
    mark(tmp_path, PREDICTIONS)
    assert (tmp_path / MARKER).is_file() and foreign_entries(tmp_path, PREDICTIONS) == []


def test_the_command_line_writes_objects_and_refuses_min_size_alone(trained, tmp_path, capsys):
    images, base, adapter = trained
    common = ["predict", "--images", str(images), "--base", base, "--device", "cpu"]
    assert cli.main([*common, "--out", str(tmp_path / "a"), "--min-size", "5"]) == 2
    assert "--min-size applies to objects: add --objects" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit):
        cli.main([*common, "--out", str(tmp_path / "b"), "--objects", "--min-size", "-2"])
    assert "0 or more" in capsys.readouterr().err
    assert cli.main([*common, "--out", str(tmp_path / "c"), "--objects", "--min-size", "3"]) == 0
    assert "objects.csv and counts.csv" in capsys.readouterr().err
    assert (tmp_path / "c" / "counts.csv").is_file()


def test_a_stop_leaves_the_tables_of_the_images_done(trained, tmp_path):
    import threading

    images, base, _ = trained
    stop = threading.Event()
    for ev in predict_folder(images, tmp_path / "p", base=base, device="cpu", objects=True,
                             stop=stop):
        if ev.message == "d0.png":
            stop.set()
    assert table(tmp_path / "p" / "counts.csv") == [{"image": "d0.png", "objects": "3"}]
    assert {r["image"] for r in table(tmp_path / "p" / "objects.csv")} == {"d0.png"}


def test_an_objects_model_always_writes_objects_parted_by_its_boundary_class(
        trained, tmp_path, monkeypatch):
    """An objects model's prediction (background, interior, boundary) becomes labels without
    --objects, and its boundary class parts the two touching discs."""
    from loragui.engine import predict as predict_module
    from loragui.engine.maskkinds import MaskClass, MaskMeaning

    meaning = MaskMeaning("objects", (MaskClass(0, "background", "#000000"),
                                      MaskClass(1, "object", "#ffff00"),
                                      MaskClass(2, "boundary", "#ff00ff")))
    real_load = predict_module.load_with_meaning
    monkeypatch.setattr(predict_module, "load_with_meaning",
                        lambda *a, **k: (*real_load(*a, **k)[:3], meaning))
    shown = iter(np.rot90(meaning.target(disc_labels(), "d"), i).copy() for i in range(2))

    def perfect(model, image, device, threshold=0.5):  # the model's class map, tile by tile
        return next(shown)
        yield

    monkeypatch.setattr(predict_module, "tiled", perfect)
    out = tmp_path / "pred"
    predict(trained, out)
    images = sorted(trained[0].iterdir())
    assert table(out / "counts.csv") == [{"image": p.name, "objects": "4"} for p in images]
    with Image.open(out / "d0.png") as im:
        assert im.mode == "P" and set(np.unique(np.asarray(im))) == {0, 1, 2}
    with Image.open(out / "objects" / "d0.png") as im:
        found = np.asarray(im).astype(np.int32)
    truth = disc_labels()
    for obj in range(1, 5):  # each true disc is one predicted object, nearly whole
        ids, n = np.unique(found[truth == obj], return_counts=True)
        assert ids[np.argmax(n)] > 0 and n.max() >= 0.9 * (truth == obj).sum()
