"""What a run keeps of its best epoch: the adapter (or, with --full, the model file)
with its provenance: the base model, the settings, the data and the scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .adapters import adapter_config, save_adapter
from .basemodel import save_model
from .config import TrainConfig
from .formats import now_iso
from .maskkinds import MaskMeaning
from .preprocessing import Preprocessing
from .unet import UNet

# Settings that name a file or folder: the provenance keeps their names, never a path
# (adapters and models get shared).
PATH_SETTINGS = ("base", "init_adapter", "corrections")
# Settings that say where this machine keeps things, not how the model was trained.
NOT_RECORDED = ("images", "masks", "out", "resume")


def provenance(c: TrainConfig, *, base_info: Any, model: UNet, prep: Preprocessing,
               dataset: dict[str, Any], meaning: MaskMeaning, metrics: dict[str, Any] | None,
               base_dice: float | None, epoch: int | None, step: int) -> dict[str, Any]:
    """The ``loragui`` section of an adapter's config (a model file's metadata)."""
    return {
        "base_sha256": base_info.sha256 if base_info else None,
        "base_name": base_info.name if base_info else None,
        "architecture": model.config.to_dict(),
        "preprocessing": prep.to_dict(),
        "training": {k: (Path(v).name if k in PATH_SETTINGS and v else v)
                     for k, v in c.to_dict().items() if k not in NOT_RECORDED},
        "dataset": dataset,
        "masks": meaning.to_dict(),
        "metrics": metrics or {},
        "base_metrics": {"dice": base_dice},
        "epoch": epoch, "step": step,
        "created": now_iso(),
    }


def save_best(out: Path, c: TrainConfig, *, model: UNet, prep: Preprocessing, lora: Any,
              extra_trainable: list[str], provenance: dict[str, Any]) -> None:
    """Write the model as it is now as the run's output: ``out/adapter`` (PEFT layout,
    the tensors trained whole as modules to save), or ``out/model.safetensors``."""
    if c.full:
        save_model(model, out / "model.safetensors", preprocessing=prep.to_dict(),
                   extra={k: provenance[k] for k in ("training", "dataset", "masks", "metrics",
                                                     "epoch", "step")})
        return
    saved = sorted({n.rsplit(".", 1)[0] for n in extra_trainable if ".base_layer." not in n})
    cfg = adapter_config(model, lora, trained=extra_trainable, modules_to_save=saved,
                         loragui=provenance)
    save_adapter(model, cfg, out / "adapter")
