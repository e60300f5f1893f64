"""Training settings: one dataclass shared by the command line and the window.

Each field is declared with :func:`setting`: its default and the help of its
``loragui train`` option side by side. The command line's options
(:mod:`loragui.cli_train`), :meth:`TrainConfig.command_line`, the options a
multi-process launch forwards and the check of a ``--config`` file are all made
from these declarations (:func:`train_options`), so a new setting is one edit
here and every setting has an option. The figures behind the defaults are in
the README ("Defaults and why").
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from .errors import LoraGuiError
from .schedule import CPU_MAX_STEPS_PER_EPOCH

# Module-name patterns (fnmatch) for the layers LoRA adapts by default: every
# convolution, including the transposed up-sampling ones and the 1x1 head.
DEFAULT_TARGETS = ("*",)

# The largest LoRA rank an adapter file may declare (the adapter loader's limit too).
MAX_RANK = 4096


@dataclass(frozen=True)
class Bounds:
    """The values a number setting accepts: from ``low`` to ``high`` (either end left
    out when ``low_open`` / ``high_open``); a float must also be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """"from 1 to 4096", "above 0", "at least 0 and below 1"."""
        def n(v: float) -> str:
            return str(v) if isinstance(v, int) else _number(v)

        low = None if self.low is None else (
            f"above {n(self.low)}" if self.low_open else f"at least {n(self.low)}")
        high = None if self.high is None else (
            f"below {n(self.high)}" if self.high_open else f"at most {n(self.high)}")
        if low and high and not (self.low_open or self.high_open):
            return f"from {n(self.low)} to {n(self.high)}"
        return " and ".join(w for w in (low, high) if w) or "any finite number"


