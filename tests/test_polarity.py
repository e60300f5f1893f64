"""A base model that knows bright objects, adapted to dark ones: the run trains on inverted
images, says so, and everything that uses its adapter inverts them too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui.engine.bioimageio_export import package_preprocess
from loragui.engine.config import TrainConfig
from loragui.engine.events import EpochEvent, LogEvent, RunFinished
from loragui.engine.polarity import MARGIN, Polarity
from loragui.engine.predict import evaluate_folders, load_for_inference
from loragui.engine.preprocessing import Preprocessing, normalize_image
from loragui.engine.train import run_training
from tests.messy import make_tiny_dataset


def _events(config: TrainConfig) -> list:
    return list(run_training(config))


@pytest.fixture(scope="module")
def bright_base(tmp_path_factory) -> Path:
    """A tiny UNet trained whole on bright blobs on a dark background."""
    root = tmp_path_factory.mktemp("bright")
    images, masks = make_tiny_dataset(root / "data", n=8, size=32)
    events = _events(TrainConfig(images=str(images), masks=str(masks), out=str(root / "run"),
                                 full=True, width=8, depth=2, epochs=12, steps_per_epoch=8,
                                 batch_size=4, crop_size=32, lr=1e-2, device="cpu",
                                 previews=0, early_stop=False))
    assert isinstance(events[-1], RunFinished), events[-1]
    return root / "run" / "model.safetensors"


@pytest.fixture(scope="module")
def dark_data(tmp_path_factory) -> tuple[Path, Path]:
    """Other blobs of the same kind, dark on a light background."""
    root = tmp_path_factory.mktemp("dark")
    images, masks = make_tiny_dataset(root / "bright", n=8, size=32, seed=1)
    out = root / "images"
    out.mkdir()
    for path in images.iterdir():
        Image.fromarray(255 - np.asarray(Image.open(path))).save(out / path.name)
    return out, masks


def _adapt(tmp_path: Path, base: Path, data: tuple[Path, Path], **overrides) -> list:
    images, masks = data
    values = dict(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                  base=str(base), epochs=3, steps_per_epoch=5, batch_size=4, crop_size=32,
                  val_fraction=0.25, device="cpu", lr=1e-2, previews=1)
    return _events(TrainConfig(**(values | overrides)))


def test_the_decision_needs_a_clear_margin():
    assert Polarity(plain=0.10, inverted=0.80).invert
    assert not Polarity(plain=0.80, inverted=0.10).invert
    assert not Polarity(plain=0.30, inverted=0.30 + MARGIN).invert  # within the margin
    assert "inverted" in Polarity(0.1, 0.8).message()


def test_inverted_preprocessing_is_the_plain_one_turned_round():
    rng = np.random.default_rng(0)
    for arr in (rng.integers(0, 4096, (20, 30), dtype=np.uint16),
                rng.random((20, 30, 3), dtype=np.float32)):
        plain = normalize_image(arr, Preprocessing())
        inverted = normalize_image(arr, Preprocessing(invert=True))
        assert np.array_equal(inverted, 255 - plain)
    raw = rng.integers(0, 255, (3, 16, 16)).astype(np.float32)
    assert np.allclose(package_preprocess(raw, Preprocessing(invert=True)),
                       1 - package_preprocess(raw, Preprocessing()))


def test_a_run_on_dark_objects_trains_on_inverted_images(tmp_path, bright_base, dark_data):
    events = _adapt(tmp_path, bright_base, dark_data)
    assert isinstance(events[-1], RunFinished), events[-1]
    said = [e.message for e in events if isinstance(e, LogEvent)]
    assert any("better in the images inverted" in m for m in said), said
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    # the base model's own Dice (epoch 0) is already that of the inverted images
    assert epochs[0].epoch == 0 and epochs[0].dice > 0.5
    # previews show the images as the user has them, not as the model sees them
    shown = epochs[-1].previews[0]
    original = np.asarray(Image.open(dark_data[0] / f"{shown.name}.png"))
    assert np.array_equal(shown.image, normalize_image(original, Preprocessing()))

    adapter = tmp_path / "run" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["loragui"]["preprocessing"]["invert"] is True
    _, prep, _ = load_for_inference(bright_base, adapter)
    assert prep.invert
    # evaluating the adapter inverts the images as training did: the run's own Dice
    scores = evaluate_folders(dark_data[0], dark_data[1], base=bright_base, adapter=adapter,
                              device="cpu")
    assert scores["dice"] > 0.5


def test_no_auto_invert_keeps_the_images_as_they_are(tmp_path, bright_base, dark_data):
    events = _adapt(tmp_path, bright_base, dark_data, auto_invert=False, epochs=1)
    assert isinstance(events[-1], RunFinished), events[-1]
    assert not any("inverted" in e.message for e in events if isinstance(e, LogEvent))
    config = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert config["loragui"]["preprocessing"]["invert"] is False


def test_bright_objects_stay_as_they_are(tmp_path, bright_base):
    data = make_tiny_dataset(tmp_path / "data", n=8, size=32, seed=2)
    events = _adapt(tmp_path, bright_base, data, epochs=1)
    said = [e.message for e in events if isinstance(e, LogEvent)]
    assert any(m.startswith("images go to the model as they are") for m in said), said


def test_a_base_that_inverts_already_is_turned_back_for_bright_objects(tmp_path, bright_base,
                                                                       dark_data):
    """A merged model of a dark-objects adapter inverts its images: adapted to bright
    objects, it sees them dark, scores them better turned round, and its new adapter
    then records no inversion (not two)."""
    from loragui.engine.exports import merge_adapter_file

    assert isinstance(_adapt(tmp_path / "dark", bright_base, dark_data)[-1], RunFinished)
    merged = merge_adapter_file(bright_base, tmp_path / "dark" / "run" / "adapter",
                                tmp_path / "merged.safetensors")
    bright = make_tiny_dataset(tmp_path / "bright", n=8, size=32, seed=3)
    events = _adapt(tmp_path / "again", merged, bright, epochs=1)
    assert isinstance(events[-1], RunFinished), events[-1]
    assert any("better in the images inverted" in e.message
               for e in events if isinstance(e, LogEvent))
    adapter = tmp_path / "again" / "run" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["loragui"]["preprocessing"]["invert"] is False
    scores = evaluate_folders(bright[0], bright[1], base=merged, adapter=adapter, device="cpu")
    assert scores["dice"] > 0.5
