"""bioimage.io model packages: built and validated with bioimageio.spec, every weight
format reproducing the package's test output in bioimageio.core, offline; the package's
prediction agrees with ``loragui predict``; ``loragui info`` names its origin."""

from __future__ import annotations

import json
import socket
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from loragui.cli import main
from loragui.engine.errors import LoraGuiError
from loragui.engine.events import RunFinished
from loragui.engine.train import run_training
from tests.tiny import tiny_config

pytest.importorskip("bioimageio.spec", reason='the bioimageio extra is not installed '
                                              '(pip install "loragui[bioimageio]")')
pytest.importorskip("bioimageio.core", reason='the bioimageio extra is not installed '
                                              '(pip install "loragui[bioimageio]")')
pytest.importorskip("onnx", reason="the onnx extra is not installed")

from loragui.engine.bioimageio_export import PackageIdentity, export_bioimageio  # noqa: E402
from loragui.engine.bioimageio_read import (  # noqa: E402
    INSTALL,
    model_tests,
    require_bioimageio,
    validate_package,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bioimageio")
    config = tiny_config(root)
    finished = [e for e in run_training(config) if isinstance(e, RunFinished)]
    assert finished and finished[0].output
    images = sorted((root / "data" / "images").iterdir())
    return root, config, finished[0].output, images


@pytest.fixture(scope="module")
def package(trained):
    """The package of the trained adapter, written with every socket refused."""
    root, config, adapter, images = trained
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args)[:80])
        raise OSError("network access attempted while exporting a bioimage.io package")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex"):
            mp.setattr(socket.socket, name, refuse)
        mp.setattr(socket, "create_connection", refuse)
        path = export_bioimageio(adapter, root / "model.zip", test_image=images[0],
                                 base=config.base, identity=PackageIdentity(["Ada Lovelace"]))
        status = validate_package(path)
        tests = model_tests(path)
    assert not attempts, attempts
    return path, status, tests


def test_the_package_passes_validation_and_every_weight_format_its_model_test(package):
    path, status, tests = package
    assert status in ("valid-format", "passed")
    assert tests == {"pytorch_state_dict": "passed", "torchscript": "passed", "onnx": "passed"}
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        readme = z.read("README.md").decode()
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "weights.onnx", "unet.py",
            "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    assert "fingerprint" in readme and "validation metrics" in readme and "base model" in readme


def test_the_description_says_axes_sizes_preprocessing_and_sigmoid(package):
    from bioimageio.spec import load_model_description

    descr = load_model_description(package[0], perform_io_checks=False)
    (inp,), (out,) = descr.inputs, descr.outputs
    assert [str(a.id) for a in inp.axes] == ["batch", "channel", "y", "x"]
    y = inp.axes[2].size
    assert (y.min, y.step) == (4, 4)  # the tiny model pools twice: multiples of 2**2
    steps = [p.id for p in inp.preprocessing]
    assert "scale_range" in steps and "clip" in steps
    scale = next(p for p in inp.preprocessing if p.id == "scale_range")
    assert (scale.kwargs.min_percentile, scale.kwargs.max_percentile) == (1.0, 99.8)
    assert [p.id for p in out.postprocessing][0] == "sigmoid"
    assert descr.weights.onnx.opset_version >= 17
    assert [a.name for a in descr.authors] == ["Ada Lovelace"] and str(descr.license) == "MIT"


def test_the_package_predicts_what_loragui_predict_writes(trained, package, tmp_path):
    from bioimageio.core import predict
    from bioimageio.spec import load_model_description

    root, config, adapter, images = trained
    fresh = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    fresh[8:24, 8:28] = 200  # a bright blob, like a nucleus
    (tmp_path / "in").mkdir()
    Image.fromarray(fresh).save(tmp_path / "in" / "fresh.png")
    assert main(["predict", "--images", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--adapter", str(adapter), "--base", str(config.base), "--device", "cpu"]) == 0
    want = np.asarray(Image.open(tmp_path / "out" / "fresh.png")) > 0
    descr = load_model_description(package[0], perform_io_checks=False)
    x = fresh.transpose(2, 0, 1)[None].astype(np.float32)
    sample = predict(model=descr, inputs={"raw": x})
    got = np.asarray(sample.members["probability"].data)[0, 0] > 0.5
    assert got.shape == want.shape
    # loragui rounds the scaled pixels to 255 levels; the package does not
    assert (got == want).mean() > 0.98


def test_info_names_the_base_model_and_adapter_of_a_package(package, capsys):
    assert main(["info", str(package[0]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "bioimage.io model package"
    assert info["source"] == "merged" and len(info["base_sha256"]) == 64
    assert info["adapter"]["dataset"]["fingerprint"]
    assert info["weights"] == ["pytorch_state_dict", "torchscript", "onnx"]


def test_an_existing_package_is_replaced_only_with_overwrite(trained, capsys):
    root, config, adapter, images = trained
    dest = root / "taken.zip"
    dest.write_bytes(b"the user's file")
    argv = ["export", str(adapter), "--bioimageio", str(dest), "--base", str(config.base),
            "--author", "Ada Lovelace", "--test-image", str(images[0])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert dest.read_bytes() == b"the user's file"


def test_the_authors_are_asked_for_and_remembered(trained, capsys):
    from loragui.gui.prefs import Preferences

    root, config, adapter, images = trained
    argv = ["export", str(adapter), "--base", str(config.base), "--test-image", str(images[0])]
    assert main(argv + ["--bioimageio", str(root / "a.zip")]) == 2
    assert "--author NAME" in capsys.readouterr().err
    assert not (root / "a.zip").exists()
    assert main(argv + ["--bioimageio", str(root / "b.zip"), "--author", "Grace Hopper",
                        "--license", "CC-BY-4.0"]) == 0
    out = capsys.readouterr().out
    assert "validated by bioimageio.spec" in out and "onnx passed" in out
    prefs = Preferences.load()  # the next export (here or in the window) starts from them
    assert (prefs.package_authors, prefs.package_license) == (["Grace Hopper"], "CC-BY-4.0")
    assert main(["info", str(root / "b.zip"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["authors"] == ["Grace Hopper"] and info["license"] == "CC-BY-4.0"


def test_a_missing_extra_gets_one_message_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)
    with pytest.raises(LoraGuiError, match=INSTALL.replace("[", r"\[").replace("]", r"\]")):
        require_bioimageio()


def test_a_base_model_with_two_output_channels_packages_two_channels(tmp_path):
    import torch
    from bioimageio.spec import load_model_description

    from loragui.engine.basemodel import save_model
    from loragui.engine.preprocessing import Preprocessing
    from loragui.engine.unet import UNet, UNetConfig

    torch.manual_seed(0)
    base = save_model(UNet(UNetConfig(in_channels=1, out_channels=2, width=4, depth=2)),
                      tmp_path / "two.safetensors",
                      preprocessing=Preprocessing(channels=1).to_dict())
    image = tmp_path / "grey.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 65535, (30, 22), np.uint16)).save(image)
    path = export_bioimageio(base, tmp_path / "two.zip", test_image=image,
                             identity=PackageIdentity(["Ada Lovelace"]))
    descr = load_model_description(path, perform_io_checks=True)
    (inp,), (out,) = descr.inputs, descr.outputs
    assert [str(c) for c in out.axes[1].channel_names] == ["class0", "class1"]
    assert len(inp.axes[1].channel_names) == 1
    assert np.load(zipfile.ZipFile(path).open("test_input.npy")).shape == (1, 1, 28, 20)
    assert descr.config.model_dump()["loragui"]["source"] == "base"
