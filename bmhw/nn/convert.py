"""Conversion between classical layers and BM layers, in both directions.

``to_bm`` uses formula 2 of Limonova et al. for 4 branches and the shifted form ``v = ln(w + dw)`` for
1.5 branches (docs/neurons.md). ``to_classical`` maps a BM layer back to the classical layer whose
weights it stands for (``exp(v) - dw``, or ``exp(v+) - exp(v-)``); the two compute the same function
exactly for 1.5 branches with LSE at alpha = 1, and approximately otherwise.
Both return new modules and leave their argument untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.nn.maxplus import REDUCTIONS
from bmhw.nn.groups import Maxima
from bmhw.nn.layers import DEFAULT_DELTA_X, BMConv2d, BMLinear, _BMNeuron
from bmhw.nn.logweights import delta_w_for, log_weights_4, log_weights_15, log_weights_split


def _check_conv(conv: nn.Conv2d, name: str) -> None:
    problems = []
    if conv.groups != 1:
        problems.append(f"groups={conv.groups}")
    if tuple(conv.dilation) != (1, 1):
        problems.append(f"dilation={conv.dilation}")
    if conv.padding_mode != "zeros":
        problems.append(f"padding_mode={conv.padding_mode!r}")
    if isinstance(conv.padding, str) and conv.padding != "valid":  # 'valid' is padding 0
        problems.append(f"padding={conv.padding!r}")
    if problems:
        raise BmhwError(f"cannot convert {name or 'Conv2d'} to BM: {', '.join(problems)} is not supported "
                        "(BM convolutions take groups=1, dilation=1, numeric zero padding)")


def _convert_layer(layer: nn.Module, name: str, branches, reduce, alpha, learn_alpha, delta_x,
                   maxima: Maxima) -> nn.Module:
    common = dict(branches=branches, reduce=reduce, alpha=alpha, learn_alpha=learn_alpha,
                  bias=layer.bias is not None, delta_x=delta_x,
                  maxima=maxima.resolve(layer.weight[0].numel(), name or "layer"), split_sign=maxima.split_sign)
    weight = layer.weight.detach()
    if branches == 1.5 and not maxima.split_sign:
        common["delta_w"] = delta_w_for(weight)
    if isinstance(layer, nn.Linear):
        new = BMLinear(layer.in_features, layer.out_features, **common)
    else:
        _check_conv(layer, name)
        padding = 0 if layer.padding == "valid" else layer.padding
        new = BMConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, padding, **common)
    new = new.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        if new.split_sign:
            new.v.copy_(log_weights_split(weight))
            new.sign.copy_(torch.where(weight < 0, -1.0, 1.0))
        elif branches == 1.5:
            new.v.copy_(log_weights_15(weight, float(new.delta_w)))
        else:
            v_pos, v_neg = log_weights_4(weight)
            new.v_pos.copy_(v_pos)
            new.v_neg.copy_(v_neg)
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach())
    return new


def _to_classical_layer(layer: _BMNeuron) -> nn.Module:
    bias = layer.bias is not None
    if isinstance(layer, BMLinear):
        new = nn.Linear(layer.in_features, layer.out_features, bias=bias)
    else:
        new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding, bias=bias)
    weight = layer.classical_weight().detach()
    new = new.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias:
            new.bias.copy_(layer.bias)
    return new


def _replace(module: nn.Module, convert, prefix: str = "") -> nn.Module:
    for child_name, child in module.named_children():
        full = f"{prefix}.{child_name}" if prefix else child_name
        new = convert(child, full)
        if new is child:
            _replace(child, convert, full)
        else:
            setattr(module, child_name, new)
    return module


def maxima_for(maxima, name: str) -> Maxima:
    """The maxima of layer ``name`` from ``maxima``: one value for every layer (an int, "6s", "K", a Maxima) or
    a mapping from layer names to values (layers not named: 1)."""
    if isinstance(maxima, dict):
        return Maxima.parse(maxima.get(name, 1))
    return Maxima.parse(1 if maxima is None else maxima)


def to_bm(layer_or_model: nn.Module, branches=1.5, reduce="max", alpha=None, learn_alpha=False,
          delta_x=DEFAULT_DELTA_X, layers=None, maxima=1) -> nn.Module:
    """Convert ``nn.Linear`` / ``nn.Conv2d`` (a layer, or every one inside a model) to BM layers.

    ``layers``: optional collection of dotted module names to convert (default: all). BM layers
    already in the model are left as they are. ``maxima``: maxima per neuron (bmhw.nn.groups), for every
    layer or as a mapping from layer names (e.g. ``{"conv2": "6s", "fc3": "K"}``).
    """
    if isinstance(maxima, dict):
        for value in maxima.values():
            Maxima.parse(value)  # every value checked, named layers or not
    if branches not in (4, 1.5):
        raise BmhwError(f"branches must be 4 or 1.5, got {branches!r}")
    if reduce not in REDUCTIONS:
        raise BmhwError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {reduce!r}")

    def convert(module, name):
        if isinstance(module, (nn.Linear, nn.Conv2d)) and (layers is None or name in layers):
            return _convert_layer(module, name, branches, reduce, alpha, learn_alpha, delta_x, maxima_for(maxima, name))
        return module

    top = convert(layer_or_model, "")
    if top is not layer_or_model:
        return top
    return _replace(copy.deepcopy(layer_or_model), convert)


def to_classical(layer_or_model: nn.Module) -> nn.Module:
    """Map BM layers (a layer, or every one inside a model) back to classical layers."""

    def convert(module, name):
        return _to_classical_layer(module) if isinstance(module, _BMNeuron) else module

    top = convert(layer_or_model, "")
    if top is not layer_or_model:
        return top
    return _replace(copy.deepcopy(layer_or_model), convert)
