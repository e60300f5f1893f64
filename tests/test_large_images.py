"""Large images are predicted from bands of rows: the same pixels and the same masks as
the whole-image path, without a full-size numpy copy of the image."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from loragui.engine import bands, preprocessing
from loragui.engine.bands import ImageBands, load_image
from loragui.engine.imageio import UnreadableFileError, read_image
from loragui.engine.predict import predict_folder
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.tiling import tiled
from loragui.engine.unet import UNet, UNetConfig
from tests.tiny import make_tiny_base

RGB, GREY = Preprocessing(), Preprocessing(channels=1)


def _picture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise and a bright patch: percentiles that are not 0/255."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 30 + 120 * xx / w + 40 * np.sin(yy / 9.0) + rng.normal(0, 10, (h, w))
    base[h // 3:h // 2, w // 4:w // 2] += 60
    return np.clip(base, 0, 255)


def _save(path, arr: np.ndarray):
    Image.fromarray(arr).save(path)
    return path


def _files(tmp_path, h=131, w=97):
    """One file per kind of image: (name, path)."""
    p = _picture(h, w)
    q, r = _picture(h, w, 1), _picture(h, w, 2)
    rgb = np.stack([p, q, r], -1).astype(np.uint8)
    grey = p.astype(np.uint8)
    out = {
        "rgb": _save(tmp_path / "rgb.png", rgb),
        "grey": _save(tmp_path / "grey.png", grey),
        "grey_as_rgb": _save(tmp_path / "grey3.png", np.repeat(grey[..., None], 3, 2)),
        "rgba": _save(tmp_path / "rgba.png", np.dstack([rgb, (p > 90).astype(np.uint8) * 255])),
        "grey16": _save(tmp_path / "g16.png", (p * 37).astype(np.uint16)),
        "float": tmp_path / "float.tif",
        "palette": tmp_path / "palette.png",
    }
    Image.fromarray((p / 300).astype(np.float32)).save(out["float"])
    Image.fromarray(rgb).quantize(64).save(out["palette"], transparency=3)
    Image.fromarray(np.dstack([grey, grey[::-1]]), "LA").save(out.setdefault(
        "grey_alpha", tmp_path / "la.png"))
    Image.fromarray(p > 100).save(out.setdefault("bilevel", tmp_path / "bilevel.png"))
    Image.fromarray(rgb).convert("CMYK").save(out.setdefault("cmyk", tmp_path / "cmyk.jpg"))
    return out


KINDS = ["rgb", "grey", "grey_as_rgb", "rgba", "grey16", "float", "palette", "grey_alpha",
         "bilevel", "cmyk"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("prep", [RGB, GREY, Preprocessing(method="none")],
                         ids=["rgb-model", "grey-model", "no-percentiles"])
def test_bands_give_the_pixels_read_image_gives(tmp_path, monkeypatch, kind, prep):
    path = _files(tmp_path)[kind]
    monkeypatch.setattr(bands, "_CHUNK", 97 * 6)  # rows are decoded 6 at a time
    whole = read_image(path, prep)
    image = load_image(path, prep, large=0)
    assert isinstance(image, ImageBands) and image.shape == whole.shape
    assert np.array_equal(image.whole(), whole)
    assert np.array_equal(image.rows(40, 77), whole[40:77])


@pytest.mark.parametrize("kind", ["rgb", "grey_as_rgb", "grey16", "float"])
@pytest.mark.parametrize("prep", [RGB, GREY], ids=["rgb-model", "grey-model"])
def test_a_sampled_image_planned_over_many_bands_matches_the_whole_array(
        tmp_path, monkeypatch, kind, prep):
    """The percentiles of an image larger than the sample come from the same sampled points
    whether they are gathered from the whole array or band by band."""
    path = _files(tmp_path, 240, 170)[kind]
    monkeypatch.setattr(preprocessing, "_SAMPLE", 5000)
    whole = read_image(path, prep)  # one block: the points are indexed in the whole array
    monkeypatch.setattr(preprocessing, "_BLOCK", 170 * 7)  # 35 bands of 7 rows
    image = load_image(path, prep, large=0)
    assert np.array_equal(image.whole(), whole)


def test_small_and_rotated_images_are_read_whole(tmp_path):
    files = _files(tmp_path)
    assert isinstance(load_image(files["rgb"], RGB), np.ndarray)  # below LARGE_PIXELS
    im = Image.open(files["rgb"])
    exif = im.getexif()
    exif[0x0112] = 6  # shown rotated: its rows are stored columns
    im.save(tmp_path / "rotated.jpg", exif=exif)
    rotated = load_image(tmp_path / "rotated.jpg", RGB, large=0)
    assert isinstance(rotated, np.ndarray) and rotated.shape == (97, 131, 3)


def test_a_truncated_large_image_gives_the_one_message(tmp_path):
    path = _files(tmp_path, 600, 400)["rgb"]
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(UnreadableFileError, match="rgb.png: the file is truncated"):
        load_image(path, RGB, large=0)


def _one_model(tmp_path):
    return make_tiny_base(tmp_path / "base.safetensors", width=4, depth=2)


def test_a_large_image_predicted_in_bands_writes_the_mask_of_the_whole_image(
        tmp_path, monkeypatch):
    base = _one_model(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    p = _picture(1200, 2100)  # 2 x 3 tiles
    _save(images / "slide.png", np.stack([p, p[::-1], p[:, ::-1]], -1).astype(np.uint8))
    _save(images / "small.png", _picture(64, 64).astype(np.uint8))
    whole = list(predict_folder(images, tmp_path / "whole", base=base, device="cpu"))
    monkeypatch.setattr(bands, "LARGE_PIXELS", 10_000)
    read = []
    monkeypatch.setattr(ImageBands, "rows", lambda self, a, b, f=ImageBands.rows:
                        read.append(b - a) or f(self, a, b))
    banded = list(predict_folder(images, tmp_path / "banded", base=base, device="cpu"))
    assert read and max(read) < 1200  # never the whole image at once
    assert [e.message for e in banded] == [e.message for e in whole]
    assert any(e.tiles for e in banded)
    for name in ("slide.png", "small.png"):
        a = np.asarray(Image.open(tmp_path / "whole" / name))
        b = np.asarray(Image.open(tmp_path / "banded" / name))
        assert a.shape == b.shape and np.array_equal(a, b), name


def test_a_band_that_fails_to_decode_skips_the_image_with_its_message(tmp_path, monkeypatch):
    base = _one_model(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    _save(images / "a_large.png", _picture(1300, 300).astype(np.uint8))
    _save(images / "b_small.png", _picture(64, 64).astype(np.uint8))
    monkeypatch.setattr(bands, "LARGE_PIXELS", 100_000)
    calls = []

    def decode(im):
        calls.append(im.size)
        if len(calls) > 3:  # after the plan: while the tiles are read
            raise OSError("broken data stream when reading image file")
        return np.asarray(im)

    monkeypatch.setattr(bands, "decode_pixels", decode)
    events = list(predict_folder(images, tmp_path / "out", base=base, device="cpu"))
    messages = [e.message for e in events if not e.tiles]
    assert messages[0] == ("skipped: Cannot read a_large.png: the file is truncated (an "
                           "incomplete copy or download?). Re-save it as PNG or TIFF, or "
                           "remove it.")
    assert messages[1] == "b_small.png" and "could not be read: a_large.png" in messages[2]
    assert not (tmp_path / "out" / "a_large.png").exists()
    assert (tmp_path / "out" / "b_small.png").exists()


def test_objects_of_a_large_image_are_measured_as_in_memory(tmp_path, monkeypatch):
    base = _one_model(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    _save(images / "slide.png", _picture(1100, 300).astype(np.uint8))
    list(predict_folder(images, tmp_path / "whole", base=base, device="cpu", objects=True))
    monkeypatch.setattr(bands, "LARGE_PIXELS", 10_000)
    list(predict_folder(images, tmp_path / "banded", base=base, device="cpu", objects=True))
    for table in ("objects.csv", "counts.csv"):
        assert (tmp_path / "whole" / table).read_text() == \
            (tmp_path / "banded" / table).read_text()


def _banded_peak(path, model) -> tuple[int, np.ndarray]:
    """Peak of numpy's allocations (tracemalloc sees them; Pillow's decoded copy it does
    not) while a file is planned and predicted from bands."""
    tracemalloc.start()
    try:
        steps = tiled(model, load_image(path, RGB, large=0), tile=256, bf16=False)
        while True:
            try:
                next(steps)
            except StopIteration as finished:
                return tracemalloc.get_traced_memory()[1], finished.value
    finally:
        tracemalloc.stop()


def test_predicting_from_bands_allocates_the_mask_and_one_row_of_tiles(tmp_path, monkeypatch):
    """Twice the rows: the peak grows by the mask's extra byte a pixel, not by the three or
    more a pixel that a numpy copy of the image (and its normalised copy) would take."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, depth=2)).eval()
    monkeypatch.setattr(preprocessing, "_BLOCK", 300 * 50)  # the planning pass in small bands
    monkeypatch.setattr(preprocessing, "_SAMPLE", 20_000)
    peaks = []
    for h in (2000, 4000):
        p = _picture(h, 300)
        path = _save(tmp_path / f"tall{h}.png",
                     np.stack([p, p[::-1], p[:, ::-1]], -1).astype(np.uint8))
        peak, mask = _banded_peak(path, model)
        assert mask.shape == (h, 300)
        peaks.append(peak)
    extra_pixels = 2000 * 300
    assert peaks[1] - peaks[0] < 1.5 * extra_pixels, peaks
