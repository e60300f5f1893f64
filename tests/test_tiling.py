"""Prediction in tiles equals whole-image prediction (seams included), in bounded memory,
with progress per tile."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

from loragui.engine import tiling
from loragui.engine.predict import predict_folder
from loragui.engine.tiling import edge_weight, predict_logits, predict_mask, tile_count
from loragui.engine.unet import UNet, UNetConfig
from tests.tiny import make_tiny_base


def _model(depth: int, width: int = 4, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(width=width, depth=depth)).eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Blobs on a gradient: structure at every scale, so a seam would show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 40 + 100 * (xx / w) + 30 * np.sin(yy / 7.0)
    for _ in range(12):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 40)
        img += 90 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r)
    img += rng.normal(0, 8, (h, w))
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@torch.no_grad()
def _whole(model: UNet, image: np.ndarray) -> np.ndarray:
    from loragui.engine.model_input import to_model_input

    return model.forward_any_size(to_model_input(image)).float()[0, 0].numpy()


@pytest.mark.parametrize("depth, size, tile", [
    (2, (300, 250), 112),   # several tiles both ways, sizes on the pooling grid or not
    (2, (301, 257), 112),
    (2, (97, 530), 112),    # one tile high, several wide
    (3, (600, 523), 256),
])
def test_tiled_logits_equal_the_whole_image_seams_included(depth, size, tile):
    model, image = _model(depth), _image(*size)
    assert tile_count(*size, model, tile=tile) > 1
    tiled = predict_logits(model, image, tile=tile, bf16=False)
    whole = _whole(model, image)
    assert tiled.shape == whole.shape == size and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() < 1e-4


def test_the_tiled_mask_is_the_thresholded_whole_image_prediction():
    model, image = _model(2, seed=3), _image(301, 257, seed=1)
    mask = predict_mask(model, image, tile=112, bf16=False)
    whole = _whole(model, image)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    sure = np.abs(whole) > 1e-4  # away from the threshold, rounding cannot flip a pixel
    assert np.array_equal(mask[sure] == 255, whole[sure] > 0)


def test_in_bf16_the_tiles_blend_to_the_whole_image_within_bf16_rounding():
    # where the CPU multiplies bf16 natively prediction runs in it by default
    model, image = _model(2, seed=3), _image(301, 257, seed=1)
    tiled = predict_logits(model, image, tile=112, bf16=True)
    whole = _whole(model, image)
    scale = np.abs(whole).max()
    assert np.abs(tiled - whole).max() < 0.02 * scale  # bf16 keeps 8 bits of mantissa
    mask = predict_mask(model, image, tile=112, bf16=True)
    assert ((mask == 255) == (whole > 0)).mean() > 0.999


def test_an_image_that_fits_is_predicted_in_one_piece():
    model, image = _model(2), _image(100, 90)
    calls = []
    logits = predict_logits(model, image, tile=112, bf16=False,
                            on_tile=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]
    assert np.abs(logits - _whole(model, image)).max() < 1e-6


def test_progress_comes_after_every_tile():
    model, image = _model(2), _image(301, 257)
    calls = []
    predict_mask(model, image, tile=112, on_tile=lambda d, t: calls.append((d, t)))
    total = tile_count(301, 257, model, tile=112)
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_edge_weights_are_zero_near_cut_edges_and_one_at_image_edges():
    w = edge_weight(100, 20, 8, cut_before=True, cut_after=True)
    assert (w[:20] == 0).all() and (w[80:] == 0).all() and (w[28:72] == 1).all()
    assert (np.diff(w[20:28]) > 0).all() and 0 < w[20] < w[27] < 1
    assert (edge_weight(50, 20, 8, False, False) == 1).all()


def _peak_bytes(model: UNet, image: np.ndarray) -> int:
    tracemalloc.start()
    try:
        predict_mask(model, image, tile=160)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_grows_with_the_uint8_mask_only():
    """Twice the rows: the peak grows by the mask's extra bytes (one per pixel), not by the
    four or more per pixel that full-size probabilities would take."""
    model = _model(2)
    short, tall = _image(1200, 200), _image(2400, 200)
    growth = _peak_bytes(model, tall) - _peak_bytes(model, short)
    extra_pixels = 1200 * 200
    assert growth < 1.5 * extra_pixels, growth


def test_predict_folder_reports_each_tile_of_a_large_image(tmp_path):
    base = make_tiny_base(tmp_path / "base.safetensors", width=4, depth=2)
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(_image(1100, 200)).save(images / "wide.png")
    Image.fromarray(_image(64, 64)).save(images / "small.png")
    events = list(predict_folder(images, tmp_path / "out", base=base, device="cpu"))
    tile_events = [e for e in events if e.tiles]
    assert tile_events and all(e.message.startswith("wide.png: tile ") for e in tile_events)
    assert [e.tile for e in tile_events] == list(range(1, tile_events[0].tiles + 1))
    written = np.asarray(Image.open(tmp_path / "out" / "wide.png"))
    assert written.shape == (1100, 200) and written.dtype == np.uint8
    assert [e.message for e in events if not e.tiles] == ["small.png", "wide.png"]


def test_the_tile_is_never_smaller_than_four_margins():
    model = _model(3)
    assert tiling.receptive_radius(model) == 64
    assert tile_count(300, 300, model, tile=64) == tile_count(300, 300, model, tile=256)
