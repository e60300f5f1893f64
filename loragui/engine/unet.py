"""The UNet: an encoder, a bottleneck and a decoder joined by skip connections.

Encoder levels of two 3x3 conv + ReLU, each followed by 2x2 max-pooling; a
bottleneck block; decoder levels that up-sample with ``ConvTranspose2d`` and
concatenate the matching encoder output; a 1x1 head producing logits.

Channel widths double per level: ``width * 2**level``. With ``depth`` poolings,
inputs whose height and width are multiples of ``2**depth`` map exactly;
:func:`UNet.forward_any_size` pads other sizes and crops back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3
    out_channels: int = 1
    width: int = 32  # channels of the first level (each level doubles them)
    depth: int = 3  # number of poolings: inputs map exactly at multiples of 2**depth

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> UNetConfig:
        values = {}
        for name, low, high in (
            ("in_channels", 1, 64), ("out_channels", 1, 64), ("width", 1, 1024), ("depth", 1, 8),
        ):
            value = data.get(name, getattr(cls, name))
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ValueError(f"architecture field {name!r} must be an integer in [{low}, {high}], "
                                 f"got {value!r}")
            values[name] = value
        return cls(**values)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions, each followed by ReLU. (B, in, H, W) -> (B, out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None, **kwargs: int) -> None:
        super().__init__()
        self.config = config or UNetConfig(**kwargs)
        c = self.config
        widths = [c.width * 2**level for level in range(c.depth + 1)]
        self.down = nn.ModuleList()
        channels = c.in_channels
        for level in range(c.depth):
            self.down.append(ConvBlock(channels, widths[level]))
            channels = widths[level]
        self.bottleneck = ConvBlock(widths[c.depth - 1], widths[c.depth])
        # up[i] / dec[i] work at level i (0 = full resolution).
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
            for level in range(c.depth)
        )
        self.dec = nn.ModuleList(ConvBlock(2 * widths[level], widths[level]) for level in range(c.depth))
        self.head = nn.Conv2d(widths[0], c.out_channels, 1)

    def replace_head(self, out_channels: int) -> None:
        """A fresh 1x1 head of ``out_channels`` channels (a binary base adapted to K
        classes); everything else is kept. The head is trained whole."""
        old = self.head
        self.head = nn.Conv2d(old.in_channels, out_channels, 1).to(old.weight.device)
        self.config = replace(self.config, out_channels=out_channels)

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this for :meth:`forward`."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_channels, H, W), H and W multiples of 2**depth -> logits (B, out_channels, H, W)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for level in reversed(range(self.config.depth)):
            x = self.up[level](x)
            x = self.dec[level](torch.cat([x, skips[level]], dim=1))
        return self.head(x)

    def forward_any_size(self, x: torch.Tensor) -> torch.Tensor:
        """Forward for any H, W: reflect-pad up to a multiple of 2**depth, then crop back."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # reflect needs pad < size; fall back to replicate for tiny inputs
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return self.forward(x)[..., :h, :w]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
