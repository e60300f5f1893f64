"""LoRA for convolutions: a frozen base layer plus a trainable low-rank update.

For a base convolution with weight ``W`` the adapted layer computes

    y = conv(x, W) + (alpha / r) * B(A(dropout(x)))          (Hu et al., 2021)

``A`` has the base layer's kernel size, stride, padding, dilation and padding
mode and maps ``in -> r`` channels; ``B`` is a 1x1 convolution ``r -> out``. For a
grouped base convolution both are grouped the same way (``r`` is a multiple of
``groups``), so ``B·A`` is itself a grouped kernel. Because every step is linear
in the weights, the update is exactly one extra kernel

    ΔW = (alpha / r) * B·A      (shape of W)

which :meth:`LoRALayer.merge` folds into ``W`` and :meth:`LoRALayer.unmerge`
takes back out. ``A`` starts Kaiming-uniform and ``B`` at zero, so before training
the adapted model computes exactly what the base model does.

For ``Conv2d`` this is the layout Hugging Face PEFT uses (``lora_A.weight``
``(r, in, k, k)``, ``lora_B.weight`` ``(out, r, 1, 1)``). For ``ConvTranspose2d``
(which PEFT lacks) ``A`` is a transposed convolution ``in -> r`` with the base
layer's geometry and ``B`` a 1x1 convolution ``r -> out``; ΔW is again ``B·A``
in the transposed-weight layout ``(in, out, k, k)``.

Four forward forms compute the same function (see :func:`set_forward_mode`):
``"branch"`` runs the thin A/B convolutions beside the frozen one (autograd never
forms the big frozen weight's gradient; the only form that applies dropout),
``"merged"`` builds ``W + ΔW`` each step and runs one convolution (thin
convolutions use a GPU poorly), ``"fused"`` is ``"merged"`` with a hand-written
backward pass that skips the full weight gradient (see :mod:`.fused`), and
``"auto"`` picks per layer: ``"fused"`` for layers of at least
``FUSED_MIN_CHANNELS`` channels in and out, ``"merged"`` for narrower ones, where the
frozen weight's gradient costs less than the fused backward's thin convolutions
(two CPU cores, batch 8, rank 4: merged takes 0.74-0.86 of fused's time at 16-32
channels, the same at 64, 1.14 times it at 128). With dropout every form runs as
``"branch"``; where the fused backward does not apply ``"fused"`` runs as
``"merged"``. :func:`~loragui.engine.devices.default_forward_mode` picks the form a
training uses.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .fused import FusedLoRAConv

FORWARD_MODES = ("branch", "merged", "fused", "auto")
FUSED_MIN_CHANNELS = 64  # "auto": narrower layers run merged (see the module's doc)


@dataclass
class LoRASettings:
    rank: int = 8
    alpha: float = 16.0
    rslora: bool = False  # scale alpha / sqrt(rank) (Kalajdzievski, 2023)
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["*"])  # fnmatch patterns on module names
    exclude: list[str] = field(default_factory=list)
    rank_pattern: dict[str, int] = field(default_factory=dict)  # per-layer rank overrides
    alpha_pattern: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def rank_for(self, name: str) -> int:
        for pattern, value in self.rank_pattern.items():
            if name == pattern or fnmatch.fnmatchcase(name, pattern):
                return value
        return self.rank

    def alpha_for(self, name: str) -> float:
        for pattern, value in self.alpha_pattern.items():
            if name == pattern or fnmatch.fnmatchcase(name, pattern):
                return value
        return self.alpha


def lora_scaling(alpha: float, rank: int, rslora: bool) -> float:
    return alpha / math.sqrt(rank) if rslora else alpha / rank


class LoRALayer(nn.Module):
    """A frozen ``Conv2d`` or ``ConvTranspose2d`` with a trainable low-rank update.

    Args:
        base: the pretrained layer; its parameters are frozen in place.
        rank: ``r``; rounded up to a multiple of the base layer's ``groups``.
        alpha: the update is scaled by ``alpha / r`` (``alpha / sqrt(r)`` with rslora).
        dropout: dropout on the LoRA input; with dropout every forward form runs as the
            branch form (a merged weight has no separate LoRA input to drop).

    Raises:
        TypeError: for a base layer that is not ``Conv2d``/``ConvTranspose2d``.
        ValueError: for a rank below 1.
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, *, rslora: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Conv2d | nn.ConvTranspose2d):
            raise TypeError(f"LoRA supports Conv2d and ConvTranspose2d, not {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        groups = base.groups
        rank = int(math.ceil(rank / groups) * groups)
        self.base_layer = base
        self.rank = rank
        self.alpha = float(alpha)
        self.rslora = rslora
        self.scaling = lora_scaling(self.alpha, rank, rslora)
        self.transposed = isinstance(base, nn.ConvTranspose2d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.forward_mode = "branch"
        self.merged = False
        for p in base.parameters():
            p.requires_grad_(False)
        if self.transposed:
            self.lora_A = nn.ConvTranspose2d(
                base.in_channels, rank, base.kernel_size, stride=base.stride,
                padding=base.padding, output_padding=base.output_padding, groups=groups,
                bias=False, dilation=base.dilation, padding_mode=base.padding_mode,
            )
        else:
            self.lora_A = nn.Conv2d(
                base.in_channels, rank, base.kernel_size, stride=base.stride,
                padding=base.padding, dilation=base.dilation, groups=groups, bias=False,
                padding_mode=base.padding_mode,
            )
        self.lora_B = nn.Conv2d(rank, base.out_channels, 1, groups=groups, bias=False)
        self._fused_ok = (not self.transposed and groups == 1 and base.padding_mode == "zeros"
                          and not isinstance(base.padding, str))
        self._fused_pays = min(base.in_channels, base.out_channels) >= FUSED_MIN_CHANNELS
        self.lora_A.to(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_B.to(device=base.weight.device, dtype=base.weight.dtype)
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        # Kaiming-uniform A (as nn.Conv2d's own init) and zero B: the update starts at 0,
        # so training starts from exactly the base model.
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling · B·A in the base weight's layout (grouped where the base is)."""
        g = self.base_layer.groups
        a = self.lora_A.weight  # conv: (r, in/g, kh, kw); transposed: (in, r/g, kh, kw)
        b = self.lora_B.weight[:, :, 0, 0]  # (out, r/g)
        out_c, r = b.shape[0], self.rank
        bg = b.reshape(g, out_c // g, r // g)  # (g, out/g, r/g)
        if self.transposed:
            in_c = a.shape[0]
            ag = a.reshape(g, in_c // g, r // g, *a.shape[2:])  # (g, in/g, r/g, kh, kw)
            delta = torch.einsum("gor,girhw->giohw", bg, ag)  # (g, in/g, out/g, kh, kw)
            delta = delta.reshape(in_c, out_c // g, *a.shape[2:])
        else:
            ag = a.reshape(g, r // g, *a.shape[1:])  # (g, r/g, in/g, kh, kw)
            delta = torch.einsum("gor,grihw->goihw", bg, ag)  # (g, out/g, in/g, kh, kw)
            delta = delta.reshape(out_c, *a.shape[1:])
        return delta * self.scaling

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        base = self.base_layer
        if self.transposed:
            return F.conv_transpose2d(x, weight, base.bias, base.stride, base.padding,
                                      base.output_padding, base.groups, base.dilation)
        return base._conv_forward(x, weight, base.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        mode = self.forward_mode
        if mode == "auto":
            mode = "fused" if self._fused_pays else "merged"
        if mode == "fused" and self._fused_ok and isinstance(self.dropout, nn.Identity):
            base = self.base_layer
            return FusedLoRAConv.apply(x, base.weight, base.bias, self.lora_A.weight,
                                       self.lora_B.weight, self.scaling, base.stride,
                                       base.padding, base.dilation)
        if mode in ("merged", "fused") and isinstance(self.dropout, nn.Identity):
            weight = self.base_layer.weight + self.delta_weight().to(self.base_layer.weight.dtype)
            return self._conv(x, weight)
        return self.base_layer(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ΔW into the base weight: inference at the base model's speed."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ΔW back out of the base weight (exact up to float rounding)."""
        if self.merged:
            self.base_layer.weight -= self.delta_weight().to(self.base_layer.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, scaling={self.scaling:g}"


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def target_names(model: nn.Module, targets: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """Names of the Conv2d/ConvTranspose2d modules matching ``targets`` and not ``exclude``."""
    targets, exclude = list(targets), list(exclude)
    return [
        name for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and not isinstance(module, LoRALayer)
        and not name.endswith((".lora_A", ".lora_B")) and _matches(name, targets)
        and not _within(name, exclude)
    ]


def _within(name: str, patterns: Iterable[str]) -> bool:
    """``name`` is a module that ``patterns`` name, or a part of one: a module trained
    whole is trained with every part, so LoRA wraps none of them."""
    return _matches(name, patterns) or any(name.startswith(p + ".") for p in patterns)


def inject_lora(model: nn.Module, settings: LoRASettings) -> list[str]:
    """Freeze ``model`` and wrap each targeted convolution in a :class:`LoRALayer`.

    Returns the wrapped module names. Raises ``ValueError`` when no layer matches.
    """
    names = target_names(model, settings.targets, settings.exclude)
    if not names:
        raise ValueError(f"no convolution matches the LoRA targets {settings.targets}")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        layer = LoRALayer(base, settings.rank_for(name), settings.alpha_for(name),
                          rslora=settings.rslora, dropout=settings.dropout)
        setattr(parent, child, layer)
    return names


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALayer]]:
    for name, module in model.named_modules():
        if isinstance(module, LoRALayer):
            yield name, module


def set_forward_mode(model: nn.Module, mode: str) -> None:
    if mode not in FORWARD_MODES:
        raise ValueError(f"forward mode must be one of {FORWARD_MODES}, got {mode!r}")
    for _, layer in lora_layers(model):
        layer.forward_mode = mode


def merge_lora(model: nn.Module) -> None:
    for _, layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    for _, layer in lora_layers(model):
        layer.unmerge()


def strip_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer and put the plain base layers back: a plain model."""
    for name, layer in list(lora_layers(model)):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base_layer)
    return model


def set_extra_trainable(model: nn.Module, *, biases: bool, modules: Iterable[str] = ()) -> list[str]:
    """Make biases of adapted layers (and whole named modules, e.g. the head) trainable.

    Returns the parameter names made trainable (model-relative, as in state_dict).
    """
    names = []
    modules = list(modules)
    adapted = {name for name, _ in lora_layers(model)}
    for pname, p in model.named_parameters():
        owner = pname.rsplit(".", 1)[0]
        plain_owner = owner.removesuffix(".base_layer")
        is_bias = pname.endswith(".bias") and plain_owner in adapted and owner.endswith("base_layer")
        in_module = any(plain_owner == m or plain_owner.startswith(m + ".") for m in modules)
        if (biases and is_bias) or in_module:
            if ".lora_" in pname:
                continue
            p.requires_grad_(True)
            names.append(pname)
    return names


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor (LoRA A/B, trained biases, trained modules), by model-relative name."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
