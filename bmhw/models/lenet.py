"""The LeNet-like reference network for MNIST (docs/models.md).

Five weight layers, LeNet-5 shapes by default (28x28 input, no padding)::

    conv1 5x5, 1->6   -> ReLU -> maxpool 2   (6 x 24x24 -> 6 x 12x12)
    conv2 5x5, 6->16  -> ReLU -> maxpool 2   (16 x 8x8 -> 16 x 4x4)
    flatten (256) -> fc1 256->120 -> ReLU -> fc2 120->84 -> ReLU -> fc3 84->10 (logits)

Inputs are pixel intensities in [0, 1] (no mean/std normalisation), so every weight layer sees
non-negative inputs: what the 1.5-branch neuron and the unsigned activation codes of the hardware want.

With ``neuron="bise"`` (all five layers BiSE, bmhw.nn.bise): the image is binarised (pixel >= 1/2), each
BiSE layer's output in [0, 1] replaces ReLU, max pooling follows the convolutions (an OR on binary maps),
and fc3 gives class scores (:meth:`BiSELinear.scores`: its logits, or binarised, the popcount of its input
inside each class's structuring element).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bmhw.models.layers import SpecMixin, StagedMixin, conv, linear
from bmhw.nn.bise import _BiSENeuron, binarize_input


class LeNet(SpecMixin, StagedMixin, nn.Module):
    WEIGHT_LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")

    def __init__(self, neuron="classical", reduce="max", alpha=None, learn_alpha=False, layers=None,
                 widths=(6, 16, 120, 84), in_channels=1, input_size=28, num_classes=10):
        super().__init__()
        c1, c2, f1, f2 = widths
        self.arch_args = {"widths": list(widths), "in_channels": in_channels, "input_size": input_size,
                          "num_classes": num_classes}
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size={input_size} is too small for two 5x5 convolutions and two pools")
        specs = self._specs(neuron, reduce, alpha, learn_alpha, layers, self.WEIGHT_LAYERS)
        self.conv1 = conv(specs["conv1"], in_channels, c1, 5)
        self.conv2 = conv(specs["conv2"], c1, c2, 5)
        self.fc1 = linear(specs["fc1"], c2 * side * side, f1)
        self.fc2 = linear(specs["fc2"], f1, f2)
        self.fc3 = linear(specs["fc3"], f2, num_classes)

    def layer_input(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """What weight layer ``name`` receives, given the previous stage's output."""
        return h.flatten(1) if name == "fc1" else h

    def stage(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """One weight layer and the operations that follow it up to the next weight layer."""
        layer = getattr(self, name)
        if isinstance(layer, _BiSENeuron):
            if name == "conv1":
                h = binarize_input(h)
            if name == "fc3":
                return layer.scores(self.layer_input(name, h))
            h = layer(self.layer_input(name, h))
            return F.max_pool2d(h, 2) if name in ("conv1", "conv2") else h
        h = layer(self.layer_input(name, h))
        if name in ("conv1", "conv2"):
            return F.max_pool2d(F.relu(h), 2)
        return h if name == "fc3" else F.relu(h)


def lenet(neuron="classical", **kwargs) -> LeNet:
    """LeNet-like MNIST network; ``neuron`` in {"classical", "bm4", "bm15", "adder", "bise"}; see :class:`LeNet`."""
    return LeNet(neuron=neuron, **kwargs)
