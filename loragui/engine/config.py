"""Training settings: one dataclass shared by the command line and the window."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Module-name patterns (fnmatch) for the layers LoRA adapts by default: every
# convolution, including the transposed up-sampling ones and the 1x1 head.
DEFAULT_TARGETS = ("*",)


@dataclass
class TrainConfig:
    images: str = ""
    masks: str = ""
    out: str = ""
    base: str | None = None  # None: the bundled base model
    full: bool = False  # train every weight and write a base-model file
    # LoRA
    rank: int = 4  # rank of each update: 3.4 % of the medium base trainable; rank 8 did no better
    alpha: float = 8.0  # scale alpha/rank = 2: usually 2 * rank
    rslora: bool = False  # scale by alpha/sqrt(rank) instead
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    train_bias: bool = True  # biases are tiny and help a domain shift a lot
    # Small modules trained whole instead of through LoRA (PEFT's modules_to_save): the
    # 1x1 head. (Adding the first convolution, "down.0.conv1", did no better.)
    train_modules: list[str] = field(default_factory=lambda: ["head"])
    # Optimisation
    epochs: int = 40
    steps: int | None = None  # overrides epochs when set
    steps_per_epoch: int | None = None  # default: enough crops to see each image ~4 times
    batch_size: int = 8
    lr: float = 5e-3  # 2e-3 learned more slowly; 1e-2 diverged on a GPU
    weight_decay: float = 1e-4
    # Weights trained whole (biases, train_modules) learn at whole_lr_scale × lr. Lower
    # it when training large modules whole: the first convolution trained whole at 5e-3
    # made 2 of 3 histology runs collapse late; at 0.2 × 5e-3 it did not.
    whole_lr_scale: float = 1.0
    warmup_fraction: float = 0.05
    crop_size: int = 0  # 0: auto, 256 on GPUs, 128 on CPUs (see auto_crop_size)
    intensity_augment: bool = True  # random brightness/contrast/gamma on training crops
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    resume: bool = False
    previews: int = 4  # validation images shown each epoch
    # Full training only
    width: int = 32
    depth: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def auto_crop_size(self, device_type: str) -> int:
        """The crop side to train with: as set, or 128 on the CPU and 256 elsewhere.

        On a 2-core CPU, 128-px crops reached the sample's Dice 0.80 in about two
        minutes; 256-px crops cost four times as much per step for no gain there.
        """
        if self.crop_size:
            return self.crop_size
        return 128 if device_type == "cpu" else 256

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def command_line(self) -> str:
        """The equivalent ``loragui train`` command (only non-default options)."""
        default = TrainConfig()
        parts = ["loragui", "train", "--images", self.images, "--masks", self.masks]
        parts += ["--out", self.out or "OUT"]
        if self.base:
            parts += ["--base", self.base]
        if self.full:
            parts.append("--full")
        for name, flag in [
            ("rank", "--rank"), ("alpha", "--alpha"), ("dropout", "--dropout"),
            ("epochs", "--epochs"), ("steps", "--steps"), ("batch_size", "--batch-size"),
            ("lr", "--lr"), ("whole_lr_scale", "--whole-lr-scale"), ("crop_size", "--crop-size"), ("val_fraction", "--val-fraction"),
            ("seed", "--seed"), ("width", "--width"),
            ("depth", "--depth"),
        ]:
            value = getattr(self, name)
            if value != getattr(default, name) and value is not None:
                parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        device = (self.device or "auto").strip()
        if device != default.device:  # "all" or a list: one process per device
            parts += ["--devices" if device == "all" or "," in device else "--device", device]
        if self.rslora:
            parts.append("--rslora")
        if list(self.targets) != list(default.targets):
            parts += ["--targets", ",".join(self.targets)]
        if not self.train_bias:
            parts.append("--no-train-bias")
        if list(self.train_modules) != list(default.train_modules):
            parts += ["--train-modules", ",".join(self.train_modules)]
        return shlex.join(parts)
