"""The decoded data set, the split and the crop sampler."""

from __future__ import annotations

import io
import os
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from loragui.engine import imageio
from loragui.engine.dataset import DecodedDataset, split_indices
from loragui.engine.errors import DataError
from loragui.engine.imageio import read_image
from loragui.engine.model_input import to_model_input
from loragui.engine.pairing import pair_folders
from loragui.engine.pairing_report import Pair, PairingReport
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.sampler import CropSampler
from tests.datakit import PREP, REAL_DATA, grey_picture, tiny_pairs, write_image
from tests.messy import (
    blob_mask,
    make_tiny_dataset,
    write_big_png,
    write_declared_png,
)

# Decoded data


def test_build_decodes_each_file_once(tmp_path, monkeypatch):
    pairs = tiny_pairs(tmp_path, n=5)
    opened: list[str] = []
    real = Image.open

    def counting(fp, *args, **kwargs):
        opened.append(getattr(fp, "name", str(fp)))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    data = DecodedDataset.build(pairs, PREP)
    assert len(opened) == 10 and len(set(opened)) == 10
    sampler = CropSampler(data, 8, seed=0)
    for _ in range(20):
        sampler.sample(4)
    assert len(opened) == 10  # training never goes back to the files


def test_build_shapes_subset_nbytes(tmp_path):
    pairs = tiny_pairs(tmp_path, n=4, size=16)
    data = DecodedDataset.build(pairs, PREP)
    assert data.names == [p.stem for p in pairs]
    assert data.nbytes() == 4 * (16 * 16 * 3 + 16 * 16)
    sub = data.subset([2, 0])
    assert sub.names == [data.names[2], data.names[0]]
    assert sub.images[0] is data.images[2]  # shared, not copied
    assert len(sub) == 2


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    pairs = tiny_pairs(tmp_path, n=3)
    a = DecodedDataset.build(pairs, PREP)
    b = DecodedDataset.build(pairs, PREP)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    b.images[1] = b.images[1].copy()
    b.images[1][0, 0, 0] ^= 1
    assert a.fingerprint() != b.fingerprint()
    assert a.subset([0, 1]).fingerprint() != a.fingerprint()
    c = DecodedDataset.build(pairs, Preprocessing(channels=1))
    assert c.fingerprint() != a.fingerprint()


def test_max_bytes(tmp_path):
    pairs = tiny_pairs(tmp_path, n=4, size=16)
    need = 4 * 16 * 16 * 4
    DecodedDataset.build(pairs, PREP, max_bytes=need)
    with pytest.raises(DataError, match=r"GB of memory .* fewer or smaller images"):
        DecodedDataset.build(pairs, PREP, max_bytes=need - 1)
    unknown = [Pair(p.stem, p.image, p.mask) for p in pairs]  # no scanned sizes: checked as it goes
    with pytest.raises(DataError, match="fewer or smaller"):
        DecodedDataset.build(unknown, PREP, max_bytes=need - 1)


def test_folder_deleted_while_building(tmp_path):
    pairs = tiny_pairs(tmp_path, n=30, size=8)
    images_dir = pairs[0].image.parent

    def progress(done, total):
        if images_dir.exists():
            shutil.rmtree(images_dir)

    with pytest.raises(DataError, match="disappeared while loading"):
        DecodedDataset.build(pairs, PREP, progress=progress)


def test_file_changed_after_scan(tmp_path):
    pairs = tiny_pairs(tmp_path, n=3)
    pairs[1].image.write_bytes(b"not a png any more")
    with pytest.raises(DataError, match=f"Cannot load {pairs[1].image.name}: .*scan again"):
        DecodedDataset.build(pairs, PREP)
    write_image(pairs[1].image, np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DataError, match="changed since the folders were scanned"):
        DecodedDataset.build(pairs, PREP)


def test_build_needs_pairs():
    with pytest.raises(DataError):
        DecodedDataset.build([], PREP)


# --------------------------------------------------------------------------
# Split


def test_split_basic_cases():
    assert split_indices(0, 0.2, 0) == ([], [])
    assert split_indices(1, 0.2, 0) == ([0], [0])
    assert split_indices(1, 0.0, 0) == ([0], [])
    assert split_indices(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])
    train, val = split_indices(2, 0.2, 0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_indices(10, 0.3, 7)
    assert len(val) == 3 and sorted(train + val) == list(range(10))
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(DataError):
            split_indices(10, bad, 0)


def test_split_ignores_global_random_state():
    import random

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    a = split_indices(50, 0.2, 3)
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    assert split_indices(50, 0.2, 3) == a
    assert split_indices(50, 0.2, 4) != a
    assert a == split_indices(50, 0.2, 3)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), fraction=st.floats(0, 0.95), seed=st.integers(0, 2**32))
