"""ONNX export of a plain (merged) UNet, for deployment without loragui.

Needs the ``onnx`` extra (``pip install 'loragui[onnx]'``: onnx, onnxruntime).
The exported graph:

* input ``image``: float32 ``(batch, in_channels, height, width)``, pixels
  normalised as the ``preprocessing`` entry of the metadata says and scaled to
  ``[0, 1]``; batch, height and width are dynamic, height and width must be
  multiples of ``multiple`` (``2**depth``; pad, e.g. by reflection, and crop back);
* output ``logits``: float32 ``(batch, out_channels, height, width)``;
  ``sigmoid(logits) > 0.5`` is the mask.

The model's metadata (``metadata_props``) records the format, architecture,
preprocessing, the multiple and the provenance (base model, adapter).
:func:`check_onnx` runs the file with onnxruntime and compares it with PyTorch.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from .atomic import atomic_write
from .errors import LoraGuiError
from .unet import UNet

ONNX_FORMAT = "loragui.onnx"
MIN_OPSET = 17
INPUT, OUTPUT = "image", "logits"
_INSTALL = "install the onnx extra: pip install 'loragui[onnx]'"


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_export(model: UNet, example: torch.Tensor, path: Path, opset: int) -> None:
    dims = {0: "batch", 2: "height", 3: "width"}
    kwargs: dict[str, Any] = dict(input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
                                  dynamic_axes={INPUT: dims, OUTPUT: dims}, do_constant_folding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # The TorchScript exporter needs only onnx; the dynamo one also needs onnxscript.
            torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)
        except TypeError:  # a torch without the ``dynamo`` argument (TorchScript is its default)
            torch.onnx.export(model, (example,), str(path), **kwargs)


def export_onnx(model: UNet, dest: str | os.PathLike, *, opset: int = MIN_OPSET,
                preprocessing: dict[str, Any] | None = None,
                provenance: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a plain UNet: merge any adapter first) as an ONNX file, atomically."""
    if opset < MIN_OPSET:
        raise LoraGuiError(f"ONNX opset {opset} is too old; use {MIN_OPSET} or newer")
    try:
        import onnx
    except ImportError:
        raise LoraGuiError(f"ONNX export needs the onnx package: {_INSTALL}") from None
    model = model.to("cpu", torch.float32).eval()
    cfg = model.config
    side = 2 * model.multiple
    example = torch.zeros(1, cfg.in_channels, side, side)
    props = {
        "format": ONNX_FORMAT,
        "loragui_version": __version__,
        "architecture": json.dumps(cfg.to_dict()),
        "preprocessing": json.dumps(preprocessing or {}),
        "multiple": str(model.multiple),
        "input": f"{INPUT}: float32 (batch, {cfg.in_channels}, H, W), pixels scaled to [0, 1]; "
                 f"H and W multiples of {model.multiple}",
        "output": f"{OUTPUT}: float32 (batch, {cfg.out_channels}, H, W); mask = sigmoid > 0.5",
    }
    for key, value in (provenance or {}).items():
        props[key] = value if isinstance(value, str) else json.dumps(value, default=str)

    def write(tmp: Path) -> None:
        try:
            with torch.no_grad():
                _torch_export(model, example, tmp, opset)
            proto = onnx.load(str(tmp))
            proto.doc_string = ("UNet segmentation model exported by loragui " + __version__
                                + ". " + props["input"] + ". " + props["output"] + ".")
            del proto.metadata_props[:]
            for key, value in props.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
        except (OSError, LoraGuiError):
            raise
        except Exception as exc:  # exporter / checker failures: report, never a traceback
            raise LoraGuiError(f"the ONNX export failed: {type(exc).__name__}: {exc}") from None

    return atomic_write(dest, write)


def check_onnx(path: str | os.PathLike, model: UNet,
               sizes: tuple[tuple[int, int], ...] = ((64, 64), (96, 128)),
               batch: int = 2, seed: int = 0) -> float:
    """Run the ONNX file with onnxruntime on random inputs of several sizes and return
    the largest absolute difference from PyTorch's logits."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise LoraGuiError(f"checking an ONNX file needs onnxruntime: {_INSTALL}") from None
    model = model.to("cpu", torch.float32).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        m = model.multiple
        h, w = -(-h // m) * m, -(-w // m) * m
        x = torch.rand(batch, model.config.in_channels, h, w, generator=generator)
        with torch.no_grad():
            want = model(x)
        got = torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
        if got.shape != want.shape:
            raise LoraGuiError(f"the ONNX model gives shape {tuple(got.shape)} for input "
                               f"{tuple(x.shape)}, PyTorch {tuple(want.shape)}")
        worst = max(worst, float((got - want).abs().max()))
    return worst


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file loragui wrote (onnx parses protobuf: no pickle)."""
    try:
        import onnx
    except ImportError:
        raise LoraGuiError(f"reading ONNX files needs the onnx package: {_INSTALL}") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise LoraGuiError(f"{Path(path).name} is not a readable ONNX file ({exc})") from None
    return {p.key: p.value for p in proto.metadata_props}


def load_export_source(source: str | os.PathLike, *, base: str | os.PathLike | None = None,
                       force: bool = False, on_warning=None):
    """``(model, base-model info, provenance)`` of what an export writes: a base/merged model
    file, or an adapter merged into its base model. The provenance names the base model and
    the adapter (its training settings, data set and metrics)."""
    from .basemodel import load_model
    from .exports import merged_model
    from .formats import MERGED_FORMAT
    from .info import file_kind

    if file_kind(source) == "adapter":
        model, info, adapter, warns = merged_model(base, source, force=force)
        for w in warns:
            if on_warning is not None:
                on_warning(w)
        provenance = {"source": "merged", "base_sha256": info.sha256, "base_name": info.name,
                      "adapter": {k: v for k, v in adapter.loragui.items() if k != "architecture"}}
    else:
        model, info = load_model(source)
        provenance = {"source": "merged" if info.metadata.get("format") == MERGED_FORMAT else "base",
                      "model_sha256": info.sha256, "model_name": info.name}
        for key in ("base_sha256", "base_name", "adapter", "training", "dataset", "metrics"):
            if key in info.metadata:
                provenance[key] = info.metadata[key]
    return model, info, provenance


def export_model_onnx(source: str | os.PathLike, dest: str | os.PathLike, *,
                      base: str | os.PathLike | None = None, force: bool = False,
                      opset: int = MIN_OPSET, on_warning=None, overwrite: bool = False) -> Path:
    """ONNX file of a base/merged model file, or of an adapter merged into its base model
    (``dest`` as :mod:`.outputs` allows)."""
    from .outputs import FILE, check_output, model_inputs

    check_output(dest, FILE, model_inputs(source, base), overwrite=overwrite,
                 replaces=ONNX_FORMAT)
    model, info, provenance = load_export_source(source, base=base, force=force,
                                                 on_warning=on_warning)
    return export_onnx(model, dest, opset=opset, preprocessing=info.preprocessing,
                       provenance=provenance)
