"""How an adapter maps onto a model: the plan (which layers, ranks, tensor names), the
check that it was made for this base model, and applying it."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .adapters import Adapter
from .basemodel import BaseModelInfo, arch_text
from .errors import AdapterMismatchError, ModelFileError
from .formats import MERGED_FORMAT
from .lora import LoRASettings, inject_lora, lora_layers
from .maskkinds import MaskMeaning
from .unet import UNet, UNetConfig


def module_matches(name: str, pattern: str) -> bool:
    """PEFT's matching of a module-list entry (exact or dotted suffix), plus fnmatch."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def _pattern_key(patterns: dict[str, Any], name: str) -> str | None:
    for key in patterns:
        if key == name:
            return key
    for key in patterns:
        if name.endswith("." + key):
            return key
    for key in patterns:
        if fnmatch.fnmatchcase(name, key):
            return key
    return None


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


@dataclass
class AdapterPlan:
    """How an adapter maps onto a model: which layers get LoRA, their ranks and
    alphas, and the model-relative name of every tensor in the adapter."""

    targets: list[str]
    transposed: list[str]
    ranks: dict[str, int]
    alphas: dict[str, float]
    modules_to_save: list[str]
    renames: dict[str, str]  # adapter tensor name -> model state_dict name (after injection)


def plan_adapter(model: nn.Module, config: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                 name: str) -> AdapterPlan:
    """Check an adapter's config and tensor shapes against ``model`` (which may live on
    the meta device) without changing it; raise :class:`ModelFileError` saying what
    does not fit."""
    if any(True for _ in lora_layers(model)):
        raise ModelFileError("the model already carries LoRA layers; load a fresh base model")
    modules = {n: m for n, m in model.named_modules() if n}
    convs = {n: m for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}
    saved = _modules_to_save(modules, config, name)
    targets = _lora_targets(modules, convs, set(saved), config, shapes, name)
    ranks, alphas = _ranks_and_alphas(convs, targets, config, name)
    expected = _expected_tensors(modules, convs, targets, ranks, saved, config, shapes)
    _check_tensors(expected, shapes, convs, ranks, config.get("bias", "none"), name)
    return AdapterPlan(targets, expected.transposed, ranks, alphas, saved, expected.renames)


def _modules_to_save(modules: dict[str, nn.Module], config: dict[str, Any], name: str) -> list[str]:
    """The modules trained whole, each entry matched exactly or as a dotted suffix."""
    saved: list[str] = []
    lacking = []
    for entry in config.get("modules_to_save") or []:
        hits = [n for n in modules if n == entry or n.endswith("." + entry)]
        if not hits:
            lacking.append(entry)
        saved += [h for h in hits if h not in saved]
    if lacking:
        raise ModelFileError(f"{name}: modules_to_save names module(s) this model lacks: "
                             f"{_few(lacking)}")
    return saved


def _lora_targets(modules: dict[str, nn.Module], convs: dict[str, nn.Module], saved: set[str],
                  config: dict[str, Any], shapes: dict[str, tuple[int, ...]], name: str) -> list[str]:
    """The layers adapted with LoRA, sorted."""
    in_tensors = sorted({k.rsplit(".", 2)[0] for k in shapes
                         if k.endswith((".lora_A.weight", ".lora_B.weight"))})
    targets_cfg = config["target_modules"]
    if isinstance(targets_cfg, str):
        # PEFT reads a string as a regular expression; loragui does not evaluate
        # regular expressions from files, so the tensors say which layers are adapted.
        absent = [t for t in in_tensors if t not in convs]
        if absent:
            raise ModelFileError(f"{name} holds LoRA tensors for module(s) this model lacks or "
                                 f"that are not convolutions: {_few(absent)}")
        targets = list(in_tensors)
    else:
        targets, lacking, wrong_kind = [], [], []
        for entry in targets_cfg:
            # a wildcard (loragui's fnmatch patterns) skips modules trained whole
            hits = [n for n in convs if module_matches(n, entry) and (
                n not in saved or n == entry or n.endswith("." + entry))]
            if not hits:
                other = [n for n in modules if module_matches(n, entry)]
                if other:
                    wrong_kind.append(f"{entry} ({type(modules[other[0]]).__name__})")
                else:
                    lacking.append(entry)
            targets += [h for h in hits if h not in targets]
        if lacking:
            raise ModelFileError(f"{name}: target_modules names module(s) this model lacks: "
                                 f"{_few(lacking)}")
        if wrong_kind:
            raise ModelFileError(f"{name}: target_modules names module(s) that are not "
                                 f"convolutions: {_few(wrong_kind)}")
        exclude = config.get("exclude_modules") or []
        targets = [t for t in targets if not any(module_matches(t, e) for e in exclude)]
    both = sorted(set(targets) & saved)
    if both:
        raise ModelFileError(f"{name}: module(s) {_few(both)} are both LoRA targets and in "
                             "modules_to_save")
    if not targets:
        raise ModelFileError(f"{name}: target_modules selects no layer of this model")
    return sorted(targets)


