"""Validation: the held-out images through the model, scored, with previews.

The model runs in eval mode and, for a LoRA model, in the merged forward form (one
convolution per layer: the base model's cost). Images of one size are batched up to
about ``VAL_BATCH_PIXELS`` pixels (``CPU_VAL_BATCH_PIXELS`` on the CPU); a device that
runs out of memory gets smaller batches from then on, down to one image at a time (big
images are tiled).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .class_metrics import ClassScores
from .dataset import DecodedDataset
from .devices import default_forward_mode
from .errors import TrainingError
from .events import Preview
from .faults import device_words, free_memory, is_out_of_memory, memory_advice
from .lora import set_forward_mode
from .metrics import SegmentationScores, segmentation_loss
from .model_input import to_model_input
from .objects import count, labels_from_class_map
from .predict import predict_probability
from .tiling import forward_batch
from .unet import UNet

VAL_BATCH_PIXELS = 2**22  # validation batches hold about this many pixels (shrunk on OOM)
# On the CPU a forward pass is fastest per pixel while its activations stay in the
# cache. The bundled small base, channels-last as training holds it, on two cores
# (bf16 with AMX; float32 in brackets), in ms a megapixel: four 1024² images at once
# 293 (643), one at a time 181 (448); 21 images of 320×256 at once 189 (526), three at
# a time 96 (328). So the CPU's batches are small.
CPU_VAL_BATCH_PIXELS = 2**18
TILED_AREA = 2**21  # images larger than this are predicted alone, in tiles


@dataclass
class Validation:
    """One validation's result: the scores (SegmentationScores.summary()), the mean
    validation loss (None without validation images), previews and its cost."""

    summary: dict[str, Any]
    val_loss: float | None
    previews: list[Preview] = field(default_factory=list)
    seconds: float = 0.0


class Validator:
    """Validates ``model`` on ``device``. ``fault(message)`` is told when the batches
    shrink after running out of memory; ``resume_hint()`` ends a message that stops the
    run (what is intact, and how to resume). ``count_objects``: the model predicts
    objects (background, interior, boundary), and each preview counts the objects of its
    prediction and of its mask. ``inverted``: the images are inverted for the model."""

    def __init__(self, model: UNet, device: torch.device, *, autocast: bool, lora: bool,
                 previews: int, fault: Callable[[str], None],
                 resume_hint: Callable[[], str], classes: list[str] | None = None,
                 colours: list[str] | None = None, count_objects: bool = False,
                 inverted: bool = False) -> None:
        self.model = model
        self.classes = classes  # class names of a K-class model; None: foreground/background
        self.colours = colours or []  # their colours, for the previews
        self.count_objects = count_objects
        # The images are inverted for the model (polarity.py): previews invert them back,
        # to show them as the user knows them.
        self.inverted = inverted
        self.device = device
        self.autocast = autocast
        self.lora = lora
        self.previews = previews
        self.fault = fault
        self.resume_hint = resume_hint
        self.batch_pixels = CPU_VAL_BATCH_PIXELS if device.type == "cpu" else VAL_BATCH_PIXELS

    @torch.no_grad()
    def run(self, data: DecodedDataset | None) -> Validation:
        t0 = time.perf_counter()
        scores = ClassScores(self.classes) if self.classes else SegmentationScores()
        previews = []
        loss_sum = 0.0
        self.model.eval()
        if self.lora:
            set_forward_mode(self.model, "merged")
        try:
            if data is not None:
                for i, logits in self._logits(data):
                    image, mask = data.images[i], data.masks[i]
                    target = torch.from_numpy(mask.astype(np.float32))[None, None]
                    many = logits.ndim == 3  # (K, H, W): classes
                    batch = logits[None] if many else logits[None, None]
                    loss_sum += float(segmentation_loss(batch, target))
                    if many:
                        scores.add(logits.argmax(0).numpy(), mask)
                        # the previews show the foreground: any class but background
                        prob = 1 - torch.softmax(logits, 0)[0].numpy()
                    else:
                        prob = torch.sigmoid(logits).numpy()
                        scores.add(prob > 0.5, mask > 0)
                    if i < self.previews:
                        classes = logits.argmax(0).numpy().astype(np.uint8) if many else None
                        shown = np.subtract(255, image, dtype=np.uint8) if self.inverted \
                            else image
                        previews.append(Preview(data.names[i], shown, mask > 0,
                                                prob.astype(np.float32), classes,
                                                tuple(self.colours) if many else (),
                                                *self._counts(classes, mask)))
        finally:
            if self.lora:
                set_forward_mode(self.model, default_forward_mode(self.device))
        val_loss = loss_sum / len(data.names) if data is not None else None
        return Validation(scores.summary(), val_loss, previews, time.perf_counter() - t0)

    def _counts(self, classes: np.ndarray | None, mask: np.ndarray
                ) -> tuple[int | None, int | None]:
        """The objects of a preview's predicted classes and of its mask's (the mask holds
        the same three classes, so both are split alike); (None, None) when the run
        counts no objects. Only previews pay for the watershed."""
        if not self.count_objects or classes is None:
            return None, None
        return count(labels_from_class_map(classes)), count(labels_from_class_map(mask))

    def _logits(self, data: DecodedDataset) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, logits on the CPU: (H, W), or (K, H, W) for K classes) per validation
        image; same-sized images batched."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(data.images):
            by_shape.setdefault(image.shape, []).append(i)
        results = {}
        for shape, indices in by_shape.items():
            area = shape[0] * shape[1]
            pos = 0
            while pos < len(indices):
                big = area > TILED_AREA
                per_batch = 1 if big else max(1, self.batch_pixels // area)
                chunk = indices[pos:pos + per_batch]
                try:
                    results.update(self._chunk(data, chunk, big))
                    pos += len(chunk)
                    continue
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                free_memory(self.device)
                where = device_words(self.device)
                if len(chunk) == 1:
                    name = data.names[chunk[0]]
                    raise TrainingError(
                        f"{where} ran out of memory validating {name} ({shape[1]}×{shape[0]} "
                        "pixels), even alone. "
                        + memory_advice("Use smaller validation images (crops of the large ones)",
                                        offer_cpu=self.device.type != "cpu")
                        + self.resume_hint())
                smaller = max(1, len(chunk) // 2)
                self.batch_pixels = smaller * area
                self.fault(f"{where} ran out of memory validating {len(chunk)} images at once; "
                           f"validating {smaller} at a time from now on")
        for i in range(len(data.images)):
            yield i, results[i]

    def _chunk(self, data: DecodedDataset, chunk: list[int], big: bool
               ) -> dict[int, torch.Tensor]:
        if big:
            i = chunk[0]
            return {i: predict_probability(self.model, data.images[i], self.device, logits=True)}
        x = to_model_input([data.images[i] for i in chunk], self.device)
        out = forward_batch(self.model, x, self.device, self.autocast)
        out = (out[:, 0] if out.shape[1] == 1 else out).cpu()
        return {i: out[j] for j, i in enumerate(chunk)}
