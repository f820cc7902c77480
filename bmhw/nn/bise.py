"""BiSE layers (Aouad et al. 2023, "A foundation for exact binarized morphological neural networks").

A BiSE ("binary structuring element") neuron is a convolution with weights and a bias followed by a smooth
threshold (docs/training.md, "BiSE")::

    y_o = sigmoid(p * (sum_k W_ok x_k - b_o)),   W signed,  p = exp(log_scale) > 0

with inputs and outputs in [0, 1]. On binary inputs a negative weight is a positive one on the complemented
input (:func:`fold`: ``W . x - b = |W| . l - b'`` with the literals ``l_k = 1 - x_k`` where ``W_k < 0``), so
everything below is stated on ``(|W|, b')`` and the literals. Thresholded at 1/2 (our convention: the binary
output is 1 iff ``W . x >= b``, i.e. ``y >= 1/2``), on binary inputs it is exactly a binary dilation or
erosion of the literals by a structuring element S (a subset of the fan-in) under these conditions (derived
in docs/training.md), with W read as |W| and b as b':

* dilation by S (output = OR of x over S):  ``min_{k in S} W_k >= b``  and  ``sum_{k not in S} W_k < b``;
* erosion by S (output = AND of x over S):  ``sum_k W_k - min_{k in S} W_k < b <= sum_{k in S} W_k``.

In both cases S is a "top set" ``{k : W_k >= t}`` of the weights, so searching the K nested sets of the
largest weights is exhaustive for exactness; :func:`binarizable`, :func:`project`, the regularisation
:func:`activable_loss` and the binarised forward (:func:`binary_forward`: a count of the true literals
inside S, compared with 1 for a dilation, |S| for an erosion) are all built on that. Training
(:func:`bise_loss_fn`: a straight-through step for the second half) and the data-driven layer-by-layer
binarisation with refitting (:func:`binarize_layerwise`) are what make the binarised LeNet work.

This module holds the layers; the exact conditions, the projection and the binarised forward are in
``bmhw.nn.bise_math``, the regularisation, the loss and the layer-by-layer binarisation in ``bmhw.nn.bise_train``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.errors import BmhwError
from bmhw.nn.bise_math import EROSION, project, project_tensor


OPS = ("dilation", "erosion")


# Input binarisation threshold of a BiSE network (docs/training.md): pixel x in [0, 1] -> 1 iff x >= 1/2.
INPUT_THRESHOLD = 0.5


def binarize_input(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> {0, 1}: 1 iff ``x >= INPUT_THRESHOLD`` (the same float dtype)."""
    return (x >= INPUT_THRESHOLD).to(x.dtype)


