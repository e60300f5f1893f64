"""Base-model, adapter and merged-model files: round trips, both adapter forms,
provenance, the wrong base model, the PEFT-loadable export, and the command line's
``info``, ``merge`` and ``export`` (run in-process: same code as ``loragui ...``)."""

from __future__ import annotations

import json

import pytest
import torch

from loragui.cli import main
from loragui.engine.adapter_plan import apply_adapter
from loragui.engine.adapters import adapter_config, load_adapter, save_adapter, write_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.errors import AdapterMismatchError, ModelFileError
from loragui.engine.exports import export_adapter, merge_adapter_file, merged_model
from loragui.engine.formats import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, sha256_file
from loragui.engine.info import read_model_info
from loragui.engine.lora import LoRASettings, inject_lora, lora_layers, set_extra_trainable
from loragui.engine.safetensors_file import read_safetensors_header
from loragui.engine.train import run_training
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    return {
        "base": make_tiny_base(root / "base.safetensors", 4, 2, seed=0),
        "other": make_tiny_base(root / "other.safetensors", 4, 2, seed=1),
        "wide": make_tiny_base(root / "wide.safetensors", 8, 2, seed=0),
    }


def x_in(seed=0):
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def make_adapter(base, dest, *, single=False, exclude=("head",)):
    model, info = load_model(base)
    settings = LoRASettings(rank=2, alpha=4, targets=["*"], exclude=list(exclude))
    inject_lora(model, settings)
    trained = set_extra_trainable(model, biases=True, modules=["head"])
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    cfg = adapter_config(model, settings, trained=trained, modules_to_save=["head"],
                         loragui={"base_sha256": info.sha256, "base_name": info.name,
                                  "architecture": model.config.to_dict()})
    save_adapter(model, cfg, dest, single_file=single)
    model.eval()
    with torch.no_grad():
        return model(x_in())


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- models

def test_base_model_round_trip_and_info(models):
    model, info = load_model(models["base"])
    assert info.sha256 == sha256_file(models["base"])
    assert (info.architecture.width, info.architecture.depth) == (4, 2)
    assert info.metadata["format"] == "loragui.base"
    described = read_model_info(models["base"])
    assert described["kind"] == "base model" and described["sha256"] == info.sha256
    assert described["architecture"]["width"] == 4 and described["created"]
    assert described["parameters"] == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- adapters

@pytest.mark.parametrize("single", [False, True])
def test_adapter_round_trip_both_forms(models, tmp_path, single):
    dest = tmp_path / ("adapter.safetensors" if single else "adapter")
    want = make_adapter(models["base"], dest, single=single)
    if single:
        assert dest.is_file()
        _, meta = read_safetensors_header(dest)
        assert json.loads(meta["adapter_config"])["peft_type"] == "LORA"
    else:
        assert (dest / ADAPTER_CONFIG).is_file() and (dest / ADAPTER_WEIGHTS).is_file()
    model, *_ = merged_model(models["base"], dest)
    with torch.no_grad():
        assert torch.allclose(model(x_in()), want, atol=1e-5)


def test_folder_and_single_file_carry_the_same_adapter(models, tmp_path):
    make_adapter(models["base"], tmp_path / "a")
    export_adapter(tmp_path / "a", tmp_path / "a.safetensors", single_file=True)
    export_adapter(tmp_path / "a.safetensors", tmp_path / "b")
    a, b = load_adapter(tmp_path / "a"), load_adapter(tmp_path / "b")
    assert a.config == b.config
    assert a.tensors.keys() == b.tensors.keys()
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)