def _ranks_and_alphas(convs: dict[str, nn.Module], targets: list[str], config: dict[str, Any],
                      name: str) -> tuple[dict[str, int], dict[str, float]]:
    """Each target's rank (rounded up to a multiple of its groups) and alpha; every
    pattern entry must be used."""
    r, alpha = config["r"], float(config["lora_alpha"])
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    ranks, alphas, used_r, used_a = {}, {}, set(), set()
    for t in targets:
        key = _pattern_key(rank_pattern, t)
        groups = convs[t].groups
        declared = rank_pattern[key] if key is not None else r
        ranks[t] = int(math.ceil(declared / groups) * groups)
        used_r.add(key)
        key = _pattern_key(alpha_pattern, t)
        alphas[t] = float(alpha_pattern[key]) if key is not None else alpha
        used_a.add(key)
    for pattern, used, what in ((rank_pattern, used_r, "rank_pattern"),
                                (alpha_pattern, used_a, "alpha_pattern")):
        unused = sorted(set(pattern) - used)
        if unused:
            raise ModelFileError(f"{name}: {what} names layer(s) the adapter does not adapt: "
                                 f"{_few(unused)}")
    return ranks, alphas


@dataclass
class _Expected:
    """The tensors an adapter must hold (``required``) and may hold (``optional``), by
    model-relative name and shape."""

    required: dict[str, tuple[int, ...]]
    optional: dict[str, tuple[int, ...]]
    renames: dict[str, str]
    transposed: list[str]


