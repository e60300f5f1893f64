"""Prediction of an image of any size in tiles, with the same result as the whole image.

A tile's prediction is exact except within the network's receptive field of a cut
edge, where the context beyond the cut is missing. So the tiles overlap by two such
margins and a ramp: each tile's weight is 0 within ``margin`` of a cut edge, rises
smoothly (a raised cosine) over the ramp, and is 1 inside; at the image's own edges
the tile is exact and keeps weight 1. The blended result (weighted mean) then equals
the whole-image prediction within float rounding, seams included.

Tiles sit on the grid of ``2**depth`` pixels that the network pools on, over the image
reflect-padded to that multiple as :meth:`UNet.forward_any_size` pads it, so that each
tile sees exactly the pixels the whole-image forward pass sees.

Memory stays bounded by one row of tiles: the weighted sums of the tiles in a row are
kept for that row's height only, and the rows finished are thresholded into the
preallocated uint8 mask at once. The probabilities never exist at full size, and an
image given as a :class:`.bands.RowSource` is read one row of tiles at a time, so the
mask is the only full-size array.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .bands import RowSource
from .devices import supports_bf16
from .model_input import to_model_input
from .unet import UNet

TILE = 1024  # tile side (rounded down to the pooling grid)
RAMP = 32  # the blending ramp inside the overlap, in pixels

# on_tile(done, total): called after each tile
TileCallback = Callable[[int, int], None]


def receptive_radius(model: UNet) -> int:
    """How far (pixels) an output pixel sees: two 3x3 convolutions per level, 2x2 pooling
    and 2x2 transposed up-sampling; rounded up to the pooling grid."""
    depth = model.config.depth
    radius = 8 * 2 ** depth - 6  # 6 (2^depth - 1) on the way down and up + 2 * 2^depth below
    m = model.multiple
    return math.ceil(radius / m) * m


def forward_batch(model: UNet, x: torch.Tensor, device: torch.device, bf16: bool
                  ) -> torch.Tensor:
    """The float32 logits of a batch of model input of any size (channels-last, in the
    device's precision): the one forward pass of prediction and validation."""
    if device.type != "mps":  # channels-last convolutions: 1.6x faster on the CPU
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        return model.forward_any_size(x).float()


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile positions along one axis of ``size`` (padded) pixels; the last one ends at the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def edge_weight(length: int, margin: int, ramp: int, cut_before: bool,
                cut_after: bool) -> np.ndarray:
    """1-D weight of a tile along one axis: 0 within ``margin`` of a cut edge, a raised
    cosine over ``ramp``, 1 inside; 1 up to an image edge (``cut_* = False``)."""
    w = np.ones(length, np.float32)
    rise = (0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)).astype(np.float32)
    if cut_before:
        w[:margin] = 0
        w[margin:margin + ramp] = rise
    if cut_after:
        w[length - margin:] = 0
        w[length - margin - ramp:length - margin] *= rise[::-1]
    return w


def _reflect(index: np.ndarray, size: int) -> np.ndarray:
    """Indices past the end mirrored back, as ``F.pad(mode="reflect")`` pads."""
    return np.where(index < size, index, 2 * (size - 1) - index)


def _rows(image: np.ndarray | RowSource, index: np.ndarray) -> np.ndarray:
    """The image's rows ``index`` (ascending, then mirrored back at the bottom edge)."""
    if isinstance(image, np.ndarray):
        return image[index]
    low, high = int(index.min()), int(index.max()) + 1
    band = image.rows(low, high)
    mirrored = len(index) != high - low or index[-1] != high - 1
    return band[index - low] if mirrored else band


def tile_count(height: int, width: int, model: UNet, tile: int = TILE) -> int:
    """How many tiles an image of this size is predicted in (1: in one piece)."""
    plan = _plan(height, width, model, tile)
    return 1 if plan is None else len(plan[0]) * len(plan[1])