def setting(default: Any = MISSING, *, help: str, factory: Callable[[], Any] | None = None,
            option: str | None = None, metavar: str | None = None,
            required: bool = False, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False) -> Any:
    """A TrainConfig field with its ``loragui train`` option and the values it accepts.

    ``help`` may name ``{default}`` (the default as the option takes it). ``option``
    defaults to ``--field-name`` (``--no-field-name`` for a setting that is on by
    default); ``required``: the option must be given on every command line.
    ``low``/``high`` (``*_open``: that end excluded) bound a number setting: the
    command line, ``--config`` files, checkpoints and the window's controls all take
    their limits from here (:func:`check_settings`).
    """
    metadata = {"help": help, "option": option, "metavar": metavar, "required": required,
                "bounds": Bounds(low, high, low_open, high_open)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    images: str = setting("", help="folder of images", metavar="DIR")
    masks: str = setting("", help="folder of masks (0 = background); may be left out with "
                                  "--corrections", metavar="DIR")
    # The review view's corrected masks: an image's mask there replaces its original.
    corrections: str | None = setting(
        None, metavar="DIR",
        help="folder of corrected masks: an image's mask there (same name) is used instead of "
             "its mask in --masks; images with neither are left out")
    invert_masks: bool = setting(
        False, help="use the masks inverted (0 is the objects): for masks whose objects are black")
    auto_invert: bool = setting(
        True, help="train on the images as they are even where the base model finds their "
                   "objects better inverted (by default such a run trains on inverted images, "
                   "and its adapter inverts every image it is given)")
    # "auto" trains foreground/background, as before, whatever the scan proposes: the user
    # confirms classes or objects (the scan's report names the option).
    masks_hold: str = setting(
        "auto", metavar="KIND",
        help="what the masks hold: binary (foreground/background), classes (class ids, 0 = "
             "background; names from --classes or classes.json beside the masks) or objects "
             "(object labels: trained with a boundary class that keeps touching objects "
             "apart); default auto: binary, or classes when --classes is given")
    classes: list[str] = setting(
        factory=list, metavar="NAMES",
        help="comma-separated class names, one per value in the masks in rising order, "
             "background first (background,nucleus,membrane); implies --masks-hold classes")
    out: str = setting("", help="run folder to write", metavar="DIR", required=True)
    base: str | None = setting(  # None: the bundled base model
        None, help="base model (.safetensors); default: the bundled base model", metavar="FILE")
    # A warm start: the tensors of an adapter as the initial values, a fresh schedule.
    init_adapter: str | None = setting(
        None, metavar="DIR",
        help="start from this adapter (its folder or file, or a run folder): its tensors are "
             "the initial values; the schedule starts afresh (not with --resume)")
    full: bool = setting(
        False, help="train every weight and write a base-model file (OUT/model.safetensors)")
    # LoRA. Rank 4 trains 3.4 % of the medium base; a higher rank gains nothing there.
    rank: int = setting(4, help="LoRA rank (default {default})", low=1, high=MAX_RANK)
    alpha: float = setting(8.0, help="LoRA alpha (default {default}); the update is scaled by "
                                     "alpha/rank, usually 2",
                    low=0, low_open=True)
    rslora: bool = setting(False, help="scale by alpha/sqrt(rank)")
    dropout: float = setting(0.0, help="dropout on the LoRA input", low=0, high=1, high_open=True)
    targets: list[str] = setting(
        factory=lambda: list(DEFAULT_TARGETS),
        help="comma-separated module-name patterns to adapt (default: every conv)")
    # Biases are tiny and absorb much of a domain shift: trained unless switched off.
    train_bias: bool = setting(True, help="keep the biases of adapted layers frozen")
    # PEFT's modules_to_save: the 1x1 head, a few hundred numbers, is cheaper trained whole.
    train_modules: list[str] = setting(
        factory=lambda: ["head"],
        help="comma-separated modules trained whole instead of through LoRA "
             "(default: {default}; '' for none)")
    # Optimisation
    epochs: int = setting(40, help="epochs to train at most (default {default})", low=1,
                          high=10**6)
    steps: int | None = setting(None, help="total steps at most (overrides --epochs)", low=1,
                                high=10**9)
    # On by default: the rule and its reason are in engine/early_stop.py and the README.
    early_stop: bool = setting(
        True, help="train to the end of --epochs/--steps even when the validation Dice has "
                   "stopped improving (by default a run ends when it no longer improves)")
    steps_per_epoch: int | None = setting(
        None, help="default: from the data size (about one crop per image's worth of "
                   f"pixels, at least 10; on the CPU at most {CPU_MAX_STEPS_PER_EPOCH})",
        low=1, high=10**9)
    batch_size: int = setting(8, help="crops per step (default {default})", low=1, high=4096)
    # The highest rate that stays stable: a lower one learns more slowly, a higher diverges.
    lr: float = setting(5e-3, help="peak learning rate (default {default})", low=0, high=10,
                         low_open=True)
    weight_decay: float = setting(
        1e-4, help="AdamW weight decay of the weight matrices (default {default})", low=0,
        high=10)
    # Lower it when training large modules whole: a large module trained whole at the
    # full rate can collapse late in a run.
    whole_lr_scale: float = setting(
        1.0, help="learning rate of the weights trained whole (biases, --train-modules) "
                  "as a share of --lr (default {default})", low=0, high=1000)
    warmup_fraction: float = setting(
        0.05, help="share of the steps over which the learning rate rises linearly to its "
                   "peak (default {default})", low=0, high=1)
    crop_size: int = setting(  # see auto_crop_size
        0, help="side of the random training crops, rounded up to a multiple the model takes; "
                "default 0: auto (256 on GPUs, 128 on CPUs)", low=0, high=8192)
    # Kept on although it costs a little on histology: other kinds of image need it.
    intensity_augment: bool = setting(
        True, help="no random brightness, contrast and gamma changes on the training crops")
    val_fraction: float = setting(
        0.2, help="share of pairs held out for validation (default {default})", low=0, high=1,
        high_open=True)
    # torch.manual_seed takes any 64-bit value; a signed one stays portable.
    seed: int = setting(0, help="seed for the split and the crops", low=0, high=2**63 - 1)
    device: str = setting("auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    # Several devices: one process each (torchrun); None trains in this process on ``device``.
    devices: str | None = setting(
        None, metavar="LIST",
        help="data-parallel training in one process per device, through torchrun: "
             "all (every CUDA GPU), a list such as cuda:0,cuda:1, or cpu,cpu (gloo; "
             "for tests). --batch-size is per device; the peak --lr is scaled by "
             "the square root of the number of devices")
    # On a GPU a step of this small UNet waits on the host launching its many small
    # kernels; a compiled step launches far fewer (benchmarks/speed.py).
    compile: bool = setting(True, help="train the plain model on CUDA GPUs too (by default the "
                                       "training step of a long run is compiled there, with "
                                       "torch.compile; see --compile-from)")
    # Compiling costs 10-45 s before the first step (more with a cold cache) and saves
    # about 0.45 ms a 256-px crop on an H200 (benchmarks/speed.py): it pays from about
    # 100,000 crops; most runs that end early train fewer.
    compile_from: int = setting(
        100_000, metavar="CROPS", low=0,
        help="compile the training step on a CUDA GPU only when the run plans at least this "
             "many crops (steps × batch × devices; default {default}; 0: always)")
    resume: bool = setting(False, help="continue the run in OUT from its checkpoint")
    overwrite: bool = setting(
        False, help="replace the earlier run in OUT (its adapter or model is replaced once "
                    "this run writes a new one)")
    previews: int = setting(4, help="validation images shown each epoch (default {default})",
                            low=0, high=64)
    # Full training only
    width: int = setting(32, help="--full without --base: first-level channels", low=1,
                         high=1024)
    depth: int = setting(3, help="--full without --base: poolings", low=1, high=8)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def auto_crop_size(self, device_type: str) -> int:
        """The crop side to train with: as set, or 128 on the CPU and 256 elsewhere.

        A 128-px crop costs a quarter of a 256-px one per step and reaches the same
        Dice on the CPU, where steps are the bottleneck.
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
        values = {"images": self.images, "masks": self.masks, "out": self.out or "OUT"}
        if not self.masks and self.corrections:  # the corrected masks alone
            del values["masks"]
        values |= {f.name: getattr(self, f.name) for f in fields(self)
                   if f.name not in values and getattr(self, f.name) != getattr(default, f.name)}
        return shlex.join(["loragui", "train", *train_options(values)])


# ------------------------------------------------------------------ the options

@dataclass(frozen=True)
class TrainOption:
    """How one TrainConfig field is set on ``loragui train``'s command line."""

    name: str  # the field
    flag: str  # "--batch-size", "--no-train-bias"
    kind: str  # "value"; "on" / "off": a switch setting True / False; "list": comma-separated
    type: type  # of a value (int, float or str; str for a list)
    default: Any
    help: str
    metavar: str | None
    required: bool
    bounds: Bounds = Bounds()

    def parse(self, value: Any) -> Any:
        """The field's value for the option's argument (a switch's: its constant)."""
        if self.kind in ("on", "off"):
            return self.kind == "on"
        if self.kind == "list":
            return [v.strip() for v in str(value).split(",") if v.strip()]
        return value

    def render(self, value: Any) -> list[str]:
        """The command-line words that set the field to ``value`` ([] when it cannot)."""
        if self.kind in ("on", "off"):
            return [self.flag] if value is (self.kind == "on") else []
        if value is None:
            return []
        if self.kind == "list":
            return [self.flag, ",".join(value)]
        return [self.flag, _number(value) if isinstance(value, float) else str(value)]


def _number(value: float) -> str:
    """A float as short as it reads back exactly (8.0 -> "8", 0.005 -> "0.005")."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _kinds(annotation: str) -> list[str]:
    return [t.strip() for t in str(annotation).split("|")]


_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "list[str]": str}


def _option(f: Any) -> TrainOption:
    default = f.default_factory() if f.default is MISSING else f.default
    kinds = [k for k in _kinds(f.type) if k != "None"]
    if kinds == ["bool"]:
        kind = "off" if default else "on"
        flag = f.metadata["option"] or ("--no-" if default else "--") + f.name.replace("_", "-")
        return TrainOption(f.name, flag, kind, bool, default, f.metadata["help"], None,
                           f.metadata["required"], f.metadata["bounds"])
    kind = "list" if kinds == ["list[str]"] else "value"
    if kind == "list":
        shown = ",".join(default) or "none"
    else:
        shown = _number(default) if isinstance(default, float) else default
    return TrainOption(f.name, f.metadata["option"] or "--" + f.name.replace("_", "-"), kind,
                       _TYPES[kinds[0]], default, f.metadata["help"].format(default=shown),
                       f.metadata["metavar"], f.metadata["required"], f.metadata["bounds"])


TRAIN_OPTIONS: tuple[TrainOption, ...] = tuple(_option(f) for f in fields(TrainConfig))


def train_options(values: Mapping[str, Any]) -> list[str]:
    """``loragui train`` options that set these TrainConfig fields, in field order."""
    words: list[str] = []
    for option in TRAIN_OPTIONS:
        if option.name in values:
            words += option.render(values[option.name])
    return words


class SettingError(LoraGuiError, ValueError):
    """A setting outside what its declaration accepts. ``name``: the field; ``reason``:
    what is wrong, in words that follow the field's option or name."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason
        super().__init__(f"{OPTIONS_BY_NAME[name].flag} {reason}")


OPTIONS_BY_NAME: dict[str, TrainOption] = {o.name: o for o in TRAIN_OPTIONS}
_JSON_KINDS = {"str": str, "int": int, "float": (int, float), "bool": bool, "None": type(None),
               "list[str]": list}
_KIND_WORDS = {"str": "text", "int": "a whole number", "float": "a number", "bool": "true or false",
               "None": "null", "list[str]": "a list of names"}


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_value(name: str, value: Any) -> None:
    """Raise :class:`SettingError` unless ``value`` is of field ``name``'s declared type
    and within its bounds (a JSON int serves for a float field)."""
    f = _FIELDS[name]
    kinds = _kinds(f.type)
    allowed = tuple(_JSON_KINDS[k] for k in kinds)
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and "bool" not in kinds)
    if isinstance(value, list):
        ok = ok and all(isinstance(v, str) for v in value)
    if not ok:
        words = " or ".join(_KIND_WORDS[k] for k in kinds)
        raise SettingError(name, f"must be {words}, not {_shown(value)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        bounds = OPTIONS_BY_NAME[name].bounds
        if value not in bounds:
            what = "a whole number" if "int" in kinds else "a number"
            default = OPTIONS_BY_NAME[name].default
            hint = f" (the default is {_shown(default)})" if default is not None else ""
            raise SettingError(name, f"must be {what} {bounds.describe()}, not "
                                     f"{_shown(value)}{hint}")


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def check_values(data: Any) -> None:
    """Raise :class:`SettingError` (or ValueError, for what is not a settings object)
    unless ``data`` is a JSON object of TrainConfig fields, each of its declared type
    and within its bounds (what :meth:`TrainConfig.to_dict` writes, or part of it)."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of settings")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}")
    for key, value in data.items():
        check_value(key, value)


def check_settings(config: TrainConfig) -> None:
    """Raise :class:`SettingError` for the first field of ``config`` that its
    declaration refuses: every setting is checked here once, before any work."""
    check_values(config.to_dict())


def several_devices(setting: str | None) -> bool:
    """Whether a device setting names several devices, one process each (what
    ``devices`` holds): "all" (every GPU) or a list such as "cuda:0,cuda:1"."""
    text = (setting or "").strip().lower()
    return text == "all" or "," in text
