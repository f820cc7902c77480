"""ResNet-22 for CIFAR-10 (docs/models.md).

Three residual stages of 16, 64 and 256 filters, three basic blocks each (two 3x3 convolutions whose
output is added to the block's input). With the 3x3 stem, the two 1x1 projection shortcuts where the
width and resolution change, and the final linear layer that makes 1 + 18 + 2 + 1 = 22 weight layers.
Every convolution is followed by batch normalisation (an affine map per channel that the integer
datapath folds into requantisation). Inputs are pixel intensities in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bmhw.errors import BmhwError

from bmhw.models.layers import SpecMixin, conv, linear


class BasicBlock(nn.Module):
    def __init__(self, specs: dict, prefix: str, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = conv(specs[f"{prefix}.conv1"], in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv(specs[f"{prefix}.conv2"], out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(conv(specs[f"{prefix}.shortcut.0"], in_ch, out_ch, 1, stride, 0, bias=False),
                                          nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def _layer_names(widths, blocks) -> tuple[str, ...]:
    names = ["stem"]
    in_ch = widths[0]
    for s, width in enumerate(widths):
        for b in range(blocks):
            prefix = f"stages.{s}.{b}"
            names += [f"{prefix}.conv1", f"{prefix}.conv2"]
            if b == 0 and (s > 0 or in_ch != width):
                names.append(f"{prefix}.shortcut.0")
            in_ch = width
    return tuple(names + ["fc"])


class ResNet22(SpecMixin, nn.Module):
    def __init__(self, neuron="classical", reduce="max", alpha=None, learn_alpha=False, layers=None,
                 widths=(16, 64, 256), blocks=3, in_channels=3, num_classes=10):
        super().__init__()
        self.arch_args = {"widths": list(widths), "blocks": blocks, "in_channels": in_channels,
                          "num_classes": num_classes}
        self.WEIGHT_LAYERS = _layer_names(widths, blocks)
        specs = self._specs(neuron, reduce, alpha, learn_alpha, layers, self.WEIGHT_LAYERS)
        if any(spec["neuron"] == "bise" for spec in specs.values()):
            raise BmhwError("BiSE neurons are made for the LeNet (binary images): use --model lenet")
        self.stem = conv(specs["stem"], in_channels, widths[0], 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        stages = []
        in_ch = widths[0]
        for s, width in enumerate(widths):
            stride = 1 if s == 0 else 2
            stage = [BasicBlock(specs, f"stages.{s}.{b}", in_ch if b == 0 else width, width, stride if b == 0 else 1)
                     for b in range(blocks)]
            stages.append(nn.Sequential(*stage))
            in_ch = width
        self.stages = nn.Sequential(*stages)
        self.fc = linear(specs["fc"], widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem_bn(self.stem(x)))
        h = self.stages(h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def resnet22(neuron="classical", **kwargs) -> ResNet22:
    """ResNet-22 for CIFAR-10; ``neuron`` in {"classical", "bm4", "bm15", "adder"}; see :class:`ResNet22`."""
    return ResNet22(neuron=neuron, **kwargs)
