"""A warm start (``--init-adapter``): a LoRA run whose factors, biases and modules
trained whole start from an adapter's tensors instead of from zero, with a fresh
schedule (epoch 0, a new optimizer and a new early-stopping rule).

The adapter must fit both the base model and the run's settings: an adapter of
rank 8 cannot start a run of rank 4, and one that trained the head whole cannot
start a run that adapts it through LoRA. Each mismatch is refused before any image
is decoded, with the setting that differs and how to train with it
(:func:`check_init_adapter`); :func:`load_init_adapter` then copies the tensors into
the model that :func:`~.setup_steps.make_trainable` prepared.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .adapter_plan import AdapterPlan, plan_adapter
from .adapters import Adapter, load_adapter
from .basemodel import BaseModelInfo
from .config import OPTIONS_BY_NAME, TrainConfig
from .errors import AdapterMismatchError, LoraGuiError, ModelFileError
from .formats import ADAPTER_CONFIG
from .lora import inject_lora, lora_layers, set_extra_trainable
from .runrecord import ADAPTER, RUN_JSON
from .setup_steps import lora_settings
from .unet import UNet

FLAG = OPTIONS_BY_NAME["init_adapter"].flag
_INSTEAD = f"or without {FLAG}"


@dataclass
class InitAdapter:
    """An adapter checked against the run: its tensors by the model's parameter names."""

    adapter: Adapter
    source: Path  # the adapter folder or file read
    run: Path | None  # the run folder it came from, when one was given
    tensors: dict[str, torch.Tensor]

    @property
    def name(self) -> str:
        """What an adapter's provenance records: a name, never a path (adapters get shared)."""
        return (self.run or self.source).name

    def record(self) -> dict[str, Any]:
        """What run.json says of the start (run.json stays on this machine: paths)."""
        section = self.adapter.loragui
        return {"name": self.name, "path": str(self.source),
                "run": str(self.run) if self.run else None,
                "base_sha256": section.get("base_sha256"), "epoch": section.get("epoch"),
                "dice": (section.get("metrics") or {}).get("dice")}


