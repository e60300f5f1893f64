"""Which way round a run's images go to the model: as they are, or inverted.

A base model learns the polarity of its objects. A nuclei model trained on
fluorescence (bright nuclei on black) finds few of them in stained tissue or
brightfield, where they are dark on a light background, and most of them in the
same images inverted: the bundled CPU base scores a validation Dice of 0.13 on the
bundled sample as it is and 0.80 inverted, before any training. Adapting from the
inverted images starts where adapting from the plain ones arrives only after many
steps, so a default run scores the base model both ways on its validation images
before the first step and trains on the better way when it is clearly better
(by more than ``MARGIN``).

The choice is part of the preprocessing (``Preprocessing.invert``): the adapter
records it, and prediction, evaluation, merging and every export apply it, so the
model always sees images the way it was trained. Torch is used through the
Validator only; the decision itself is plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import DecodedDataset

MARGIN = 0.05  # Dice: inverted images must score this much more than the plain ones
SCORED_IMAGES = 64  # the base is scored on at most this many validation images each way


@dataclass(frozen=True)
class Polarity:
    """The base model's validation Dice on the images as they are and inverted."""

    plain: float
    inverted: float

    @property
    def invert(self) -> bool:
        return self.inverted > self.plain + MARGIN

    def message(self) -> str:
        """What the run says of the choice, for the log and the terminal."""
        if self.invert:
            return (f"the base model finds the objects better in the images inverted (Dice "
                    f"{self.inverted:.2f}, against {self.plain:.2f} as they are): this run "
                    "trains on inverted images, and the adapter inverts every image it is "
                    "given (--no-auto-invert keeps them as they are)")
        return (f"images go to the model as they are (base model's Dice {self.plain:.2f}; "
                f"inverted {self.inverted:.2f})")


def inverted(data: DecodedDataset) -> DecodedDataset:
    """The same pairs with every image inverted (255 - value), as ``Preprocessing.invert``
    normalises them: the masks are shared, the images are new arrays."""
    return DecodedDataset(list(data.names), [np.subtract(255, im, dtype=np.uint8)
                                             for im in data.images], data.masks)


def invert_in_place(data: DecodedDataset) -> None:
    """Invert every image of ``data`` in its own array (no second copy of the set)."""
    for im in data.images:
        np.subtract(255, im, out=im)


def score_polarity(validator, data: DecodedDataset) -> Polarity:
    """The base model (``validator``'s, with its own head) scored on up to SCORED_IMAGES
    images of ``data`` both ways, against each mask's foreground (any value but 0)."""
    first = DecodedDataset(data.names[:SCORED_IMAGES], data.images[:SCORED_IMAGES],
                           data.masks[:SCORED_IMAGES])
    plain = validator.run(first).summary["dice"]
    other = validator.run(inverted(first)).summary["dice"]
    return Polarity(float(plain or 0.0), float(other or 0.0))