def test_split_properties(n, fraction, seed):
    train, val = split_indices(n, fraction, seed)
    assert (train, val) == split_indices(n, fraction, seed)
    if n >= 2:
        assert not set(train) & set(val)
        assert sorted(train + val) == list(range(n))
        assert len(train) >= 1
        assert (len(val) >= 1) == (fraction > 0)


# --------------------------------------------------------------------------
# Crop sampler


def _aligned_dataset(n: int = 3, size: int = 40, seed: int = 0) -> DecodedDataset:
    """Images whose every channel is 255 exactly where the mask is 1 (and
    asymmetric, so a wrong flip shows)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        h, w = size + 7 * i, size + 3 * i
        mask = (rng.random((h, w)) > 0.6).astype(np.uint8)
        images.append(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8))
        masks.append(mask)
    return DecodedDataset([f"a{i}" for i in range(n)], images, masks)


def test_sampler_shapes_types_ranges():
    sampler = CropSampler(_aligned_dataset(), 16, "cpu", seed=0)
    x, y = sampler.sample(6)
    assert x.shape == (6, 3, 16, 16) and y.shape == (6, 1, 16, 16)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.device.type == "cpu" and y.device.type == "cpu"
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}


def test_sampler_keeps_masks_aligned_under_flips_and_rotations():
    sampler = CropSampler(_aligned_dataset(), 16, seed=5, intensity=False)
    for _ in range(10):
        x, y = sampler.sample(8)
        assert torch.equal((x[:, 0:1] > 0.5).float(), y)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_sampler_augments_with_the_8_symmetries():
    data = _aligned_dataset(n=2, size=24)
    for image in data.images:  # make channels differ: a wrong op shows
        image[..., 1] = np.arange(image.shape[1], dtype=np.uint8)[None, :] * 3
        image[..., 2] = np.arange(image.shape[0], dtype=np.uint8)[:, None] * 5
    plain = CropSampler(data, 12, seed=9, augment=False)
    augmented = CropSampler(data, 12, seed=9, augment=True, intensity=False)
    seen = set()
    for _ in range(8):
        xp, yp = plain.sample(16)
        xa, ya = augmented.sample(16)
        for b in range(16):
            z, za = torch.cat([xp[b], yp[b]]), torch.cat([xa[b], ya[b]])
            ops = [k for k, t in enumerate(_symmetries(z)) if torch.equal(t, za)]
            assert ops, "augmented crop is not a flip/rotation of the plain crop"
            seen.add(ops[0])
    assert len(seen) == 8


def _symmetries(z: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(z, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_sampler_intensity_augmentation():
    data = DecodedDataset(["g"], [np.full((32, 32, 3), 128, np.uint8)],
                          [np.zeros((32, 32), np.uint8)])
    x, _ = CropSampler(data, 16, seed=0).sample(32)
    means = x.mean(dim=(1, 2, 3))
    assert float(means.std()) > 0.02  # brightness/contrast/gamma differ per sample
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    x2, _ = CropSampler(data, 16, seed=0, intensity=False).sample(32)
    assert torch.allclose(x2, torch.full_like(x2, 128 / 255))


def test_sampler_reproducible_and_resumable():
    data = _aligned_dataset()
    a, b = CropSampler(data, 16, seed=3), CropSampler(data, 16, seed=3)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.sample(4), b.sample(4)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(CropSampler(data, 16, seed=4).sample(4)[0], CropSampler(data, 16,
                                                                                   seed=3).sample(4)[0])
    state = a.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a checkpoint holds it, loaded with weights_only=True
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    expected = a.sample(5)
    c = CropSampler(data, 16, seed=999)
    c.load_state_dict(restored)
    got = c.sample(5)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    with pytest.raises(DataError):
        c.load_state_dict({"nothing": 1})


def test_sampler_pads_small_images_consistently():
    data = _aligned_dataset(n=2, size=10)  # 10x10 and 17x13, crop 24: mirrored or zero-padded
    data.images.append(np.full((3, 3, 3), 255, np.uint8))  # too small to mirror: zeros
    data.masks.append(np.ones((3, 3), np.uint8))
    data.names.append("tiny")
    sampler = CropSampler(data, 24, seed=0, intensity=False)
    for _ in range(5):
        x, y = sampler.sample(8)
        assert x.shape == (8, 3, 24, 24)
        assert torch.equal((x[:, 0:1] > 0.5).float(), y)  # padding keeps image and mask agreeing


def test_sampler_weights_images_by_area():
    big = np.zeros((64, 64, 3), np.uint8)
    small = np.full((16, 16, 3), 255, np.uint8)
    data = DecodedDataset(["big", "small"], [big, small],
                          [np.zeros((64, 64), np.uint8), np.ones((16, 16), np.uint8)])
    y = CropSampler(data, 16, seed=0, augment=False).sample(4000)[1]
    share_small = float(y.mean())
    assert abs(share_small - 1 / 17) < 0.02


def test_sampler_rejects_bad_arguments():
    with pytest.raises(DataError):
        CropSampler(DecodedDataset([], [], []), 16)
    with pytest.raises(DataError):
        CropSampler(_aligned_dataset(), 0)


def test_to_model_input():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = to_model_input(image)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.allclose(x[0, 1], torch.from_numpy(image[..., 1]).float() / 255)


# --------------------------------------------------------------------------
# The tiny dataset other tests train on


def test_make_tiny_dataset(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=6, size=32, seed=0)
    report = pair_folders(images, masks)
    assert len(report.pairs) == 6 and not report.problem_groups()
    data = DecodedDataset.build(report.pairs, PREP)
    for image, mask in zip(data.images, data.masks, strict=True):
        assert 0.03 < mask.mean() < 0.6
        inside, outside = image[mask == 1].mean(), image[mask == 0].mean()
        assert inside > outside + 80  # bright blobs on a dark background
    again = make_tiny_dataset(tmp_path / "again", n=6, size=32, seed=0)
    assert (again[0] / "tiny_03.png").read_bytes() == (images / "tiny_03.png").read_bytes()


# --------------------------------------------------------------------------
# Real data (CC0 Data Science Bowl 2018), when present beside the checkout


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="shared/data/dsb2018 is not present")
@pytest.mark.parametrize("kind", ["fluorescence", "histology", "brightfield"])
def test_real_data_pairs_cleanly(kind):
    images, masks = REAL_DATA / kind / "images", REAL_DATA / kind / "masks"
    report = pair_folders(images, masks)
    n = len(list(images.glob("*.png")))
    assert len(report.pairs) == n
    assert report.summary().splitlines()[1:] == []
    data = DecodedDataset.build(report.pairs[:6], PREP)
    for image, mask in zip(data.images, data.masks, strict=True):
        assert image.shape[:2] == mask.shape and image.shape[2] == 3
        assert 0 < mask.mean() < 1
    x, y = CropSampler(data, 128, seed=0).sample(4)
    assert x.shape == (4, 3, 128, 128) and 0 < float(y.mean()) < 1


# --------------------------------------------------------------------------
# Scale


@pytest.mark.slow
def test_10000_pairs_are_all_paired(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    # Four distinct 8x8 PNG pairs, each hard-linked 2,500 times: the scan opens,
    # parses and decodes every name exactly as for distinct files, and this VM
    # creates links ~20x faster than new files (keeps the test under 10 s).
    rng = np.random.default_rng(0)
    sources = []
    for k in range(4):
        pic, msk = tmp_path / f"src{k}.png", tmp_path / f"src{k}_mask.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(pic)
        Image.fromarray((rng.random((8, 8)) > 0.5).astype(np.uint8) * 255).save(msk)
        sources.append((pic, msk))
    for i in range(10_000):
        pic, msk = sources[i % 4]
        try:
            os.link(pic, images / f"img_{i:05d}.png")
            os.link(msk, masks / f"img_{i:05d}_mask.png")
        except OSError:  # no hard links here: copy
            shutil.copyfile(pic, images / f"img_{i:05d}.png")
            shutil.copyfile(msk, masks / f"img_{i:05d}_mask.png")
    report = pair_folders(images, masks)  # its speed: benchmarks/pairing.py
    assert len(report.pairs) == 10_000 and not report.problem_groups()
    assert report.pairs[9_999].image.name == "img_09999.png"
    assert report.pairs[9_999].mask.name == "img_09999_mask.png"


@pytest.mark.slow
def test_20000_square_image_loads_but_bigger_is_refused(tmp_path):
    path = tmp_path / "slide.png"
    write_big_png(path, 20_000)
    assert path.stat().st_size < 5_000_000
    header = imageio.probe_image(path)
    assert header.size == (20_000, 20_000)
    image = read_image(path, Preprocessing(channels=1))
    assert image.shape == (20_000, 20_000, 1)
    assert image[0, 10_000, 0] == 0 and image[7, 10_000, 0] == 255 and image[7, 0, 0] == 0
    del image
    write_declared_png(tmp_path / "slightly_bigger.png", 20_001, 20_000)
    with pytest.raises(DataError, match="20001×20000 pixels, more than the 400 megapixel limit"):
        imageio.probe_image(tmp_path / "slightly_bigger.png")


def test_nfc_and_nfd_names_pair(tmp_path):
    images, masks = tmp_path / "i", tmp_path / "m"
    images.mkdir()
    masks.mkdir()
    write_image(images / (unicodedata.normalize("NFD", "Zelle_ä") + ".png"), grey_picture())
    write_image(masks / (unicodedata.normalize("NFC", "Zelle_ä") + "_mask.png"), blob_mask())
    assert len(pair_folders(images, masks).pairs) == 1


def test_report_type():
    report = PairingReport(Path("/a"), Path("/b"))
    assert not report.ok and report.problem_groups() == []
    assert report.summary().startswith("No pairs found in /a and /b.")
