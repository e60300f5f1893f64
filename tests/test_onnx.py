"""ONNX export of a merged model: opset >= 17, dynamic batch/height/width, same
logits as PyTorch (checked with onnxruntime), provenance in the metadata."""

from __future__ import annotations

import json

import pytest
import torch

from loragui.cli import main
from loragui.engine.adapters import adapter_config, save_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.errors import LoraGuiError
from loragui.engine.exports import merged_model
from loragui.engine.lora import LoRASettings, inject_lora, set_extra_trainable
from tests.tiny import make_tiny_base

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed "
                                          "(pip install 'loragui[onnx]')")
pytest.importorskip("onnxruntime", reason="the onnx extra is not installed "
                                          "(pip install 'loragui[onnx]')")

from loragui.engine.onnx_export import (  # noqa: E402
    check_onnx,
    export_model_onnx,
    export_onnx,
    read_onnx_metadata,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    base = make_tiny_base(root / "base.safetensors", 4, 2)
    model, info = load_model(base)
    settings = LoRASettings(rank=2, alpha=4, targets=["*"], exclude=["head"])
    inject_lora(model, settings)
    trained = set_extra_trainable(model, biases=True, modules=["head"])
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    cfg = adapter_config(model, settings, trained=trained, modules_to_save=["head"],
                         loragui={"base_sha256": info.sha256, "base_name": info.name,
                                  "architecture": model.config.to_dict()})
    save_adapter(model, cfg, root / "adapter")
    return root, base, root / "adapter"


def test_merged_model_onnx_matches_pytorch(setup):
    root, base, adapter = setup
    dest = export_model_onnx(adapter, root / "merged.onnx", base=base)
    proto = onnx.load(str(dest))
    onnx.checker.check_model(proto)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert dims[1].dim_value == 3
    model, *_ = merged_model(base, adapter)
    # several sizes and a batch of 2 through the one graph
    diff = check_onnx(dest, model, sizes=((32, 32), (48, 80), (64, 16)), batch=2)
    assert diff < 1e-4, diff
    meta = read_onnx_metadata(dest)
    assert meta["format"] == "loragui.onnx" and meta["multiple"] == "4"
    assert json.loads(meta["architecture"])["width"] == 4
    assert json.loads(meta["adapter"])["base_sha256"] == meta["base_sha256"]
    assert json.loads(meta["preprocessing"])["channels"] == 3


def test_base_model_onnx_and_old_opset_refused(setup):
    root, base, _ = setup
    model, _ = load_model(base)
    with pytest.raises(LoraGuiError, match="opset 13 is too old"):
        export_onnx(model, root / "old.onnx", opset=13)
    dest = export_model_onnx(base, root / "base.onnx", opset=18)
    assert check_onnx(dest, model, sizes=((16, 16),), batch=1) < 1e-4
    assert read_onnx_metadata(dest)["source"] == "base"


def test_cli_merge_and_export_onnx(setup, capsys):
    root, base, adapter = setup
    code = main(["merge", "--adapter", str(adapter), "--base", str(base),
                 "--out", str(root / "m.safetensors"), "--onnx", str(root / "m.onnx")])
    out = capsys.readouterr().out
    assert code == 0 and "m.onnx" in out and "checked with onnxruntime" in out
    code = main(["export", str(adapter), "--base", str(base), "--onnx", "--out", str(root / "e.onnx")])
    assert code == 0 and (root / "e.onnx").is_file()
    code = main(["export", str(adapter), "--onnx", "--peft", "--out", str(root / "bad.onnx")])
    assert code == 2 and "does not combine" in capsys.readouterr().err
