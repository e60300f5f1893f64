"""Interoperability with Hugging Face PEFT, both ways, on the real UNet class.

* loragui -> PEFT: an adapter folder loragui writes (LoRA on Conv2d layers,
  trained biases, a whole module in ``modules_to_save``) loads with
  ``peft.PeftModel.from_pretrained(model, folder)`` and gives loragui's output;
  a default adapter (LoRA also on the ConvTranspose2d layers) does not, and its
  ``--peft`` export does, with the same output.
* PEFT -> loragui: an adapter PEFT trained and saved (suffix target names,
  rank/alpha patterns, rsLoRA, ``bias="lora_only"``, ``modules_to_save``) loads in
  loragui, as a folder and re-exported as one file, with PEFT's output.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from loragui.engine.adapter_plan import apply_adapter
from loragui.engine.adapters import adapter_config, load_adapter, save_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.exports import export_adapter
from loragui.engine.formats import ADAPTER_WEIGHTS
from loragui.engine.info import read_model_info
from loragui.engine.lora import LoRASettings, inject_lora, set_extra_trainable, set_forward_mode
from loragui.engine.safetensors_file import read_safetensors_header
from loragui.engine.unet import UNet
from tests.tiny import make_tiny_base

peft = pytest.importorskip(
    "peft", reason="the peft test extra is not installed (pip install 'loragui[test]'); "
                   "CI installs it and runs these tests")

WIDTH, DEPTH = 4, 2


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_base(tmp_path_factory.mktemp("peft") / "base.safetensors", WIDTH, DEPTH)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(seed))


def _loragui_adapter(base, dest, *, exclude, rank_pattern=None, rslora=False, single=False):
    """Train-like: inject LoRA, make biases and the head trainable, randomise, save."""
    model, info = load_model(base)
    settings = LoRASettings(rank=2, alpha=6, rslora=rslora, targets=["*"], exclude=exclude,
                            rank_pattern=rank_pattern or {})
    inject_lora(model, settings)
    trained = set_extra_trainable(model, biases=True, modules=["head"])
    _randomize(model, 1)
    cfg = adapter_config(model, settings, trained=trained, modules_to_save=["head"],
                         loragui={"base_sha256": info.sha256, "base_name": info.name,
                                  "architecture": model.config.to_dict()})
    save_adapter(model, cfg, dest, single_file=single)
    model.eval()
    set_forward_mode(model, "branch")
    with torch.no_grad():
        return model(_x())


def _loragui_output(base, adapter) -> torch.Tensor:
    model, info = load_model(base)
    apply_adapter(model, load_adapter(adapter), info)
    model.eval()
    with torch.no_grad():
        return model(_x())


def _peft_output(base, folder) -> torch.Tensor:
    model, _ = load_model(base)  # the same UNet class, base weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about the unknown "loragui" config section
        pm = peft.PeftModel.from_pretrained(model, str(folder))
    pm.eval()
    with torch.no_grad():
        return pm(_x())


def test_loragui_conv2d_adapter_loads_in_peft(base, tmp_path):
    folder = tmp_path / "adapter"
    # Conv2d layers only; one layer with its own rank (rank_pattern), rsLoRA scaling
    want = _loragui_adapter(base, folder, exclude=["head", "up.*"],
                            rank_pattern={"down.0.conv1": 3}, rslora=True)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    assert cfg["loragui"]["peft_loadable"] is True and cfg["loragui"]["conv_transpose_layers"] == []
    assert cfg["bias"] == "lora_only" and cfg["modules_to_save"] == ["head"]
    assert cfg["rank_pattern"] == {"down.0.conv1": 3}
    keys = set(read_safetensors_header(folder / ADAPTER_WEIGHTS)[0])
    # exactly the names peft 0.21 writes for these three kinds of tensor
    assert {"base_model.model.down.0.conv1.lora_A.weight",
            "base_model.model.down.0.conv1.base_layer.bias",
            "base_model.model.head.weight", "base_model.model.head.bias"} <= keys
    assert read_model_info(folder)["peft_loadable"] is True
    ours = _loragui_output(base, folder)
    theirs = _peft_output(base, folder)
    assert torch.allclose(ours, want, atol=1e-5)
    assert torch.allclose(theirs, ours, atol=1e-5), (theirs - ours).abs().max()
    # and PEFT really applied the update (not a silent no-op)
    plain, _ = load_model(base)
    with torch.no_grad():
        assert (plain(_x()) - theirs).abs().max() > 1e-2


def test_default_adapter_needs_the_peft_export(base, tmp_path):
    folder, exported = tmp_path / "adapter", tmp_path / "peft"
    want = _loragui_adapter(base, folder, exclude=["head"])  # every conv, ConvTranspose2d too
    info = read_model_info(folder)
    assert info["peft_loadable"] is False and info["conv_transpose_layers"] == ["up.0", "up.1"]
    assert "ConvTranspose2d" in info["peft"] and "--peft" in info["peft"]
    with pytest.raises(ValueError, match="ConvTranspose2d"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft.PeftModel.from_pretrained(load_model(base)[0], str(folder))

    export_adapter(folder, exported, peft_compatible=True, base=base)
    cfg = json.loads((exported / "adapter_config.json").read_text())
    assert cfg["loragui"]["peft_loadable"] is True
    assert cfg["loragui"]["folded_conv_transpose_layers"] == ["up.0", "up.1"]
    assert cfg["modules_to_save"] == ["head", "up.0", "up.1"]
    assert not any(t.startswith("up.") for t in cfg["target_modules"])
    theirs = _peft_output(base, exported)
    assert torch.allclose(theirs, want, atol=1e-5), (theirs - want).abs().max()
    assert torch.allclose(_loragui_output(base, exported), want, atol=1e-5)


def _peft_trained_adapter(base, folder):
    model, _ = load_model(base)
    config = peft.LoraConfig(
        r=2, lora_alpha=6, target_modules=["conv1", "conv2"],  # suffixes, as PEFT users write
        rank_pattern={"down.0.conv1": 3}, alpha_pattern={"bottleneck.conv2": 5.0},
        use_rslora=True, bias="lora_only", modules_to_save=["head"])
    pm = peft.get_peft_model(model, config)
    _randomize(pm, 2)
    pm.save_pretrained(str(folder))
    pm.eval()
    with torch.no_grad():
        return pm(_x())


def test_peft_adapter_loads_in_loragui(base, tmp_path):
    folder = tmp_path / "from_peft"
    want = _peft_trained_adapter(base, folder)
    got = _loragui_output(base, folder)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    plain, _ = load_model(base)
    with torch.no_grad():
        assert (plain(_x()) - want).abs().max() > 1e-2
    info = read_model_info(folder)
    assert info["kind"] == "adapter" and info["peft_loadable"] is True
    assert info["provenance"].startswith("none")
    # the single-file form of the same adapter loads too
    single = tmp_path / "from_peft.safetensors"
    export_adapter(folder, single, single_file=True)
    assert torch.allclose(_loragui_output(base, single), want, atol=1e-5)
    # and loragui's re-export of PEFT's folder loads back into PEFT
    again = tmp_path / "again"
    export_adapter(single, again)
    assert torch.allclose(_peft_output(base, again), want, atol=1e-5)


def test_branch_and_merged_agree_with_peft_merge(base, tmp_path):
    """PEFT's merge_and_unload gives the weights loragui's merge writes."""
    from loragui.engine.exports import merged_model

    folder = tmp_path / "from_peft"
    _peft_trained_adapter(base, folder)
    ours, *_ = merged_model(base, folder)
    model, _ = load_model(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    a, b = ours.state_dict(), theirs.state_dict()
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert isinstance(theirs, UNet)
