"""Several maxima per BM neuron: how a layer's fan-in is split into groups (docs/neurons.md, "Several maxima").

A layer with G maxima splits the K inputs of each output (in patch order: channel, then kernel row and
column) into G contiguous groups of nearly equal size; the group ``g`` holds ``k`` with
``b_g <= k < b_(g+1)``, ``b_g = floor(g K / G)``. With G = the number of input channels of a convolution
that is one group per input channel; with G = K every input is a group of its own.

A *sign-split* layer ("Ns") further splits every group by the sign of each output's weights: two maxima per
group, one over the positive and one over the negative weights, so that up to 2G exps per output.

The textual form, used by the CLI and by checkpoints' neuron specs: ``"N"`` (N groups), ``"Ns"`` (N groups,
each split by sign), ``"K"`` / ``"Ks"`` (one group per input, whatever the layer's fan-in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from bmhw.errors import BmhwError
from bmhw.ir.groups import group_starts

_PATTERN = re.compile(r"^(?:(?P<n>\d+)|(?P<all>K))(?P<split>s?)$")


@dataclass(frozen=True)
class Maxima:
    """The number of groups (an int, or "K" for the whole fan-in) and whether each is split by sign."""

    groups: int | str = 1
    split_sign: bool = False

    @classmethod
    def parse(cls, value) -> "Maxima":
        """``Maxima`` from an int, a ``Maxima`` or the textual form ("12", "6s", "K", "Ks")."""
        if isinstance(value, Maxima):
            return value
        if isinstance(value, bool):
            raise BmhwError(f"number of maxima {value!r}: give a positive integer, 'K', or either with 's'")
        if isinstance(value, int):
            if value < 1:
                raise BmhwError(f"number of maxima must be at least 1, got {value}")
            return cls(value, False)
        match = _PATTERN.match(str(value).strip())
        if match is None or (match["n"] is not None and int(match["n"]) < 1):
            raise BmhwError(f"number of maxima {value!r}: give a positive integer N, 'K' (one per input), or either "
                            "followed by 's' to split each group by weight sign (e.g. 6s)")
        groups = "K" if match["all"] else int(match["n"])
        return cls(groups, bool(match["split"]))

    def resolve(self, fan_in: int, where: str = "") -> int:
        """The number of groups for a layer of this fan-in (checked: 1 <= G <= K)."""
        groups = fan_in if self.groups == "K" else self.groups
        if groups > fan_in:
            raise BmhwError(f"{where or 'layer'}: {groups} maxima but only {fan_in} inputs per output "
                            f"(at most {fan_in}, or 'K' for one per input)")
        return groups

    @property
    def is_default(self) -> bool:
        return self.groups == 1 and not self.split_sign

    def __str__(self) -> str:
        return f"{self.groups}{'s' if self.split_sign else ''}"


def group_bounds(fan_in: int, groups: int) -> tuple[int, ...]:
    """Bounds ``(0, b_1, ..., K)`` of ``groups`` contiguous groups of nearly equal size (the IR's split,
    ``bmhw.ir.groups.group_starts``); () for one group (the plain product, whose code path stays exactly as it was)."""
    starts = group_starts(fan_in, groups)
    return () if groups == 1 else starts


def is_bm_layer(module) -> bool:
    """A BM layer (bmhw.nn.layers), told by what it has: this module sits below the layers and imports none."""
    return hasattr(module, "maxima") and hasattr(module, "out_count") and hasattr(module, "branches")


def maxima_per_output(layer) -> "list[int]":
    """How many maxima (one exp each) every output of a BM layer takes: G, or with the sign split the number
    of (group, sign) pairs that hold at least one weight."""
    groups = layer.maxima
    if not getattr(layer, "split_sign", False):
        branches = 4 if getattr(layer, "branches", 1.5) == 4 else 1
        return [groups * branches] * layer.out_count
    sign = layer.sign.detach().reshape(layer.out_count, -1)
    bounds = group_bounds(sign.shape[1], groups) or (0, sign.shape[1])
    counts = torch.zeros(layer.out_count, dtype=torch.long)
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunk = sign[:, a:b]
        counts += (chunk > 0).any(1).long() + (chunk < 0).any(1).long()
    return counts.tolist()


def exps_per_image(model, image) -> dict[str, int]:
    """The exp evaluations of one image through every BM layer of ``model`` (``image``: one input, with its batch
    dimension of 1): output positions x the maxima of each output, by layer name. Each (group, sign) maximum
    costs one exp lookup and one add in hardware; a classical layer's multiply-accumulates are not counted."""
    counts, hooks = {}, []
    for name, layer in model.named_modules():
        if is_bm_layer(layer):
            def hook(mod, inputs, output, name=name):
                positions = output[0].numel() // mod.out_count
                counts[name] = positions * sum(maxima_per_output(mod))
            hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for h in hooks:
            h.remove()
    return counts


def parse_maxima_options(values, layer_names) -> dict:
    """``--maxima`` options (``"N"`` for every layer, ``"LAYER=N"`` for one, which wins over the value for every
    layer) as a mapping {layer name: textual maxima} over ``layer_names``, every value checked; layers left at one
    max are left out."""
    default, per_layer = None, {}
    for text in values:
        name, sep, value = str(text).partition("=")
        if not sep:
            default = Maxima.parse(name)
            continue
        name = name.strip()
        if name not in layer_names:
            raise BmhwError(f"--maxima {text}: no weight layer {name!r}; this network has {', '.join(layer_names)}")
        per_layer[name] = Maxima.parse(value)
    out = {}
    for name in layer_names:
        chosen = per_layer.get(name, default)
        if chosen is not None and not chosen.is_default:
            out[name] = str(chosen)
    return out


def refuse_grouped(model, what: str) -> None:
    """One clear line where a stage that does not carry several maxima per neuron yet meets them."""
    for name, layer in model.named_modules():
        if is_bm_layer(layer) and (layer.maxima != 1 or layer.split_sign):
            raise BmhwError(f"layer {name} has {Maxima(layer.maxima, layer.split_sign)} maxima per neuron: {what} "
                            "takes one max per neuron (standard ONNX has no max-plus operator; the integer graph, "
                            "bmhw export --target onnx-int of its .bmq, carries several maxima)")