def _softplus_inv(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class _BiSENeuron(nn.Module):
    """Shared parameters of BiSE and BiSELinear: ``weight`` (raw; W = softplus(weight)), ``bias``,
    ``log_scale`` (p = exp(log_scale)), and, after :meth:`binarize`, the binarised operators."""

    def _init_params(self, out_features: int, weight_shape: tuple, fan_in: int) -> None:
        self.fan_in = fan_in
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.log_scale = nn.Parameter(torch.zeros(()))
        # Binarised operators (not in the state dict: recomputed from the weights by binarize()).
        self.binary = False
        self.se = None  # (O, K) bool
        self.op = None  # (O,) int64: 0 dilation, 1 erosion
        self.neg = None  # (O, K) bool: the input enters complemented (its weight is negative)
        # Straight-through training (bise_loss_fn): forward the projected operator, backward the sigmoid.
        self.hard = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Signed W ~ U(-1, 1), b = half the total weight (the pre-activation is centred at inputs of 1/2),
        # p = 4 / sqrt(K).
        k = self.fan_in
        with torch.no_grad():
            w = torch.rand(self.weight.shape) * 2 - 1
            self.weight.copy_(w)
            self.bias.copy_(0.5 * w.reshape(w.shape[0], -1).sum(1))
            self.log_scale.fill_(math.log(4.0 / math.sqrt(k)))

    def neuron_spec(self) -> dict:
        return {"neuron": "bise"}

    def signed_weight(self) -> torch.Tensor:
        """The signed weights W (the parameter itself), shaped like ``weight``."""
        return self.weight

    def weight_matrix(self) -> torch.Tensor:
        """W as an O x K matrix (K in the patch order: channel, kernel row, kernel column)."""
        return self.signed_weight().reshape(self.weight.shape[0], -1)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def binarize(self) -> None:
        """Project onto morphological operators (:func:`project`) and run the binarised forward from now on."""
        op, se, neg = project(self)
        self.set_binary(op, se, neg)

    def set_binary(self, op, se, neg=None) -> None:
        o = self.weight.shape[0]
        self.op = torch.as_tensor(np.asarray(op), dtype=torch.int64)
        self.se = torch.as_tensor(np.asarray(se), dtype=torch.bool).reshape(o, self.fan_in)
        self.neg = (torch.zeros_like(self.se) if neg is None
                    else torch.as_tensor(np.asarray(neg), dtype=torch.bool).reshape(o, self.fan_in))
        self.binary = True

    def unbinarize(self) -> None:
        self.binary = False
        self.se = self.op = self.neg = None

    def _pre(self, x: torch.Tensor) -> torch.Tensor:  # W . x - b, per output
        raise NotImplementedError

    def _linear_map(self, x: torch.Tensor, w: torch.Tensor, bias) -> torch.Tensor:  # O x K matrix w
        raise NotImplementedError

    def _count_of(self, x: torch.Tensor, se: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Number of true literals inside S per output: ``sum_{k in S} (neg_k ? 1 - x_k : x_k)``, computed as
        ``(S and not neg) . x - (S and neg) . x + |S and neg|`` (zero padding reads 0, its complement 1)."""
        sf, nf = se.to(x.dtype), (se & neg).to(x.dtype)
        return self._linear_map(x, sf - 2 * nf, nf.sum(1))

    def _count(self, x: torch.Tensor) -> torch.Tensor:
        return self._count_of(x, self.se, self.neg)

    def _bshape(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.reshape((1, -1) + (1,) * (like.dim() - 2))

    def thresholds(self) -> torch.Tensor:
        """Integer threshold of each binarised output: 1 for a dilation, |S| for an erosion."""
        size = self.se.sum(1)
        return torch.where(self.op == EROSION, size, torch.ones_like(size))

    def _hard_operators(self):
        """The current projection as torch tensors (no gradient): op (O,), se (O, K), neg (O, K)."""
        with torch.no_grad():
            op, se, neg = project_tensor(self.weight_matrix().detach(), self.bias.detach())
        return op, se, neg

    @staticmethod
    def _threshold_of(op, se):
        size = se.sum(1)
        return torch.where(op == EROSION, size, torch.ones_like(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(p (W . x - b)) in [0, 1]; binarised: the OR / AND over the literals in S, in {0, 1}.
        In ``hard`` (straight-through) mode: the value of the current projection, the gradient of the sigmoid."""
        if self.binary:
            count = self._count(x)
            return (count >= self._bshape(self.thresholds(), count).to(count.dtype)).to(x.dtype)
        pre = self._pre(x)
        soft = torch.sigmoid(self.scale() * pre)
        if self.hard == "step":  # straight-through threshold: (W . x >= b) forward, the sigmoid backward
            return soft + ((pre >= 0).to(x.dtype) - soft).detach()
        if self.hard:
            op, se, neg = self._hard_operators()
            count = self._count_of(x.detach(), se, neg)
            hard = (count >= self._bshape(self._threshold_of(op, se), count).to(count.dtype)).to(x.dtype)
            return soft + (hard - soft).detach()
        return soft

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of a last layer: p (W . x - b) (the logits before the threshold); binarised: the
        number of true literals inside each output's S (docs/training.md). ``hard``: the counts forward, the
        logits' gradient backward."""
        if self.binary:
            return self._count(x)
        logits = self.scale() * self._pre(x)
        if self.hard and self.hard != "step":
            _, se, neg = self._hard_operators()
            count = self._count_of(x.detach(), se, neg)
            return logits + (count - logits).detach()
        return logits


class BiSE(_BiSENeuron):
    """BiSE convolution (``nn.Conv2d``'s signature; the bias is always there). Zero padding is binary 0."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__()
        if not bias:
            raise BmhwError("a BiSE layer always has its bias (the threshold): leave bias=True")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self._init_params(out_channels, (out_channels, in_channels) + ks, in_channels * ks[0] * ks[1])

    def _pre(self, x):
        return F.conv2d(x, self.signed_weight(), -self.bias, self.stride, self.padding)

    def _linear_map(self, x, w, bias):
        return F.conv2d(x, w.reshape(self.weight.shape), bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, binary={self.binary}")


class BiSELinear(_BiSENeuron):
    """BiSE dense layer (``nn.Linear``'s signature; the bias is always there)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        if not bias:
            raise BmhwError("a BiSE layer always has its bias (the threshold): leave bias=True")
        self.in_features, self.out_features = in_features, out_features
        self._init_params(out_features, (out_features, in_features), in_features)

    def _pre(self, x):
        return F.linear(x, self.signed_weight(), -self.bias)

    def _linear_map(self, x, w, bias):
        return F.linear(x, w, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, binary={self.binary}"