def _expected_tensors(modules: dict[str, nn.Module], convs: dict[str, nn.Module],
                      targets: list[str], ranks: dict[str, int], saved: list[str],
                      config: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> _Expected:
    required: dict[str, tuple[int, ...]] = {}
    optional: dict[str, tuple[int, ...]] = {}
    renames: dict[str, str] = {}
    bias_mode = config.get("bias", "none")
    transposed = []
    for t in targets:
        conv, rank = convs[t], ranks[t]
        g, (kh, kw) = conv.groups, conv.kernel_size
        if isinstance(conv, nn.ConvTranspose2d):
            transposed.append(t)
            required[f"{t}.lora_A.weight"] = (conv.in_channels, rank // g, kh, kw)
        else:
            required[f"{t}.lora_A.weight"] = (rank, conv.in_channels // g, kh, kw)
        required[f"{t}.lora_B.weight"] = (conv.out_channels, rank // g, 1, 1)
        if conv.bias is not None:
            key = f"{t}.base_layer.bias"
            if f"{t}.bias" in shapes and key not in shapes:  # older PEFT naming
                renames[f"{t}.bias"] = key
            (required if bias_mode == "lora_only" else optional)[key] = (conv.out_channels,)
    for s in saved:
        for pname, tensor in modules[s].state_dict().items():
            required[f"{s}.{pname}"] = tuple(tensor.shape)
    if bias_mode == "all":
        saved_set = set(saved)
        for mname, module in modules.items():
            if mname in targets or mname in saved_set or getattr(module, "bias", None) is None:
                continue
            if any(mname.startswith(s + ".") for s in saved_set):
                continue
            if isinstance(module.bias, torch.Tensor) and not mname.endswith((".lora_A", ".lora_B")):
                optional[f"{mname}.bias"] = tuple(module.bias.shape)
    return _Expected(required, optional, renames, transposed)


def _check_tensors(expected: _Expected, shapes: dict[str, tuple[int, ...]],
                   convs: dict[str, nn.Module], ranks: dict[str, int], bias_mode: str,
                   name: str) -> None:
    """Refuse missing, unexpected and misshapen tensors, naming a rank that disagrees."""
    present = {expected.renames.get(k, k): v for k, v in shapes.items()}
    missing = sorted(set(expected.required) - set(present))
    if missing:
        raise ModelFileError(f"{name} is missing {len(missing)} tensor(s): {_few(missing, 3)}")
    allowed = {**expected.optional, **expected.required}
    unexpected = sorted(set(present) - set(allowed))
    if unexpected:
        biases = [k for k in unexpected if k.endswith(".base_layer.bias")]
        if biases and bias_mode == "none" and len(biases) == len(unexpected):
            raise ModelFileError(f"{name}: its config says bias 'none' but it holds {len(biases)} "
                                 f"bias tensor(s), e.g. {biases[0]}")
        raise ModelFileError(f"{name} holds {len(unexpected)} tensor(s) this model has no place "
                             f"for: {_few(unexpected, 3)}")
    if bias_mode == "none":
        biases = sorted(k for k in present if k.endswith(".base_layer.bias"))
        if biases:
            raise ModelFileError(f"{name}: its config says bias 'none' but it holds {len(biases)} "
                                 f"bias tensor(s), e.g. {biases[0]}")
    for key, shape in sorted(present.items()):
        want = allowed[key]
        if tuple(shape) == want:
            continue
        layer, _, part = key.rpartition(".lora_")
        if part in ("A.weight", "B.weight") and len(shape) == 4:
            # the rank is axis 0 of a Conv2d's lora_A, else axis 1 (divided by groups)
            axis = 0 if part == "A.weight" and layer not in expected.transposed else 1
            others = [s for i, s in enumerate(shape) if i != axis]
            if others == [s for i, s in enumerate(want) if i != axis]:
                got = shape[axis] * (convs[layer].groups if axis == 1 else 1)
                raise ModelFileError(
                    f"{name}: layer {layer} has rank {got} in its lora_{part[0]} tensor but the "
                    f"config says rank {ranks[layer]} (r or rank_pattern disagrees with the tensors)")
        raise ModelFileError(f"{name}: tensor {key!r} has shape {tuple(shape)}, expected {want}")


def check_base(adapter: Adapter, base: BaseModelInfo | None, model: nn.Module | None = None,
               *, force: bool = False) -> list[str]:
    """Refuse an adapter made for another base model. An architecture that differs is
    always refused (the shapes differ); a different SHA-256 only without ``force``."""
    warnings: list[str] = []
    section = adapter.loragui
    if not section:
        return warnings
    made_for = section.get("base_name") or "an unnamed base model"
    arch = section.get("architecture")
    # the model's own (a head fitted by fit_head differs from its base file in that alone)
    have = getattr(model, "config", None) if model is not None else None
    if not isinstance(have, UNetConfig) and base is not None:
        have = base.architecture
    base_label = base.name if base is not None else "this model"
    if arch is not None and isinstance(have, UNetConfig) and \
            UNetConfig.from_dict(arch).to_dict() != have.to_dict():
        raise AdapterMismatchError(
            f"adapter {adapter.name} was made for base model {made_for} ({arch_text(arch)}), "
            f"but {base_label} has {arch_text(have)}; the shapes differ, so it cannot be "
            "applied (not even with --force): use the base model it was trained on")
    want = section.get("base_sha256")
    if want and base is not None and want != base.sha256:
        merged = " (a merged model: it already holds an adapter)" \
            if base.metadata.get("format") == MERGED_FORMAT else ""
        msg = (f"adapter {adapter.name} was made for base model {made_for} (SHA-256 {want[:12]}…), "
               f"not {base.name}{merged} (SHA-256 {base.sha256[:12]}…)")
        if not force:
            raise AdapterMismatchError(msg + "; use that base model, or --force if you are sure "
                                             "(allowed only where the shapes match)")
        warnings.append(msg + "; applied anyway (--force)")
    return warnings


def apply_adapter(model: UNet, adapter: Adapter, base: BaseModelInfo | None = None,
                  *, force: bool = False) -> list[str]:
    """Inject LoRA layers into ``model`` as the adapter describes and load its tensors.

    Refuses an adapter made for another base model (SHA-256 or architecture)
    unless ``force`` is set and every shape matches; refuses tensors that are
    missing, unexpected, or whose shapes disagree with the config. Returns warnings.
    """
    return apply_adapter_plan(model, adapter, base, force)[0]


def fit_head(model: nn.Module, adapter: Adapter) -> bool:
    """Give ``model`` the head of an adapter that trained a fresh one: a base adapted to
    K classes. Only exactly that difference is accepted: the adapter records masks of K
    classes, trains the head whole, and its architecture differs from the model's in
    the head's channels alone. Returns whether the head was replaced."""
    section = adapter.loragui
    arch, masks = section.get("architecture"), section.get("masks")
    if not (isinstance(arch, dict) and isinstance(masks, dict) and isinstance(model, UNet)):
        return False
    want, have = UNetConfig.from_dict(arch), model.config
    if want.out_channels == have.out_channels \
            or replace(have, out_channels=want.out_channels) != want \
            or MaskMeaning.from_dict(masks).k != want.out_channels \
            or "head" not in (adapter.config.get("modules_to_save") or []):
        return False
    model.replace_head(want.out_channels)
    return True


def apply_adapter_plan(model: UNet, adapter: Adapter, base: BaseModelInfo | None,
           force: bool) -> tuple[list[str], AdapterPlan]:
    fit_head(model, adapter)
    warnings = check_base(adapter, base, model, force=force)
    shapes = {k: tuple(v.shape) for k, v in adapter.tensors.items()}
    plan = plan_adapter(model, adapter.config, shapes, adapter.source.name)
    settings = LoRASettings(
        rank=int(adapter.config["r"]), alpha=float(adapter.config["lora_alpha"]),
        rslora=bool(adapter.config.get("use_rslora") or False), targets=plan.targets,
        rank_pattern=dict(plan.ranks), alpha_pattern=dict(plan.alphas))
    try:
        inject_lora(model, settings)
    except (ValueError, TypeError) as exc:
        raise AdapterMismatchError(f"adapter {adapter.name} does not fit this model: {exc}") from None
    state = {plan.renames.get(k, k): v for k, v in adapter.tensors.items()}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # plan_adapter checked every name; this would be a bug
        raise ModelFileError(f"{adapter.source.name}: tensors not loaded: {result.unexpected_keys[:3]}")
    for p in model.parameters():
        p.requires_grad_(False)
    return warnings, plan