def adapter_source(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """(the adapter to read, the run folder it lies in or None): a run folder stands for
    its best adapter."""
    given = Path(path).expanduser()
    inside = given / ADAPTER
    if given.is_dir() and not (given / ADAPTER_CONFIG).exists() and (
            (inside / ADAPTER_CONFIG).exists() or (given / RUN_JSON).exists()):
        if not inside.exists():
            raise LoraGuiError(f"{FLAG} {given}: this run folder holds no adapter yet (a run "
                               "writes one at its first validation, and a --full run none): "
                               "give an adapter folder or file")
        return inside, given
    return given, None


def check_combination(config: TrainConfig) -> None:
    """Refuse the settings a warm start cannot go with (before anything is read)."""
    if not config.init_adapter:
        return
    if config.resume:
        raise LoraGuiError(f"{FLAG} cannot be combined with --resume: --resume continues the "
                           f"run in OUT from its checkpoint, {FLAG} starts a new run from an "
                           "adapter; leave out one of them")
    if config.full:
        raise LoraGuiError(f"{FLAG} starts a LoRA training from an adapter and cannot be "
                           f"combined with --full: merge the adapter (loragui merge) and train "
                           "that model with --full --base, or leave out --full")


def check_init_adapter(config: TrainConfig, model: UNet, base: BaseModelInfo | None
                       ) -> InitAdapter:
    """The adapter ``config.init_adapter`` names, checked against the plain base ``model``
    and the run's settings; :class:`LoraGuiError` saying what differs and what to do."""
    check_combination(config)
    source, run = adapter_source(config.init_adapter)
    try:
        adapter = load_adapter(source)
    except ModelFileError as exc:
        raise ModelFileError(f"{FLAG}: {exc}") from None
    _check_base(adapter, base, source)
    shapes = {k: tuple(v.shape) for k, v in adapter.tensors.items()}
    try:
        plan = plan_adapter(model, adapter.config, shapes, source.name)
    except ModelFileError as exc:
        raise AdapterMismatchError(f"{FLAG}: {exc}; it does not fit this base model: train "
                                   f"with the base it was made for (--base) {_INSTEAD}") from None
    tensors = {plan.renames.get(k, k): v for k, v in adapter.tensors.items()}
    _check_settings(config, model, adapter, plan, tensors)
    return InitAdapter(adapter, source, run, tensors)


def _check_base(adapter: Adapter, base: BaseModelInfo | None, source: Path) -> None:
    section = adapter.loragui
    want = section.get("base_sha256")
    if want and base is not None and want != base.sha256:
        made_for = section.get("base_name") or "another base model"
        raise AdapterMismatchError(
            f"{FLAG} {source.name} was made for base model {made_for} (SHA-256 {want[:12]}…), "
            f"not {base.name} (SHA-256 {base.sha256[:12]}…): train with --base set to the "
            f"model it was made for {_INSTEAD}")


def _run_layout(config: TrainConfig, model: UNet) -> UNet:
    """A weightless copy of ``model`` holding what this run trains (on the meta device:
    no memory, no time), made by the very steps that prepare the real one."""
    with torch.device("meta"):
        probe = UNet(model.config)
    try:
        inject_lora(probe, lora_settings(config))
    except ValueError as exc:
        raise LoraGuiError(f"{exc}; check the layer patterns (--targets)") from None
    set_extra_trainable(probe, biases=config.train_bias, modules=list(config.train_modules))
    return probe


def _words(names: list[str]) -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return shown or "none"


def _check_settings(config: TrainConfig, model: UNet, adapter: Adapter, plan: AdapterPlan,
                    tensors: dict[str, torch.Tensor]) -> None:
    """Refuse an adapter whose layout differs from the run's, naming the first setting
    that differs (rank, alpha, scaling, layers, modules trained whole, biases)."""
    probe = _run_layout(config, model)
    layers = dict(lora_layers(probe))
    cfg = adapter.config
    name = adapter.source.name

    def refuse(what: str, fix: str) -> LoraGuiError:
        return AdapterMismatchError(f"{FLAG} {name}: {what}: train {fix} {_INSTEAD}")

    rank, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    if rank != config.rank:
        raise refuse(f"its rank is {rank}, this run's is {config.rank}", f"with --rank {rank}")
    if alpha != config.alpha:
        raise refuse(f"its alpha is {alpha:g}, this run's is {config.alpha:g}",
                     f"with --alpha {alpha:g}")
    rslora = bool(cfg.get("use_rslora") or False)
    if rslora != config.rslora:
        raise refuse("it scales its update by alpha/sqrt(rank) (rslora), this run by alpha/rank"
                     if rslora else "it scales its update by alpha/rank, this run by "
                     "alpha/sqrt(rank) (--rslora)", "with --rslora" if rslora else
                     "without --rslora")
    trained = {n for n, p in probe.named_parameters() if p.requires_grad}
    whole = sorted({n.rsplit(".", 1)[0] for n in trained
                    if ".lora_" not in n and ".base_layer." not in n})
    if sorted(plan.modules_to_save) != whole:
        modules = ",".join(plan.modules_to_save)
        raise refuse(f"it trains {_words(plan.modules_to_save)} whole, this run "
                     f"{_words(whole)}", f"with --train-modules {modules or repr('')}")
    if sorted(plan.targets) != sorted(layers):
        extra = sorted(set(layers) - set(plan.targets))
        lacking = sorted(set(plan.targets) - set(layers))
        recorded = (adapter.loragui.get("training") or {}).get("targets")
        patterns = recorded if isinstance(recorded, list) and recorded else plan.targets
        what = (f"it adapts {len(plan.targets)} layers, this run {len(layers)}"
                + (f" (this run also adapts {_words(extra)})" if extra else "")
                + (f" (it also adapts {_words(lacking)})" if lacking else ""))
        raise refuse(what, f"with --targets {','.join(patterns)}")
    for layer, lora in layers.items():
        if plan.ranks[layer] != lora.rank or plan.alphas[layer] != lora.alpha:
            raise refuse(f"its layer {layer} has rank {plan.ranks[layer]} and alpha "
                         f"{plan.alphas[layer]:g}, this run's rank {lora.rank} and alpha "
                         f"{lora.alpha:g}", "with its settings")
    biases = any(k.endswith(".base_layer.bias") for k in tensors)
    run_biases = any(k.endswith(".base_layer.bias") for k in trained)
    if biases != run_biases:
        raise refuse("it trains the biases of the adapted layers, this run keeps them frozen "
                     "(--no-train-bias)" if biases else "it keeps the biases of the adapted "
                     "layers frozen, this run trains them",
                     "without --no-train-bias" if biases else "with --no-train-bias")
    shapes = {n: tuple(p.shape) for n, p in probe.named_parameters() if p.requires_grad}
    differ = sorted(n for n in set(shapes) | set(tensors)
                    if n not in shapes or n not in tensors or tuple(tensors[n].shape) != shapes[n])
    if differ:
        raise refuse(f"its tensors differ from what this run trains ({_words(differ)})",
                     "with the settings it was trained with")


def load_init_adapter(model: torch.nn.Module, init: InitAdapter) -> None:
    """Copy the adapter's tensors into the trainable parameters of ``model`` (prepared by
    :func:`~.setup_steps.make_trainable`), in place: the optimizer then starts afresh."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(params) ^ set(init.tensors))
    if missing:  # _check_settings compared the same layout; this would be a bug
        raise RuntimeError(f"the initial adapter does not cover {missing[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(init.tensors[name].to(device=p.device, dtype=p.dtype))
