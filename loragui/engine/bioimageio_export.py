"""bioimage.io model packages: a model Fiji (deepImageJ), ilastik, QuPath and napari can run.

``export_bioimageio`` writes a zip per the bioimage.io model spec 0.5, described and
packaged with the ``bioimageio.spec`` library (``pip install "loragui[bioimageio]"``):

* weights of the merged model as a PyTorch state dict with its architecture source
  (``unet.py``, callable ``UNet``), TorchScript and ONNX (opset >= 17);
* input ``raw``: float32 (batch, channel, y, x); y and x at least ``2**depth`` and a
  multiple of it;
* preprocessing in the spec's own steps: ``scale_range`` per image and channel
  between the model's percentiles, then ``clip`` to [0, 1] (loragui also rounds to
  255 levels, which the spec cannot say: the package skips it, a difference of at
  most 1/510 per pixel);
* output ``probability``: the logits through a ``sigmoid`` postprocessing step; the
  description gives the threshold (0.5);
* a test input and output made from one image, a cover (the image beside its
  predicted overlay), a README with the provenance, and the base model and adapter
  in the description's ``config.loragui`` section (what ``loragui info`` reads).

Nothing here reaches the network: the description refers to local files and DOIs
only, so the library's I/O checks hash files and download nothing, and the package
is written with ``local_files_only``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import __version__
from .atomic import atomic_write
from .bioimageio_read import require_bioimageio, validate_package
from .errors import LoraGuiError
from .imageio import decode_pixels, open_image, orient, orientation
from .onnx_export import export_onnx, load_export_source
from .preprocessing import Preprocessing, luma, normalize_image
from .unet import UNet

INPUT, OUTPUT = "raw", "probability"
THRESHOLD = 0.5
TEST_SIDE = 256  # the test image is cropped to at most this many pixels a side
DEFAULT_LICENSE = "MIT"  # the licence of the bundled base models
CITATIONS = (  # (text, DOI): the architecture and the adaptation method
    ("Ronneberger, Fischer, Brox: U-Net: Convolutional Networks for Biomedical Image "
     "Segmentation (MICCAI 2015)", "10.1007/978-3-319-24574-4_28"),
    ("Hu et al.: LoRA: Low-Rank Adaptation of Large Language Models (ICLR 2022)",
     "10.48550/arXiv.2106.09685"),
)
TAGS = ["loragui", "unet", "lora", "segmentation", "semantic-segmentation", "2d", "pytorch",
        "torchscript", "onnx"]


@dataclass
class PackageIdentity:
    """What a package says about who made it and on what terms (the user enters it once)."""

    authors: list[str] = field(default_factory=list)
    license: str = DEFAULT_LICENSE


def refuse_existing(dest: str | os.PathLike, overwrite: bool) -> Path:
    """The output rule for a package: an existing file is replaced only when asked."""
    dest = Path(dest)
    if dest.is_dir():
        raise LoraGuiError(f"{dest} is a folder; give a file name ending in .zip")
    if (dest.exists() or dest.is_symlink()) and not overwrite:
        raise LoraGuiError(f"{dest} already exists; choose another name, or add --overwrite "
                           "to replace it")
    return dest


def raw_pixels(path: str | os.PathLike, channels: int) -> np.ndarray:
    """One image as the package's users give it: (channels, H, W) float32 in its own
    value range (grey replicated to 3 channels, colour to luma for 1, alpha dropped)."""
    with open_image(path) as im:
        arr = orient(decode_pixels(im), orientation(im))
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] in (2, 4):
        arr = arr[..., :-1]
    arr = arr.astype(np.float32)
    if channels == 1 and arr.shape[2] == 3:
        arr = luma(arr)[..., None]
    if arr.shape[2] == 1 and channels == 3:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def crop_to_multiple(arr: np.ndarray, multiple: int, limit: int = TEST_SIDE) -> np.ndarray:
    """The centre of a (C, H, W) array, each side a multiple of ``multiple`` and at most
    ``limit`` (the package's test image: small, and of a size the model accepts)."""
    h, w = arr.shape[-2:]
    th = min(h, limit) // multiple * multiple
    tw = min(w, limit) // multiple * multiple
    if th == 0 or tw == 0:
        raise LoraGuiError(f"the test image is {w}x{h} pixels; the model needs at least "
                           f"{multiple}x{multiple}: choose a larger image")
    top, left = (h - th) // 2, (w - tw) // 2
    return np.ascontiguousarray(arr[..., top:top + th, left:left + tw])


def package_preprocess(raw: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """What the package's preprocessing steps compute (the spec's ``scale_range`` with
    percentiles per channel, its eps 1e-6, then ``clip``, then for a model trained on
    inverted images ``scale_linear`` to 1 - value): (1, C, H, W) float32."""
    x = raw.astype(np.float64)
    if prep.method == "percentile":
        lo = np.percentile(x, prep.low, axis=(1, 2), keepdims=True)
        hi = np.percentile(x, prep.high, axis=(1, 2), keepdims=True)
        x = (x - lo) / (hi - lo + 1e-6)
    else:
        x = x / 255.0
    x = np.clip(x, 0.0, 1.0)
    if prep.invert:  # the spec's scale_linear with gain -1 and offset 1
        x = 1.0 - x
    return x.astype(np.float32)[None]


def _cover(raw: np.ndarray, probability: np.ndarray, prep: Preprocessing, path: Path) -> None:
    """The image beside the image with its predicted mask in red (2:1, as the spec asks)."""
    shown = normalize_image(raw.transpose(1, 2, 0), Preprocessing(
        channels=3, method=prep.method, low=prep.low, high=prep.high))
    overlay = shown.astype(np.float32)
    mask = probability > THRESHOLD
    overlay[mask] = 0.55 * overlay[mask] + 0.45 * np.array([255.0, 40.0, 40.0])
    Image.fromarray(np.concatenate([shown, overlay.astype(np.uint8)], axis=1)).save(path)


def _readme(name: str, provenance: dict[str, Any], prep: Preprocessing, model: UNet) -> str:
    adapter = provenance.get("adapter") or {}
    lines = [f"# {name}", "",
             "A UNet that segments the foreground of 2-D images (one probability map per "
             f"output channel; a pixel belongs to the foreground where it exceeds {THRESHOLD}). "
             f"Exported by loragui {__version__}.", "",
             "## Input and output", "",
             f"* `{INPUT}`: float32 (batch, channel, y, x), {model.config.in_channels} "
             f"channel(s), y and x multiples of {model.multiple} (at least {model.multiple}).",
             f"* `{OUTPUT}`: float32 (batch, channel, y, x), the sigmoid of the logits, in [0, 1].",
             "", "## Preprocessing", ""]
    if prep.method == "percentile":
        lines += [f"Each channel of each image is scaled so that its {prep.low:g} % percentile "
                  f"maps to 0 and its {prep.high:g} % percentile to 1, then clipped to [0, 1] "
                  "(`scale_range` and `clip`). loragui itself also rounds the scaled values to "
                  "255 levels; this package does not (at most 1/510 apart), and where an image "
                  "is so flat that the two percentiles are equal loragui uses the image's "
                  "range, which the spec's steps cannot express."]
    else:
        lines += ["Pixels are divided by 255 (`scale_linear`) and clipped to [0, 1]: the model "
                  "expects 8-bit images."]
    if prep.invert:
        lines += ["", "The model was trained on inverted images: the scaled image is then "
                  "inverted (`scale_linear` with gain -1 and offset 1), so that dark objects on "
                  "a light background look as the base model's objects did."]
    lines += ["", "## Validation", "",
              "The package's test input is one of the training run's validation images (or the "
              "sample's first image); every weight format reproduces its test output in "
              "bioimageio.core's model test."]
    metrics = adapter.get("metrics") or provenance.get("metrics") or {}
    if metrics.get("dice") is not None:
        lines.append(f"On the run's validation images the model scored a mean Dice of "
                     f"{metrics['dice']:.4f}" + (f" and IoU {metrics['iou']:.4f}"
                                                 if metrics.get("iou") is not None else "")
                     + " (mean per image, threshold 0.5).")
    lines += ["", "## Provenance", ""]
    base = provenance.get("base_name") or provenance.get("model_name")
    base_sha = provenance.get("base_sha256") or provenance.get("model_sha256")
    lines.append(f"* base model: {base} (SHA-256 {base_sha})")
    lines.append(f"* made as: {provenance.get('source', 'base')} model")
    if adapter:
        dataset = adapter.get("dataset") or {}
        metrics = adapter.get("metrics") or {}
        lines.append(f"* adapter: trained by loragui {adapter.get('loragui_version', '?')} on "
                     f"{adapter.get('created', '?')}")
        if dataset:
            lines.append(f"* data: {dataset.get('pairs')} image/mask pairs "
                         f"({dataset.get('train')} training, {dataset.get('val')} validation), "
                         f"fingerprint {dataset.get('fingerprint')}")
        if metrics:
            lines.append("* validation metrics: " + ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in metrics.items()))
        base_metrics = adapter.get("base_metrics") or {}
        if base_metrics.get("dice") is not None:
            lines.append(f"* the base model alone: dice {base_metrics['dice']:.4f}")
        if adapter.get("training"):
            lines += ["", "Training settings:", "", "```json",
                      json.dumps(adapter["training"], indent=2, sort_keys=True, default=str),
                      "```"]
    return "\n".join(lines) + "\n"


def _trace(model: UNet, example: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python values it freezes
        traced = torch.jit.trace(model, example, check_trace=False)
    traced.save(str(path))


def _describe(work: Path, model: UNet, prep: Preprocessing, provenance: dict[str, Any],
              identity: PackageIdentity, name: str):
    from bioimageio.spec.model import v0_5 as bio

    cfg = model.config
    m = model.multiple
    channels = [bio.Identifier(n) for n in (["red", "green", "blue"] if cfg.in_channels == 3
                                            else [f"channel{i}" for i in range(cfg.in_channels)])]
    space = bio.ParameterizedSize(min=m, step=m)
    if prep.method == "percentile":
        preprocessing = [bio.ScaleRangeDescr(kwargs=bio.ScaleRangeKwargs(
            axes=[bio.AxisId("y"), bio.AxisId("x")], min_percentile=prep.low,
            max_percentile=prep.high))]
    else:
        preprocessing = [bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=1 / 255))]
    preprocessing.append(bio.ClipDescr(kwargs=bio.ClipKwargs(min=0.0, max=1.0)))
    if prep.invert:
        preprocessing.append(bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=-1.0,
                                                                               offset=1.0)))
    inputs = [bio.InputTensorDescr(
        id=bio.TensorId(INPUT), description="the image, in its own value range",
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=channels),
              bio.SpaceInputAxis(id=bio.AxisId("y"), size=space),
              bio.SpaceInputAxis(id=bio.AxisId("x"), size=space)],
        test_tensor=bio.FileDescr(source=work / "test_input.npy"),
        sample_tensor=bio.FileDescr(source=work / "sample_input.png"),
        data=bio.IntervalOrRatioDataDescr(type="float32"), preprocessing=preprocessing)]
    same = {a: bio.SizeReference(tensor_id=bio.TensorId(INPUT), axis_id=bio.AxisId(a))
            for a in ("y", "x")}
    out_names = ["foreground"] if cfg.out_channels == 1 else \
        [f"class{i}" for i in range(cfg.out_channels)]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId(OUTPUT),
        description=f"probability per channel; the mask is probability > {THRESHOLD}",
        axes=[bio.BatchAxis(), bio.ChannelAxis(channel_names=[bio.Identifier(n)
                                                              for n in out_names]),
              bio.SpaceOutputAxis(id=bio.AxisId("y"), size=same["y"]),
              bio.SpaceOutputAxis(id=bio.AxisId("x"), size=same["x"])],
        test_tensor=bio.FileDescr(source=work / "test_output.npy"),
        sample_tensor=bio.FileDescr(source=work / "sample_output.png"),
        data=bio.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[bio.SigmoidDescr()])]
    torch_version = bio.Version(torch.__version__.split("+")[0])
    weights = bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=work / "weights.pt", pytorch_version=torch_version,
            architecture=bio.ArchitectureFromFileDescr(
                source=work / "unet.py", callable=bio.Identifier("UNet"),
                kwargs=cfg.to_dict())),
        torchscript=bio.TorchscriptWeightsDescr(
            source=work / "weights_torchscript.pt", pytorch_version=torch_version,
            parent="pytorch_state_dict"),
        onnx=bio.OnnxWeightsDescr(source=work / "weights.onnx", opset_version=17,
                                  parent="pytorch_state_dict"))
    section = {"loragui_version": __version__, "threshold": THRESHOLD,
               "architecture": cfg.to_dict(), "preprocessing": prep.to_dict(), **provenance}
    return bio.ModelDescr(
        name=name, description=f"UNet foreground segmentation adapted with loragui "
                               f"({provenance.get('source', 'base')} model); mask = "
                               f"probability > {THRESHOLD}",
        authors=[bio.Author(name=a) for a in identity.authors],
        cite=[bio.CiteEntry(text=text, doi=bio.Doi(doi)) for text, doi in CITATIONS],
        license=bio.LicenseId(identity.license), tags=list(TAGS),
        documentation=bio.FileDescr(source=work / "README.md"),
        covers=[bio.FileDescr(source=work / "cover.png")],
        inputs=inputs, outputs=outputs, weights=weights,
        config={"loragui": json.loads(json.dumps(section, default=str))})


