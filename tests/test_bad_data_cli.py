"""Bad data on the command line: every case of ``tests/messy.py`` through
``loragui train`` / ``evaluate`` / ``predict``.

Either the data is used (and the printed report says how many pairs, and what
was wrong with the rest) or the command exits with status 2 and one clear
message, never a traceback. The messy-folder run is a real subprocess; the
other cases call ``loragui.cli.main`` in this process, which is
what ``python -m loragui`` runs (``sys.exit(main())``), to stay fast; the exit
status of a real process for a bad folder is checked in ``test_cli.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui import cli
from tests.datakit import deny_reading
from tests.messy import (
    _grey8,
    _mask8,
    make_messy_dataset,
    make_tiny_dataset,
    write_big_png,
    write_declared_png,
)
from tests.tiny import make_tiny_base

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--steps", "2", "--steps-per-epoch", "2", "--batch-size", "2", "--crop-size", "16",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("base") / "base.safetensors", width=4)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_messy_dataset(tmp_path_factory.mktemp("messy"))


def loragui(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "loragui", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)


def main(capsys, *args) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def folders(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    return images, masks


def save(path: Path, arr: np.ndarray, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def rgb() -> np.ndarray:
    return np.stack([_grey8(1), _grey8(2), _grey8(3)], axis=2)


# --------------------------------------------------------------------------
# The whole messy folder: trained on, with every problem reported


def test_train_on_the_messy_folder(messy, base, tmp_path):
    e = messy
    run = tmp_path / "run"
    p = loragui("train", "--images", e.images_dir, "--masks", e.masks_dir, "--out", run,
                "--base", base, *FAST)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    out = p.stdout
    n = len(e.pairs)
    assert f"\n{n} pairs found in {e.images_dir} and {e.masks_dir}.\n" in "\n" + out
    started = next(line for line in out.splitlines() if line.startswith("training lora"))
    n_train, n_val = (int(w) for w in
                      started.split(": ")[1].replace(" train /", "").split()[:2])
    assert n_train + n_val == n
    # every problem, each on its own "warning:" line, with the file names
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    expected_lines = {
        f"Unreadable files ({len(e.unreadable)})": [k for k in e.unreadable],
        "Image and mask sizes differ (1)": ["mismatch (image 24×16, mask 20×16)"],
        "Images without masks (1)": ["lonely.png"],
        "Masks without images (1)": ["orphan.png"],
        "Same name with several extensions (1)": ["dup (used dup.tif, ignored dup.jpg)"],
        "Masks with more than two values (2)": ["labels.png", "labels16.png"],
        "Masks without any foreground (1)": ["empty.png"],
        "Masks that are all foreground (1)": ["full.png"],
        f"Ignored files and folders ({len(e.ignored_files)})": sorted(e.ignored_files),
        "Notes (4)": sorted(e.notes_mention),
        "Masks stored as JPEG (1)": sorted(e.lossy_masks),
    }
    for title, names in expected_lines.items():
        line = next((w for w in warnings if w.startswith(f"warning: {title}: ")), None)
        assert line is not None, (title, warnings)
        for name in names:
            assert name in line, (name, line)
    unreadable = next(w for w in warnings if w.startswith("warning: Unreadable files"))
    for name, words in e.unreadable.items():
        reason = unreadable.split(name + ": ", 1)[1].split("; ")[0]
        assert words.lower() in reason.lower() or (name.endswith("cuttiff.tif")
                                                   and "damaged" in reason), (name, reason)
    notes = next(w for w in warnings if w.startswith("warning: Notes"))
    assert "exif_rotated.jpg: EXIF rotation applied" in notes
    assert "exif_stored.jpg: its EXIF tag says to rotate it, but its mask matches the image as " \
           "stored, so it is used unrotated" in notes
    assert "animated.gif: has several frames (animated or multi-page); the first is used" in notes
    assert "finished after 2 steps" in out and f"wrote {run / 'adapter'}" in out
    record = json.loads((run / "run.json").read_text())
    assert record["dataset"]["pairs"] == n
    assert len(record["pairing_problems"][f"Unreadable files ({len(e.unreadable)})"]) \
        == len(e.unreadable)


def test_evaluate_and_predict_on_the_messy_folder(messy, base, tmp_path, capsys):
    e = messy
    status, out, err = main(capsys, "evaluate", "--images", e.images_dir, "--masks", e.masks_dir,
                            "--base", base, "--device", "cpu", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["images"] == len(e.pairs)
    assert result["skipped"] == len(e.unreadable) + 2  # + lonely.png + the size mismatch
    pred = tmp_path / "pred"
    status, out, err = main(capsys, "predict", "--images", e.images_dir, "--out", pred,
                            "--base", base, "--device", "cpu")
    assert status == 0 and "Traceback" not in err
    skipped = [line for line in err.splitlines() if line.startswith("skipped: ")]
    unreadable_images = [k for k in e.unreadable if k.startswith("images/")
                         and not k.endswith(("loop.png", "dangling.png"))]
    assert len(skipped) == len(unreadable_images), skipped
    for name in unreadable_images:
        assert any(Path(name).name in line for line in skipped), name
    written = {p.name for p in pred.iterdir()}
    assert {"grey16tif.png", "float32.png", "cmyk.png", "animated.png", "tiny8.png",
            "cell ä 1.png", "細胞.png"} <= written
    assert not any(n.endswith(".tmp") for n in written)
    mask = np.array(Image.open(pred / "exif_rotated.png"))
    assert mask.shape == (24, 16)  # the EXIF rotation applied: the upright photo's size


# --------------------------------------------------------------------------
# Folders that cannot be used: exit status 2, the reason, no traceback


def _case_empty(tmp):
    images, masks = folders(tmp)
    save(masks / "a.png", _mask8())
    return images, masks


def _case_no_images(tmp):
    images, masks = folders(tmp)
    (images / "README.txt").write_text("my images")
    (images / "data.csv").write_text("a,b\n")
    (images / ".DS_Store").write_bytes(b"\0")
    save(masks / "a.png", _mask8())
    return images, masks


def _case_only_subfolders(tmp):
    images, masks = folders(tmp)
    (images / "batch1").mkdir()
    save(images / "batch1" / "a.png", rgb())
    save(masks / "a.png", _mask8())
    return images, masks


def _case_only_masks_in_one_folder(tmp):
    images, _ = folders(tmp)
    for stem in ("a", "b"):
        save(images / f"{stem}_mask.png", _mask8())
    return images, images


def _case_empty_masks_folder(tmp):
    images, masks = folders(tmp)
    save(images / "a.png", rgb())
    return images, masks


def _case_no_matching_names(tmp):
    images, masks = folders(tmp)
    for stem in ("cell1", "cell2"):
        save(images / f"{stem}.png", rgb())
    for stem in ("other1", "other2"):
        save(masks / f"{stem}.png", _mask8())
    return images, masks


def _case_all_unreadable(tmp):
    images, masks = folders(tmp)
    good = save(images / "good.png", rgb()).read_bytes()
    (images / "good.png").unlink()
    (images / "zero.png").write_bytes(b"")
    (images / "cut.png").write_bytes(good[: len(good) // 2])
    save(images / "cutjpeg.jpg", rgb(), quality=95)
    data = (images / "cutjpeg.jpg").read_bytes()
    (images / "cutjpeg.jpg").write_bytes(data[: len(data) * 2 // 3])
    save(images / "cuttiff.tif", rgb())
    data = (images / "cuttiff.tif").read_bytes()
    (images / "cuttiff.tif").write_bytes(data[: len(data) // 2])
    write_declared_png(images / "bomb.png", 100_000, 100_000)
    os.symlink("loop.png", images / "loop.png")
    for stem in ("zero", "cut", "cutjpeg", "cuttiff", "bomb", "loop"):
        save(masks / f"{stem}.png", _mask8())
    return images, masks


def _case_sizes_differ(tmp):
    images, masks = folders(tmp)
    save(images / "a.png", rgb())
    save(masks / "a.png", _mask8(20, 16))
    write_declared_png(images / "slide.png", 20_000, 20_000)  # a 20,000² slide: only its header is read
    save(masks / "slide.png", _mask8())
    return images, masks


CASES = {
    "empty images folder": (_case_empty, "The images folder {images} holds no images (PNG, JPEG, "
                                         "TIFF, BMP, GIF)."),
    "no images, only other files": (_case_no_images, "{images} holds no images"),
    "images only in subfolders": (_case_only_subfolders, "Only files directly inside it are read, "
                                                         "not its subfolders."),
    "only masks, one folder": (_case_only_masks_in_one_folder,
                               "was given for images and masks, and nothing tells them apart"),
    "empty masks folder": (_case_empty_masks_folder, "The masks folder {masks} holds no images"),
    "names do not match": (_case_no_matching_names,
                           "No pairs found in {images} and {masks}.\nImages without masks (2): "
                           "cell1.png, cell2.png."),
    "every image unreadable": (_case_all_unreadable, "Unreadable files (6): images/bomb.png: "
                                                     "declares 100000×100000 pixels"),
    "sizes differ": (_case_sizes_differ, "Image and mask sizes differ (2): a (image 24×16, mask "
                                         "20×16); slide (image 20000×20000, mask 24×16)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unusable_folders_exit_2_with_the_reason(case, base, tmp_path, capsys):
    make, expected = CASES[case]
    images, masks = make(tmp_path)
    expected = expected.format(images=images, masks=masks)
    for command in (["train", "--out", tmp_path / "run", *FAST],
                    ["evaluate", "--device", "cpu"]):
        status, out, err = main(capsys, command[0], "--images", images, "--masks", masks,
                                "--base", base, *command[1:])
        assert status == 2, (case, command[0], out, err)
        assert err.startswith("loragui: error: "), err
        assert expected in err, (case, command[0], err)
        assert "Traceback" not in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_every_unreadable_reason_is_given(tmp_path, base, capsys):
    images, masks = _case_all_unreadable(tmp_path)
    status, out, err = main(capsys, "train", "--images", images, "--masks", masks, "--out",
                            tmp_path / "run", "--base", base, *FAST)
    assert status == 2
    for name, words in [("zero.png", "empty (0 bytes)"), ("cut.png", "truncated"),
                        ("cutjpeg.jpg", "truncated"), ("cuttiff.tif", ""),
                        ("bomb.png", "more than the 400 megapixel limit"),
                        ("loop.png", "loop")]:
        line = err.split(f"images/{name}: ", 1)[1].split(";")[0]
        assert words in line, (name, line)


def test_unreadable_file_permission_denied(tmp_path, base, capsys, monkeypatch):
    """A file nobody may read (simulated: tests run as root, who reads everything)."""
    images, masks = make_tiny_dataset(tmp_path, n=4, size=16)
    deny_reading(monkeypatch, "images", "tiny_01.png")
    status, out, err = main(capsys, "train", "--images", images, "--masks", masks, "--out",
                            tmp_path / "run", "--base", base, *FAST)
    assert status == 0, err
    assert "3 pairs found" in out
    assert "warning: Unreadable files (1): images/tiny_01.png: permission denied (check the " \
           "file's access rights)." in out


def test_missing_folder_or_a_file_given(tmp_path, base, capsys):
    images, masks = make_tiny_dataset(tmp_path, n=2, size=16)
    a_file = images / "tiny_00.png"
    for bad, command, words in [
            (tmp_path / "nope", ["train", "--out", tmp_path / "run", *FAST], "no such folder"),
            (a_file, ["train", "--out", tmp_path / "run", *FAST], "is a file, not a folder"),
            (tmp_path / "nope", ["evaluate"], "does not exist"),
            (a_file, ["evaluate"], "is a file, not a folder")]:
        status, out, err = main(capsys, command[0], "--images", bad, "--masks", masks,
                                "--base", base, *command[1:])
        assert status == 2 and str(bad) in err and words in err and "Traceback" not in err, err


# --------------------------------------------------------------------------
# Small folders of one kind: trained on, with the right pair count


def _train_ok(capsys, images, masks, tmp_path, base, *extra) -> str:
    status, out, err = main(capsys, "train", "--images", images, "--masks", masks, "--out",
                            tmp_path / "run", "--base", base, *FAST, *extra)
    assert status == 0, out + err
    assert "Traceback" not in err
    return out


def test_tiny_8x8_images_train(tmp_path, base, capsys):
    images, masks = folders(tmp_path)
    for i in range(3):
        save(images / f"t{i}.png", _grey8(seed=i, width=8, height=8))
        save(masks / f"t{i}.png", _mask8(8, 8))
    out = _train_ok(capsys, images, masks, tmp_path, base, "--crop-size", "64")
    assert out.startswith(f"3 pairs found in {images} and {masks}.")
    assert "finished after 2 steps" in out


def test_high_bit_depth_cmyk_and_gif_images_train(tmp_path, base, capsys, messy):
    images, masks = folders(tmp_path)
    for name in ("grey16tif.tif", "float32.tif", "grey16.png", "cmyk.jpg", "animated.gif",
                 "palette.png", "rgba.png"):
        (images / name).write_bytes((messy.images_dir / name).read_bytes())
        save(masks / (Path(name).stem + ".png"), _mask8())
    out = _train_ok(capsys, images, masks, tmp_path, base)
    assert out.startswith("7 pairs found")
    assert "warning: Notes (1): animated.gif: has several frames" in out


def test_mask_kinds_train(tmp_path, base, capsys, messy):
    images, masks = folders(tmp_path)
    kinds = ["mask01.png", "mask1bit.png", "maskpalette.png", "maskrgb.png", "maskrgba.png",
             "maskalpha.png", "maskla.png", "labels.png", "empty.png", "full.png"]
    for name in kinds:
        (masks / name).write_bytes((messy.masks_dir / name).read_bytes())
        save(images / name, rgb())
    out = _train_ok(capsys, images, masks, tmp_path, base)
    assert out.startswith(f"{len(kinds)} pairs found")
    assert "warning: Masks with more than two values (1): labels.png." in out
    assert "warning: Masks without any foreground (1): empty.png." in out
    assert "warning: Masks that are all foreground (1): full.png." in out


def test_names_with_spaces_and_non_ascii_and_duplicate_stems(tmp_path, base, capsys):
    images, masks = folders(tmp_path)
    names = ["cell ä 1", "細胞", unicodedata.normalize("NFD", "Zelle_ö"), "dup"]
    for stem in names:
        save(images / f"{stem}.png", rgb())
        save(masks / (unicodedata.normalize("NFC", stem) + "_mask.png"), _mask8())
    save(images / "dup.jpg", rgb())
    out = _train_ok(capsys, images, masks, tmp_path, base)
    assert out.startswith("4 pairs found")
    assert "warning: Same name with several extensions (1): dup (used dup.png, ignored " \
           "dup.jpg)." in out


def test_exif_rotated_photo_with_disagreeing_mask(tmp_path, base, capsys):
    images, masks = folders(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90° clockwise
    Image.fromarray(rgb()).save(images / "upright.jpg", exif=exif, quality=95)
    save(masks / "upright.png", _mask8(16, 24))  # drawn on the upright photo: agrees
    Image.fromarray(rgb()).save(images / "sideways.jpg", exif=exif, quality=95)
    save(masks / "sideways.png", _mask8(24, 16))  # drawn on the stored pixels
    Image.fromarray(rgb()).save(images / "neither.jpg", exif=exif, quality=95)
    save(masks / "neither.png", _mask8(20, 20))  # fits no orientation
    out = _train_ok(capsys, images, masks, tmp_path, base)
    assert out.startswith("2 pairs found")
    assert "upright.jpg: EXIF rotation applied" in out
    assert "sideways.jpg: its EXIF tag says to rotate it, but its mask matches the image as " \
           "stored, so it is used unrotated" in out
    assert "warning: Image and mask sizes differ (1): neither (image 16×24, mask 20×20)" in out


@pytest.mark.skipif(os.environ.get("LORAGUI_SLOW_TESTS") != "1",
                    reason="about a minute and 5 GB of memory; set LORAGUI_SLOW_TESTS=1")
def test_20000_square_slide_trains(tmp_path, base, capsys):
    images, masks = folders(tmp_path)
    write_big_png(images / "slide.png", 20_000)
    write_big_png(masks / "slide.png", 20_000)
    out = _train_ok(capsys, images, masks, tmp_path, base, "--val-fraction", "0",
                    "--crop-size", "64")
    assert out.startswith("1 pair found")
