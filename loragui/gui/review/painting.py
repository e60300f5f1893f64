"""The pixel work of the canvas, in numpy (no Qt): brush strokes, fill, delete,
and the colours of the mask and prediction overlays.

Coordinates are the scene's: pixel (row i, column j) covers [j, j+1) x [i, i+1)
and its centre is (j + 0.5, i + 0.5). A brush of size ``d`` paints the pixels
whose centres lie within ``d / 2`` of the stroke, so a brush of size 1 paints
the pixel under the cursor and a brush of size 3 its 3x3 neighbourhood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice]  # (rows, columns)


def capsule_box(shape: tuple[int, int], p0: tuple[float, float], p1: tuple[float, float],
                size: float, margin: int = 0) -> Box | None:
    """The pixels a stroke from ``p0`` to ``p1`` ((x, y) scene points) may touch,
    grown by ``margin``, clipped to ``shape``; None when it misses the image."""
    r = size / 2
    x0 = int(np.floor(min(p0[0], p1[0]) - r)) - margin
    x1 = int(np.ceil(max(p0[0], p1[0]) + r)) + margin
    y0 = int(np.floor(min(p0[1], p1[1]) - r)) - margin
    y1 = int(np.ceil(max(p0[1], p1[1]) + r)) + margin
    h, w = shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def capsule(shape: tuple[int, int], box: Box, p0: tuple[float, float],
            p1: tuple[float, float], size: float) -> np.ndarray:
    """(box's h, w) bool: the pixels of ``box`` whose centres lie within ``size / 2``
    of the segment ``p0``-``p1`` (a round brush dragged along it)."""
    rows, cols = box
    ys = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(cols.start, cols.stop, dtype=np.float64)[None, :] + 0.5
    ax, ay = p0
    dx, dy = p1[0] - ax, p1[1] - ay
    length2 = dx * dx + dy * dy
    if length2 == 0:
        t = 0.0
    else:  # the nearest point of the segment to each pixel centre
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / length2, 0.0, 1.0)
    ex, ey = xs - (ax + t * dx), ys - (ay + t * dy)
    r = size / 2
    return ex * ex + ey * ey <= r * r


def stroke(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], size: float,
           value: bool | int) -> Box | None:
    """Paint (``value`` True, or a class index into a class map) or erase (False, 0) a
    brush segment into ``mask`` in place; the box changed."""
    box = capsule_box(mask.shape, p0, p1, size)
    if box is not None:
        mask[box][capsule(mask.shape, box, p0, p1, size)] = value
    return box


def fill_region(mask: np.ndarray, row: int, col: int, value: bool | int = True) -> np.ndarray | None:
    """The mask with the background region around (row, col) filled with ``value``
    (True, or a class index into a class map; 4-connected, so a region leaks through
    no diagonal gap of an outline); None when that pixel is foreground already or
    outside."""
    from skimage.segmentation import flood

    if not (0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]) or mask[row, col]:
        return None
    out = mask.copy()
    out[flood(mask, (row, col), connectivity=1)] = value
    return out


def delete_object(mask: np.ndarray, row: int, col: int) -> np.ndarray | None:
    """The mask without the object under (row, col) (its 8-connected component,
    the objects scikit-image's label counts; in a class map, of the pixel's class);
    None on the background."""
    from skimage.segmentation import flood

    if not (0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]) or not mask[row, col]:
        return None
    out = mask.copy()
    out[flood(mask, (row, col), connectivity=2)] = 0
    return out


@dataclass(frozen=True)
class Look:
    """How an overlay shows: its colour (r, g, b), fill or outline; ``classes``: the
    colours of a run's classes (index = class), each foreground pixel of a class map
    drawn in its class's (a pixel of no known class in ``colour``)."""

    colour: tuple[int, int, int]
    outline: bool = False
    classes: tuple[tuple[int, int, int], ...] = ()


def rgb(colour: str) -> tuple[int, int, int]:
    """(r, g, b) of "#rrggbb"."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# The mask in yellow, the prediction in cyan: both apart from the pinks and purples
# of stained tissue and from each other; a dark rim outside each outline keeps it
# readable on bright backgrounds too. The prediction's outline lies over the mask's
# fill (canvas.py), so where the two differ both edges show.
MASK_LOOK = Look((255, 212, 0))
PREDICTION_LOOK = Look((0, 229, 255), outline=True)
FILL_ALPHA = 80  # the inside of a filled overlay, light enough to see the image (the outline is opaque)
RIM = (0, 0, 0, 170)  # the dark rim outside the outline


def _argb(r: int, g: int, b: int, a: int) -> np.uint32:
    """A premultiplied ARGB32 pixel (QImage.Format_ARGB32_Premultiplied)."""
    pm = [v * a // 255 for v in (r, g, b)]
    return np.uint32((a << 24) | (pm[0] << 16) | (pm[1] << 8) | pm[2])


def _colours(look: Look, colour: tuple[int, int, int] | None = None) -> np.ndarray:
    r, g, b = colour or look.colour
    inside = _argb(r, g, b, 0 if look.outline else FILL_ALPHA)
    return np.array([0, inside, _argb(r, g, b, 255), _argb(*RIM)], np.uint32)


def _class_table(look: Look) -> np.ndarray:
    """(1 + classes, 4): row 0 for foreground of no known class (``look.colour``), row
    1 + i for class i, each [clear, inside, outline, rim]."""
    rows = [_colours(look)] + [_colours(look, c) for c in look.classes]
    return np.stack(rows)


def render(mask: np.ndarray, look: Look, out: np.ndarray, box: Box | None = None,
           classes: np.ndarray | None = None) -> Box:
    """Write the overlay pixels of ``box`` of ``mask`` ((H, W) bool, or a class map:
    then its own ``classes``) into ``out``
    ((H, W) uint32, premultiplied ARGB) and return the box drawn (all when None).

    Inside pixels next to the background are the outline; background pixels next
    to it the dark rim; the inside is translucent (fill) or clear (outline).
    ``classes`` ((H, W) uint8 class indices) with ``look.classes``: each foreground
    pixel takes its class's colour, and where two classes meet each shows its outline."""
    h, w = mask.shape
    rows, cols = box if box is not None else (slice(0, h), slice(0, w))
    y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
    # One pixel more on each side: the 4-neighbours of the box's pixels.
    py0, py1, px0, px1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    if mask.dtype != bool:  # a class map: its foreground, each class in its colour
        classes = mask if classes is None else classes
        near = mask[py0:py1, px0:px1] > 0
    else:
        near = mask[py0:py1, px0:px1]
    # At the image's border the neighbour outside repeats the edge: no outline there.
    sub = np.pad(near, ((1 - (y0 - py0), 1 - (py1 - y1)),
                                          (1 - (x0 - px0), 1 - (px1 - x1))), mode="edge")
    centre = sub[1:-1, 1:-1]
    up, down, left, right = sub[:-2, 1:-1], sub[2:, 1:-1], sub[1:-1, :-2], sub[1:-1, 2:]
    inner = up & down & left & right
    edge = centre & ~inner
    rim = ~centre & (up | down | left | right)
    if classes is not None and look.classes:
        # Class boundaries inside the foreground are outlines too (in each side's colour).
        cls = np.pad(classes[py0:py1, px0:px1], ((1 - (y0 - py0), 1 - (py1 - y1)),
                                                 (1 - (x0 - px0), 1 - (px1 - x1))), mode="edge")
        c = cls[1:-1, 1:-1]
        edge |= centre & ((cls[:-2, 1:-1] != c) | (cls[2:, 1:-1] != c)
                          | (cls[1:-1, :-2] != c) | (cls[1:-1, 2:] != c))
    kind = centre.view(np.uint8) + edge.view(np.uint8) + 3 * rim.view(np.uint8)
    if classes is not None and look.classes:
        # Row 1 + class (known classes), row 0 for anything else (painted, unknown).
        row = np.where(c < len(look.classes), c.astype(np.intp) + 1, 0) * centre
        out[y0:y1, x0:x1] = _class_table(look)[row, kind]
        return slice(y0, y1), slice(x0, x1)
    # Each pixel's kind (0 clear, 1 inside, 2 outline, 3 rim) picks its colour from a
    # table: one pass over the box instead of a masked assignment per kind.
    out[y0:y1, x0:x1] = _colours(look)[kind]
    return slice(y0, y1), slice(x0, x1)


def grown(box: Box, shape: tuple[int, int], by: int = 1) -> Box:
    """``box`` grown by ``by`` pixels on each side, within ``shape``."""
    rows, cols = box
    return (slice(max(rows.start - by, 0), min(rows.stop + by, shape[0])),
            slice(max(cols.start - by, 0), min(cols.stop + by, shape[1])))