def export_bioimageio(source: str | os.PathLike, dest: str | os.PathLike, *,
                      test_image: str | os.PathLike, identity: PackageIdentity,
                      base: str | os.PathLike | None = None, force: bool = False,
                      overwrite: bool = False, name: str | None = None,
                      on_warning=None) -> Path:
    """Write a bioimage.io model package (zip) of a model file, or of an adapter merged
    into its base model, validated by ``bioimageio.spec`` before it is moved in place."""
    dest = refuse_existing(dest, overwrite)
    require_bioimageio()
    if not identity.authors:
        raise LoraGuiError("a bioimage.io package names its authors: give --author NAME "
                           "(loragui remembers it for the next export)")
    model, info, provenance = load_export_source(source, base=base, force=force,
                                                 on_warning=on_warning)
    model = model.to("cpu", torch.float32).eval()
    prep = Preprocessing.from_dict(info.preprocessing)
    raw = crop_to_multiple(raw_pixels(test_image, model.config.in_channels), model.multiple)
    x = torch.from_numpy(package_preprocess(raw, prep))
    with torch.no_grad():
        probability = torch.sigmoid(model(x)).numpy()
    name = name or f"loragui {Path(str(source)).stem} segmentation"
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bio

    with tempfile.TemporaryDirectory(prefix="loragui-bioimageio-") as tmp:
        work = Path(tmp)
        np.save(work / "test_input.npy", raw[None])
        np.save(work / "test_output.npy", probability)
        _cover(raw, probability[0, 0], prep, work / "cover.png")
        sample = normalize_image(raw.transpose(1, 2, 0), prep)
        Image.fromarray(sample[..., 0] if sample.shape[2] == 1 else sample).save(
            work / "sample_input.png")
        Image.fromarray(np.round(probability[0, 0] * 255).astype(np.uint8)).save(
            work / "sample_output.png")
        (work / "README.md").write_text(_readme(name, provenance, prep, model), encoding="utf-8")
        (work / "unet.py").write_bytes(Path(__file__).with_name("unet.py").read_bytes())
        torch.save(model.state_dict(), work / "weights.pt")
        _trace(model, x, work / "weights_torchscript.pt")
        export_onnx(model, work / "weights.onnx", preprocessing=info.preprocessing,
                    provenance=provenance)
        try:  # the referenced files are hashed here; all of them are local
            descr = _describe(work, model, prep, provenance, identity, name)
        except Exception as exc:  # pydantic's ValidationError: a field loragui or the user set
            raise LoraGuiError(f"the bioimage.io description is not valid: {exc}") from None
        if not isinstance(descr, bio.ModelDescr):  # pragma: no cover - defensive
            raise LoraGuiError("the bioimage.io description could not be built")

        packed = work / "package" / "model.zip"
        packed.parent.mkdir()
        save_bioimageio_package(descr, output_path=packed, local_files_only=True)
        validate_package(packed)
        return atomic_write(dest, lambda tmp_zip: shutil.copyfile(packed, tmp_zip))


def default_test_image() -> Path:
    """The bundled sample's first image (when the user names none)."""
    from .folders import list_images
    from .resources import bundled_sample_dirs

    sample = bundled_sample_dirs()
    images = list_images(sample[0]) if sample else []
    if not images:
        raise LoraGuiError("no test image given and no sample is bundled with this "
                           "installation: pass --test-image FILE (one of your validation images)")
    return images[0]


def first_validation_image(images: str | os.PathLike, masks: str | os.PathLike,
                           val_fraction: float, seed: int) -> Path | None:
    """The first validation image of a run (the same split as training), or None."""
    from .dataset import split_indices
    from .pairing import pair_folders

    try:
        report = pair_folders(images, masks)
    except LoraGuiError:
        return None
    _, val = split_indices(len(report.pairs), val_fraction, seed)
    return Path(report.pairs[val[0]].image) if val else None