def _plan(height: int, width: int, model: UNet, tile: int):
    """(row starts, column starts, tile height, tile width, margin, padded size), or None
    when the image is predicted in one piece."""
    m = model.multiple
    if height <= tile and width <= tile:
        return None
    margin = receptive_radius(model)
    tile = max(tile // m * m, 4 * margin)
    hp, wp = height + (-height) % m, width + (-width) % m
    th, tw = min(tile, hp), min(tile, wp)
    # consecutive tiles share two margins and the ramp (a multiple of the grid)
    stride_h = th - 2 * margin - math.ceil(RAMP / m) * m
    stride_w = tw - 2 * margin - math.ceil(RAMP / m) * m
    return (tile_starts(hp, th, stride_h), tile_starts(wp, tw, stride_w), th, tw, margin,
            (hp, wp))


def predict_mask(model: UNet, image: np.ndarray, device: torch.device | str = "cpu", *,
                 threshold: float = 0.5, tile: int = TILE,
                 on_tile: TileCallback | None = None, bf16: bool | None = None) -> np.ndarray:
    """The (H, W) uint8 mask (255 where the probability exceeds ``threshold``, else 0) of
    one (H, W, C) uint8 image, in tiles when it is larger than ``tile`` pixels a side."""
    return _run(tiled(model, image, device, output="mask", threshold=threshold, tile=tile,
                      bf16=bf16), on_tile)


def predict_logits(model: UNet, image: np.ndarray, device: torch.device | str = "cpu", *,
                   tile: int = TILE, on_tile: TileCallback | None = None,
                   bf16: bool | None = None) -> np.ndarray:
    """The (H, W) float32 logits of one image (held at full size: for images that fit in
    memory several times over; :func:`predict_mask` for any size)."""
    return _run(tiled(model, image, device, output="logits", tile=tile, bf16=bf16), on_tile)


def _run(steps, on_tile: TileCallback | None) -> np.ndarray:
    while True:
        try:
            done, total = next(steps)
        except StopIteration as finished:
            return finished.value
        if on_tile is not None:
            on_tile(done, total)


@torch.no_grad()
def tiled(model: UNet, image: np.ndarray | RowSource, device: torch.device | str = "cpu", *,
          output: str = "mask", threshold: float = 0.5, tile: int = TILE,
          bf16: bool | None = None):
    """Predict one (H, W, C) uint8 image (an array or a :class:`.bands.RowSource`); yields
    ``(tiles done, tiles)`` after each tile and returns the uint8 0/255 mask
    (``output="mask"``) or the float32 logits (``"logits"``).

    A generator, so that the caller can report each tile and stop between two. The
    logits are blended (their sigmoid is the probability). ``bf16``: the forward pass in
    bf16 autocast; by default where the device runs it faster (:func:`.supports_bf16`).
    In float32 the tiles blend to the whole image's logits within float rounding; in
    bf16 within bf16's (a tile's size changes how its sums are rounded)."""
    device = torch.device(device)
    if bf16 is None:
        bf16 = supports_bf16(device)
    h, w = image.shape[:2]
    k = model.config.out_channels  # K > 1: the logits are (K, H, W), the mask class indices
    cut = math.log(threshold / (1 - threshold))  # probability > threshold <=> logit > cut
    plan = _plan(h, w, model, tile)
    if plan is None:
        whole = image if isinstance(image, np.ndarray) else image.rows(0, h)
        logits = forward_batch(model, to_model_input(whole, device), device, bf16)[0]
        yield 1, 1
        if output == "logits":
            return logits[0].cpu().numpy() if k == 1 else logits.cpu().numpy()
        if k > 1:
            return logits.argmax(0).to(torch.uint8).cpu().numpy()
        return ((torch.sigmoid(logits[0]) > threshold).to(torch.uint8) * 255).cpu().numpy()
    rows, cols, th, tw, margin, (hp, wp) = plan
    if output == "logits":
        out = np.zeros((h, w) if k == 1 else (k, h, w), np.float32)
    else:
        out = np.zeros((h, w), np.uint8)
    weights_x = [edge_weight(tw, margin, RAMP, left > 0, left + tw < wp) for left in cols]
    # A tile's weight is wy(row) x wx(column) and the tiles form a grid, so the sum of
    # the weights at a pixel is (sum of the wy) x (sum of the wx): two vectors, not an
    # array of a tile row's size.
    col_sum = np.zeros(wp, np.float32)
    for left, wx in zip(cols, weights_x, strict=True):
        col_sum[left:left + tw] += wx
    total, done = len(rows) * len(cols), 0
    carry: tuple[np.ndarray, np.ndarray] | None = None  # sums for rows the next tile row shares
    for r, top in enumerate(rows):
        acc = np.zeros((k, th, wp), np.float32)  # sum of weight x logit
        row_sum = np.zeros(th, np.float32)  # sum of the tile rows' wy
        if carry is not None:
            acc[:, :carry[0].shape[1]] = carry[0]
            row_sum[:len(carry[1])] = carry[1]
        wy = edge_weight(th, margin, RAMP, top > 0, top + th < hp)
        row_sum += wy
        # (th, W, C): this tile row's pixels, the only ones read from a RowSource now
        band = _rows(image, _reflect(np.arange(top, top + th), h))
        for left, wx in zip(cols, weights_x, strict=True):
            x = to_model_input(band[:, _reflect(np.arange(left, left + tw), w)], device)
            logits = forward_batch(model, x, device, bf16)[0].cpu().numpy()
            acc[:, :, left:left + tw] += (wy[:, None] * wx[None, :]) * logits
            done += 1
            yield done, total
        del band
        # the rows above the next tile row's start are final
        end = rows[r + 1] if r + 1 < len(rows) else top + th
        n = min(end, h) - top
        if n > 0:
            # in place (the rows carried to the next tile row lie below n): a 20,000 px
            # wide row of tiles makes no temporaries of its size
            blended = acc[:, :n, :w]
            blended /= row_sum[:n, None]
            blended /= col_sum[None, :w]
            if output == "logits":
                out[..., top:top + n, :] = blended[0] if k == 1 else blended
            elif k > 1:
                out[top:top + n] = blended.argmax(0).astype(np.uint8)
            else:
                np.greater(blended[0], cut, out=out[top:top + n].view(np.bool_))
                out[top:top + n] *= np.uint8(255)
        keep = end - top
        carry = (acc[:, keep:].copy(), row_sum[keep:].copy()) if keep < th else None
    return out
