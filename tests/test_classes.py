"""K classes end to end: a binary base adapted to 3 classes trains to a high mean
foreground Dice, and its adapter saves, loads, predicts palette PNGs, merges, and
exports to ONNX and to PEFT; the base-model check accepts exactly the new head."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from loragui.engine.adapter_plan import apply_adapter
from loragui.engine.adapters import load_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.errors import AdapterMismatchError, LoraGuiError
from loragui.engine.events import EpochEvent, RunFailed, RunFinished
from loragui.engine.exports import export_adapter, merge_adapter_file, merged_model
from loragui.engine.imageio import read_image
from loragui.engine.predict import load_with_meaning, predict_classes, predict_folder
from loragui.engine.runrecord import read_metrics
from loragui.engine.train import run_training
from tests.classes_data import make_class_dataset
from tests.tiny import make_tiny_base

NAMES = ["background", "disc", "square"]


def _config(root, **overrides) -> TrainConfig:
    images, masks = make_class_dataset(root / "data")
    base = root / "base.safetensors"
    if not base.exists():
        make_tiny_base(base, width=8)
    values = dict(images=str(images), masks=str(masks), out=str(root / "run"), base=str(base),
                  masks_hold="classes", classes=list(NAMES), rank=8, alpha=16, epochs=10,
                  steps_per_epoch=10, batch_size=8, crop_size=48, val_fraction=0.25,
                  device="cpu", lr=1e-2, previews=1, early_stop=False,
                  # the classes differ in colour; brightness changes only slow the tiny model
                  intensity_augment=False)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    config = _config(root)
    events = list(run_training(config))
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert not failed, failed[0].message
    return root, config, events


def test_three_classes_overfit_to_a_high_mean_foreground_dice(trained):
    root, config, events = trained
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.best_dice > 0.9, finished.best_dice
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    last = epochs[-1]
    assert list(last.classes) == NAMES
    # "dice" is the mean over the foreground classes
    assert last.dice == pytest.approx(np.mean([last.classes[n]["dice"] for n in NAMES[1:]]))
    assert last.previews[0].prediction.shape == last.previews[0].mask.shape
    rows = read_metrics(root / "run")
    assert {"dice_disc", "iou_disc", "dice_square", "dice_background"} <= set(rows[0])
    cfg = json.loads((root / "run" / "adapter" / "adapter_config.json").read_text())
    assert cfg["loragui"]["masks"]["hold"] == "classes"
    assert [c["name"] for c in cfg["loragui"]["masks"]["classes"]] == NAMES
    assert cfg["loragui"]["architecture"]["out_channels"] == 3
    assert "head" in cfg["modules_to_save"]


def test_the_run_record_names_the_classes_and_their_curves_read_back_as_reported(trained):
    from loragui.engine.runcompare import read_curves
    from loragui.engine.runrecord import read_run_record

    root, config, events = trained
    record = read_run_record(root / "run")
    assert [c["name"] for c in record["masks"]["classes"]] == NAMES
    assert record["base_validation"]["epoch"] == 0
    curves = read_curves(root / "run", base=True)
    reported = [e for e in events if isinstance(e, EpochEvent)]
    assert curves.epochs == [e.epoch for e in reported]  # epoch 0, the base model's, first
    for name in NAMES:
        assert curves.classes[name] == pytest.approx([e.classes[name]["dice"] for e in reported])
    assert curves.colours == [c["colour"] for c in record["masks"]["classes"]]


def test_the_previews_carry_each_pixels_class_and_the_class_colours(trained, tmp_path):
    from loragui.engine.events import event_from_line, event_to_line, read_previews, write_previews
    from loragui.gui.overlay import preview_overlay

    _, config, events = trained
    preview = [e for e in events if isinstance(e, EpochEvent)][-1].previews[0]
    assert preview.classes.shape == preview.mask.shape and preview.classes.dtype == np.uint8
    assert set(np.unique(preview.classes)) <= {0, 1, 2}
    colours = load_with_meaning(config.base, f"{config.out}/adapter")[3].colours
    assert preview.colours == tuple(colours) and len(colours) == 3
    assert preview.predicted_objects is None  # classes, not objects: nothing is counted
    again = read_previews(write_previews(tmp_path / "p.npz", [preview]))[0]
    assert np.array_equal(again.classes, preview.classes) and again.colours == preview.colours
    line = event_from_line(event_to_line([e for e in events if isinstance(e, EpochEvent)][-1]))
    assert np.array_equal(line.previews[0].classes, preview.classes)
    # each predicted class is tinted its own colour (the inside of a region: no outline)
    rgb = preview_overlay(preview).astype(int)
    plain = preview_overlay(dataclasses.replace(preview, classes=np.zeros_like(preview.classes)))
    for k in (1, 2):
        inside = preview.classes == k
        if inside.sum() > 50:
            colour = np.array([int(colours[k][i:i + 2], 16) for i in (1, 3, 5)])
            moved = np.abs(rgb[inside] - colour).mean() < np.abs(plain[inside] - colour).mean()
            assert moved, k


def test_the_adapter_loads_and_predicts_class_probabilities(trained):
    root, config, _ = trained
    model, prep, _, meaning = load_with_meaning(config.base, root / "run" / "adapter")
    assert model.config.out_channels == 3 and meaning.names == NAMES
    image = read_image(root / "data" / "images" / "c0.png", prep)
    prob = predict_classes(model, image)
    assert prob.shape == (3, 48, 48)
    assert np.allclose(prob.sum(0), 1, atol=1e-5)
    truth = np.asarray(Image.open(root / "data" / "masks" / "c0.png"))
    assert (prob.argmax(0) == truth).mean() > 0.95


def test_predicted_class_masks_are_palette_pngs(trained):
    root, config, _ = trained
    out = root / "predicted"
    list(predict_folder(root / "data" / "images", out, base=config.base,
                        adapter=root / "run" / "adapter", device="cpu"))
    im = Image.open(out / "c1.png")
    assert im.mode == "P"
    assert im.getpalette()[:9] == [0, 0, 0, 0xe6, 0x9f, 0x00, 0x56, 0xb4, 0xe9]
    truth = np.asarray(Image.open(root / "data" / "masks" / "c1.png"))
    assert (np.asarray(im) == truth).mean() > 0.95


def test_merged_model_keeps_the_three_class_head(trained):
    root, config, _ = trained
    adapter = root / "run" / "adapter"
    dest = merge_adapter_file(config.base, adapter, root / "merged.safetensors")
    merged, info = load_model(dest)
    assert merged.config.out_channels == 3
    ours, *_ = merged_model(config.base, adapter)
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(merged(x), ours(x), atol=1e-5)
    # the merged model knows its classes
    _, _, _, meaning = load_with_meaning(dest, None)
    assert meaning.names == NAMES


def test_onnx_export_matches_pytorch(trained):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from loragui.engine.onnx_export import check_onnx, export_model_onnx

    root, config, _ = trained
    adapter = root / "run" / "adapter"
    dest = export_model_onnx(adapter, root / "classes.onnx", base=config.base)
    model, *_ = merged_model(config.base, adapter)
    assert check_onnx(dest, model, sizes=((48, 48), (32, 64)), batch=2) < 1e-4


def test_peft_export_loads_in_peft(trained):
    peft = pytest.importorskip("peft")
    root, config, _ = trained
    folder = root / "peft"
    export_adapter(root / "run" / "adapter", folder, peft_compatible=True, base=config.base)
    ours, *_ = merged_model(config.base, folder)
    # PEFT trains a new head as it does a classifier's: the base gets a K-channel head,
    # whose weights modules_to_save then replaces
    base, _ = load_model(config.base)
    base.replace_head(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(base, str(folder)).eval()
    # seeded: the input must not depend on the tests run before this one; logits of a few
    # units differ by float32 rounding in the two orders of summation, hence rtol
    x = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), rtol=1e-4, atol=1e-5)


def test_the_base_check_accepts_the_new_head_and_nothing_else(trained, tmp_path):
    root, config, _ = trained
    adapter = load_adapter(root / "run" / "adapter")
    # without the masks section the 3-channel head is a different architecture
    adapter.config["loragui"].pop("masks")
    model, info = load_model(config.base)
    with pytest.raises(AdapterMismatchError, match="the shapes differ"):
        apply_adapter(model, adapter, info)
    # another width is refused although the adapter records classes
    wide = make_tiny_base(tmp_path / "wide.safetensors", width=16)
    model, info = load_model(wide)
    with pytest.raises(LoraGuiError):
        apply_adapter(model, load_adapter(root / "run" / "adapter"), info, force=True)


def test_a_mask_value_beyond_the_classes_is_refused_before_training(tmp_path):
    config = _config(tmp_path, classes=["background", "disc"])
    events = list(run_training(config))
    assert isinstance(events[-1], RunFailed)
    assert "--classes names 2 classes (background, disc) but the masks hold 3 values " \
           "{0, 1, 2}" in events[-1].message
    assert not (tmp_path / "run" / "adapter").exists()


def test_auto_keeps_training_foreground_background_and_says_what_it_saw(tmp_path):
    config = _config(tmp_path, masks_hold="auto", classes=[], epochs=1, steps_per_epoch=1)
    events = list(run_training(config))
    assert isinstance(events[-1], RunFinished)
    said = " ".join(getattr(e, "message", "") for e in events)
    assert "2 classes besides background (0)?" in said and "--masks-hold classes" in said
    cfg = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert cfg["loragui"]["masks"]["hold"] == "binary"
    assert cfg["loragui"]["architecture"]["out_channels"] == 1


def test_evaluate_reports_per_class_scores_and_the_confusion_matrix(trained, capsys):
    from loragui import cli

    root, config, _ = trained
    args = ["evaluate", "--images", str(root / "data" / "images"), "--masks",
            str(root / "data" / "masks"), "--base", config.base, "--adapter",
            str(root / "run" / "adapter"), "--device", "cpu"]
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["class_names"] == NAMES and result["images"] == 8
    confusion = np.array(result["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == 8 * 48 * 48
    assert result["dice"] == pytest.approx(np.mean([result["classes"][n]["dice"]
                                                    for n in NAMES[1:]]))
    assert result["classes"]["disc"]["true_pixels"] == confusion[1].sum()
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "confusion matrix (pixels; rows: true class, columns: predicted):" in text
    assert "  disc" in text and "Dice" in text


def test_class_scores_against_hand_computed_values():
    from loragui.engine.class_metrics import ClassScores, class_columns

    scores = ClassScores(["bg", "a", "b"])
    true = np.array([[0, 1, 1, 2]])
    pred = np.array([[0, 1, 2, 2]])
    scores.add(pred, true)
    s = scores.summary()
    assert s["confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert s["classes"]["a"]["dice"] == pytest.approx(2 * 1 / (2 + 1))
    assert s["classes"]["b"]["iou"] == pytest.approx(1 / 2)
    assert s["dice"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # a class neither true nor predicted in an image scores 1 there
    scores.add(np.zeros((1, 4)), np.zeros((1, 4)))
    assert scores.summary()["classes"]["a"]["dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(class_columns(s)) == {"dice_bg", "iou_bg", "dice_a", "iou_a", "dice_b", "iou_b"}


def test_tiles_of_a_class_model_blend_to_the_whole_image_prediction():
    from loragui.engine.model_input import to_model_input
    from loragui.engine.tiling import predict_logits, predict_mask
    from loragui.engine.unet import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, depth=2, out_channels=3)).eval()
    image = np.random.default_rng(0).integers(0, 255, (150, 130, 3), dtype=np.uint8)
    with torch.no_grad():
        whole = model.forward_any_size(to_model_input(image, "cpu"))[0].numpy()
    tiled = predict_logits(model, image, tile=64, bf16=False)
    assert tiled.shape == (3, 150, 130)
    assert np.abs(tiled - whole).max() < 1e-4
    mask = predict_mask(model, image, tile=64, bf16=False)
    assert mask.dtype == np.uint8 and (mask == whole.argmax(0)).mean() > 0.999


def test_a_class_run_resumes_and_its_epochs_travel_as_json_lines(tmp_path):
    from loragui.engine.events import event_from_line, event_to_line

    config = _config(tmp_path, epochs=1, steps_per_epoch=2, previews=0)
    assert isinstance(list(run_training(config))[-1], RunFinished)
    more = dataclasses.replace(config, epochs=2, resume=True)
    events = list(run_training(more))
    assert isinstance(events[-1], RunFinished), events[-1]
    epoch = [e for e in events if isinstance(e, EpochEvent)][-1]
    assert epoch.epoch == 2
    back = event_from_line(event_to_line(epoch))
    assert back.classes == epoch.classes and list(back.classes) == NAMES


def test_object_labels_train_as_background_object_and_boundary(tmp_path):
    from tests.test_maskkinds import object_masks, write_set

    images, masks = write_set(tmp_path / "objects", object_masks(n=4))
    base = make_tiny_base(tmp_path / "base.safetensors", width=4)
    config = TrainConfig(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                         base=str(base), masks_hold="objects", epochs=1, steps_per_epoch=2,
                         batch_size=2, crop_size=48, device="cpu", previews=0)
    events = list(run_training(config))
    assert isinstance(events[-1], RunFinished), events[-1]
    said = " ".join(getattr(e, "message", "") for e in events)
    assert "trained as objects: 0 background, 1 object, 2 boundary" in said
    assert "What the masks hold" not in said  # confirmed: the scan's question is answered
    cfg = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert [c["name"] for c in cfg["loragui"]["masks"]["classes"]] == \
        ["background", "object", "boundary"]
    epoch = [e for e in events if isinstance(e, EpochEvent)][-1]
    assert list(epoch.classes) == ["background", "object", "boundary"]
