"""Patch geometry of the convolutions that are not ``nn.Conv2d`` (BM, adder): output size and the unfolded
input patches, in the order every BM and adder kernel and the hardware read them."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class ConvPatches:
    """Patch geometry shared by the convolutions that are not nn.Conv2d (BM, adder): ``kernel_size``,
    ``stride`` and ``padding`` pairs set by the subclass."""

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return ((h + 2 * self.padding[0] - kh) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - kw) // self.stride[1] + 1)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Input patches (B*Ho*Wo x C*kh*kw), batch-major, then output position in raster order."""
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # B x K x L
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
