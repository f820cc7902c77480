"""Scoreboard: exact comparison of the accelerator with the golden model.

Layer buffers are compared in data-flow order, then the logits, then the arg-max, with
``np.array_equal``; the first difference raises Mismatch naming the image, the layer and the index
(with its channel, row and column for a feature map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class Mismatch(AssertionError):
    def __init__(self, image: int, layer: str, index: int, where: str, rtl: int, golden: int):
        self.image, self.layer, self.index, self.rtl, self.golden = image, layer, index, rtl, golden
        super().__init__(f"image {image}: layer {layer} index {index}{where}: RTL {rtl}, golden model {golden}")


def _where(index: int, shape) -> str:
    if shape is None or len(shape) != 3:
        return ""
    c, h, w = np.unravel_index(index, shape)
    return f" (channel {c}, row {h}, column {w})"


@dataclass
class Scoreboard:
    shapes: dict = field(default_factory=dict)  # buffer name -> (C, H, W) or None
    checked: int = 0
    layer_checks: int = 0

    def compare(self, image: int, layer: str, rtl: np.ndarray, golden: np.ndarray) -> None:
        rtl, golden = np.asarray(rtl, dtype=np.int64), np.asarray(golden, dtype=np.int64)
        if rtl.shape != golden.shape:
            raise Mismatch(image, layer, -1, f" (shape {rtl.shape} vs {golden.shape})", -1, -1)
        if not np.array_equal(rtl, golden):
            index = int(np.flatnonzero(rtl != golden)[0])
            raise Mismatch(image, layer, index, _where(index, self.shapes.get(layer)), int(rtl[index]),
                           int(golden[index]))

    def check(self, image: int, result, expected_logits, expected_class: int, buffers=None,
              expected_buffers=None) -> None:
        """One image: every monitored buffer (in data-flow order), the logits, the class."""
        for name, values in (buffers or {}).items():
            self.compare(image, name, values, expected_buffers[name])
        if buffers:
            self.layer_checks += 1
        self.compare(image, "logits", result.logits, expected_logits)
        self.compare(image, "argmax", [result.predicted], [expected_class])
        self.checked += 1