def test_provenance_recorded_by_training_and_shown_by_info(models, tmp_path, capsys):
    images, masks = make_tiny_dataset(tmp_path / "data", n=4, size=32)
    config = TrainConfig(images=str(images), masks=str(masks), out=str(tmp_path / "run"),
                         base=str(models["base"]), rank=2, alpha=4, epochs=1, steps_per_epoch=2,
                         batch_size=2, crop_size=32, val_fraction=0.25, device="cpu", previews=0)
    events = list(run_training(config))
    assert type(events[-1]).__name__ == "RunFinished", events[-1]
    adapter = tmp_path / "run" / "adapter"
    section = load_adapter(adapter).loragui
    assert section["base_sha256"] == sha256_file(models["base"])
    assert section["architecture"] == {"in_channels": 3, "out_channels": 1, "width": 4, "depth": 2}
    assert section["training"]["rank"] == 2 and section["training"]["lr"] == config.lr
    assert section["dataset"]["pairs"] == 4 and len(section["dataset"]["fingerprint"]) >= 16
    assert "dice" in section["metrics"]
    assert section["loragui_version"] and section["created"].startswith("20")
    # the default adapter covers the ConvTranspose2d layers: the config says so
    assert section["peft_loadable"] is False and section["conv_transpose_layers"] == ["up.0", "up.1"]

    code, out, _ = run_cli(capsys, "info", adapter, "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "adapter" and info["peft_loadable"] is False
    for key in ("base_sha256", "architecture", "training", "dataset", "metrics",
                "loragui_version", "created"):
        assert info[key], key
    code, out, _ = run_cli(capsys, "info", adapter)
    assert "peft_loadable: no" in out and "ConvTranspose2d" in out and "base_sha256:" in out

    merged = tmp_path / "merged.safetensors"
    code, out, _ = run_cli(capsys, "merge", "--adapter", adapter, "--base", models["base"],
                           "--out", merged)
    assert code == 0
    code, out, _ = run_cli(capsys, "info", merged, "--json")
    info = json.loads(out)
    assert info["kind"] == "merged model" and info["base_sha256"] == section["base_sha256"]
    assert info["adapter"]["dataset"]["fingerprint"] == section["dataset"]["fingerprint"]
    assert info["adapter"]["metrics"] == section["metrics"] and info["adapter_sha256"]
    code, out, _ = run_cli(capsys, "info", models["base"])
    assert code == 0 and "kind: base model" in out and "sha256:" in out


# ----------------------------------------------------------------------------- wrong base

def test_wrong_base_refused_naming_both_and_force_warns(models, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    make_adapter(models["base"], adapter)
    with pytest.raises(AdapterMismatchError) as err:
        merged_model(models["other"], adapter)
    msg = str(err.value)
    assert "base.safetensors" in msg and "other.safetensors" in msg and "--force" in msg
    # --force where the shapes match: applied, with a warning
    _, _, _, warnings = merged_model(models["other"], adapter, force=True)
    assert len(warnings) == 1 and "applied anyway" in warnings[0]
    code, out, err = run_cli(capsys, "merge", "--adapter", adapter, "--base", models["other"],
                             "--out", tmp_path / "m.safetensors", "--force")
    assert code == 0 and "warning:" in err and "other.safetensors" in err
    # another architecture: refused even with --force (the shapes differ)
    for force in (False, True):
        with pytest.raises(AdapterMismatchError, match="shapes differ") as err:
            merged_model(models["wide"], adapter, force=force)
        assert "base.safetensors" in str(err.value) and "wide.safetensors" in str(err.value)
    code, _, err = run_cli(capsys, "merge", "--adapter", adapter, "--base", models["wide"],
                           "--out", tmp_path / "w.safetensors", "--force")
    assert code == 2 and "wide.safetensors" in err and "Traceback" not in err


def test_merged_model_is_not_a_base_for_its_adapter(models, tmp_path):
    adapter = tmp_path / "adapter"
    make_adapter(models["base"], adapter)
    merged = merge_adapter_file(models["base"], adapter, tmp_path / "merged.safetensors")
    with pytest.raises(AdapterMismatchError, match="merged model"):
        merged_model(merged, adapter)


# ----------------------------------------------------------------------------- PEFT export

def test_peft_export_is_exact_and_recorded(models, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    want = make_adapter(models["base"], adapter)
    code, out, err = run_cli(capsys, "export", adapter, "--out", tmp_path / "peft", "--peft",
                             "--base", models["base"])
    assert code == 0 and "wrote" in out
    cfg = json.loads((tmp_path / "peft" / ADAPTER_CONFIG).read_text())
    assert cfg["loragui"]["peft_loadable"] is True
    assert cfg["loragui"]["folded_conv_transpose_layers"] == ["up.0", "up.1"]
    model, *_ = merged_model(models["base"], tmp_path / "peft")
    with torch.no_grad():
        assert torch.allclose(model(x_in()), want, atol=1e-5)
    # without --peft the copy says it is not PEFT-loadable
    code, out, err = run_cli(capsys, "export", adapter, "--out", tmp_path / "one.safetensors",
                             "--single-file")
    assert code == 0 and "ConvTranspose2d" in err and (tmp_path / "one.safetensors").is_file()
    code, _, err = run_cli(capsys, "export", models["base"], "--out", tmp_path / "x")
    assert code == 2 and "--onnx" in err


def test_older_and_peft_key_spellings_load(models, tmp_path):
    """``lora_A.default.weight`` (adapter name in the key) and ``<module>.bias`` (older
    PEFT's bias name) are read as the names peft 0.21 writes."""
    adapter = tmp_path / "adapter"
    want = make_adapter(models["base"], adapter, exclude=("head", "up.*"))
    ad = load_adapter(adapter)
    renamed = {}
    for key, value in ad.tensors.items():
        key = key.replace(".lora_A.", ".lora_A.default.").replace(".base_layer.bias", ".bias")
        renamed[PEFT_PREFIX + key] = value
    write_adapter(renamed, ad.config, tmp_path / "old")
    model, *_ = merged_model(models["base"], tmp_path / "old")
    with torch.no_grad():
        assert torch.allclose(model(x_in()), want, atol=1e-5)


def test_peft_style_suffix_targets_and_patterns(models, tmp_path):
    adapter = tmp_path / "adapter"
    make_adapter(models["base"], adapter, exclude=("head", "up.*"))
    ad = load_adapter(adapter)
    ad.config["target_modules"] = ["conv1", "conv2"]
    model, info = load_model(models["base"])
    apply_adapter(model, ad, info)
    assert len(list(lora_layers(model))) == 10
    ad.config["rank_pattern"] = {"conv1": 3}  # a suffix naming layers whose tensors have rank 2
    with pytest.raises(ModelFileError, match="rank 2 in its lora_A tensor but the config says rank 3"):
        apply_adapter(load_model(models["base"])[0], ad, info)


def test_atomic_export_never_overwrites_its_source(models, tmp_path):
    adapter = tmp_path / "adapter"
    make_adapter(models["base"], adapter)
    from loragui.engine.outputs import OutputRefused

    with pytest.raises(OutputRefused, match="is the source itself"):
        export_adapter(adapter, adapter)
    assert load_adapter(adapter).tensors


def test_header_length_that_starts_like_a_pickle_loads(tmp_path):
    """A header length of 0x...80 bytes makes a file start with the byte a pickle starts
    with (0x80, PROTO); such a file is still safetensors and loads."""
    import struct

    from safetensors import safe_open
    from safetensors.torch import save_file

    from loragui.engine.basemodel import load_model

    source = make_tiny_base(tmp_path / "base.safetensors", width=4, depth=2)
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    seen = set()
    for pad in range(0, 600):
        path = tmp_path / f"padded{pad}.safetensors"
        save_file(tensors, str(path), metadata=metadata | {"note": "x" * pad})
        head = path.read_bytes()[:9]
        (n,) = struct.unpack("<Q", head[:8])
        if head[0] == 0x80:
            seen.add(n)
            model, _ = load_model(path)
            assert model.config.width == 4
        path.unlink()
    assert seen  # at least one such length was made and loaded
