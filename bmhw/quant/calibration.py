"""The activation ranges a quantizer needs, measured once on training images and kept with the checkpoint.

A quantizer chooses each weight layer's output scale from the largest activation it sees: for a hidden layer the
largest value the next weight layer reads (after the ReLU and any pooling), for the logits layer the largest
magnitude. ``measure`` computes them in float64 on a batch of images; ``Calibration`` carries them with where
they come from, so that they travel in a checkpoint's metadata (``bmhw train --data``, ``convert``, ``distill``,
``bmhw calibrate``) and ``bmhw export model.pt`` quantizes exactly as ``bmhw quantize model.pt --data TRAIN`` does,
without ever touching test images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.quant.sequence import WEIGHT_MODULES, float64_copy, layer_names, layer_sequence
from bmhw.train.loop import to_tensor

METADATA_KEY = "calibration"
FORMAT = 1
DEFAULT_IMAGES = 2000  # drawn from the training split (bmhw.data.calibration_sample); all when fewer


@dataclass(frozen=True)
class Calibration:
    """``maxima``: weight layer name -> its largest activation (see the module); ``images``: how many images,
    ``source``: which ("mnist train split"); ``input_shape``: C, H, W of one image."""

    maxima: dict
    images: int
    source: str
    input_shape: tuple

    def to_metadata(self) -> dict:
        return {"format": FORMAT, "maxima": {k: float(v) for k, v in self.maxima.items()}, "images": int(self.images),
                "source": str(self.source), "input_shape": [int(v) for v in self.input_shape]}

    @classmethod
    def from_metadata(cls, entry, where: str) -> "Calibration":
        """The record of a checkpoint's metadata, checked: finite non-negative maxima, a positive image count."""
        try:
            maxima = {str(k): float(v) for k, v in entry["maxima"].items()}
            images, source, shape = int(entry["images"]), str(entry["source"]), tuple(int(v) for v in entry["input_shape"])
            ok = entry["format"] == FORMAT and images > 0 and len(shape) == 3 and min(shape) > 0
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok or not all(math.isfinite(v) and v >= 0 for v in maxima.values()):
            raise BmhwError(f"{where} has a damaged calibration record; record it again with bmhw calibrate "
                            f"{where} --data DIR")
        return cls(maxima, images, source, shape)


def _weight_indices(mods: list, weight_types) -> list[int]:
    return [i for i, m in enumerate(mods) if isinstance(m, weight_types)]


@torch.no_grad()
def measure(model: nn.Module, images: np.ndarray, source: str) -> Calibration:
    """The activation maxima of ``model`` on ``images`` (uint8, N x C x H x W), in float64 on a copy."""
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise BmhwError(f"calibration needs a non-empty batch of images (N, C, H, W), got shape {images.shape}")
    mods = layer_sequence(model.eval())
    names = layer_names(model, mods)
    outs, h = [], to_tensor(images).double()
    for mod in (float64_copy(m) for m in mods):
        h = mod(h)
        outs.append(h)
    weights = _weight_indices(mods, WEIGHT_MODULES)
    maxima = {}
    for n, i in enumerate(weights):
        if n + 1 < len(weights):  # what the next weight layer sees: after the ReLU and any pooling
            maxima[names[i]] = float(outs[weights[n + 1] - 1].max())
        else:
            maxima[names[i]] = float(outs[i].abs().max())
    return Calibration(maxima, len(images), source, tuple(int(v) for v in images.shape[1:]))


def on_training_images(model: nn.Module, images: np.ndarray, dataset: str, count: int = DEFAULT_IMAGES) -> Calibration:
    """The calibration of ``model`` on ``count`` of the training ``images`` of ``dataset`` (the sample
    ``bmhw.data.calibration_sample`` draws, so that the same images give the same record)."""
    from bmhw.data import calibration_sample

    return measure(model, calibration_sample(images, count), f"{dataset} train split")


def record(model: nn.Module, images: np.ndarray, dataset: str, count: int = DEFAULT_IMAGES) -> dict | None:
    """The calibration of a freshly trained or converted ``model`` on a sample of its training ``images``, as a
    checkpoint's metadata entry; None for a network the quantizers do not take (nothing to record)."""
    try:
        return on_training_images(model, images, dataset, count).to_metadata()
    except BmhwError:
        return None


def of_checkpoint(metadata: dict, where: str) -> Calibration | None:
    """The calibration recorded in a checkpoint's metadata, or None."""
    entry = (metadata or {}).get(METADATA_KEY)
    return None if entry is None else Calibration.from_metadata(entry, where)
