"""Weight-layer factory shared by the reference models: one neuron spec in, the right layer out.

A neuron spec is a small dict, the same one that checkpoints store per layer:
``{"neuron": "classical" | "bm4" | "bm15" | "adder", "reduce": "max" | "lse" | "smorph" | "lmorph",
"alpha": float (approximations only), "learn_alpha": bool, "maxima": "N" | "Ns" | "K" | "Ks" (BM, several maxima
per neuron, bmhw.nn.groups; absent: one)}``; an adder layer (AdderNet, bmhw.nn.adder) has
no reduction and carries a batch normalisation unless its spec says ``"bn": False``; a BiSE layer
(``"bise"``, bmhw.nn.bise) has neither and always its bias.
"""

from __future__ import annotations

from torch import nn

from bmhw.errors import BmhwError
from bmhw.nn import REDUCTIONS, AdderConv2d, AdderLinear, BMConv2d, BMLinear
from bmhw.nn.adder import _AdderNeuron
from bmhw.nn.bise import BiSE, BiSELinear, _BiSENeuron
from bmhw.nn.groups import Maxima
from bmhw.nn.layers import _BMNeuron

NEURONS = ("classical", "bm4", "bm15", "adder", "bise")


def make_spec(neuron="classical", reduce="max", alpha=None, learn_alpha=False, bias=None, bn=None,
              maxima=None) -> dict:
    """Validate and normalise a neuron spec; ``bias`` (optional) overrides the model's choice; ``bn`` (adder
    only): False for an adder layer without its batch normalisation; ``maxima`` (BM only): maxima per neuron."""
    if bias is not None:
        return {**make_spec(neuron, reduce, alpha, learn_alpha, bn=bn, maxima=maxima), "bias": bool(bias)}
    if maxima is not None:
        spec = make_spec(neuron, reduce, alpha, learn_alpha, bn=bn)
        parsed = Maxima.parse(maxima)
        if parsed.is_default:
            return spec
        if neuron not in ("bm15", "bm4"):
            raise BmhwError(f"several maxima per neuron apply to BM neurons (bm15, bm4), not to {neuron!r}")
        if neuron == "bm4" and parsed.split_sign:
            raise BmhwError("a sign split ('s') applies to bm15 layers: bm4 splits by sign already")
        return {**spec, "maxima": str(parsed)}
    if neuron not in NEURONS:
        raise BmhwError(f"unknown neuron {neuron!r}: choose one of {', '.join(NEURONS)}")
    if bn is not None and neuron != "adder":
        raise BmhwError("bn (a batch normalisation inside the layer) applies to adder neurons only")
    if neuron == "adder":
        if reduce != "max" or alpha is not None or learn_alpha:
            raise BmhwError("--reduce / --alpha / learn_alpha apply to BM neurons, not to adder neurons")
        return {"neuron": "adder"} if bn is None or bn else {"neuron": "adder", "bn": False}
    if neuron in ("classical", "bise"):
        if neuron == "bise" and (reduce != "max" or alpha is not None or learn_alpha):
            raise BmhwError("--reduce / --alpha / learn_alpha apply to BM neurons, not to BiSE neurons")
        return {"neuron": neuron}
    if reduce not in REDUCTIONS:
        raise BmhwError(f"unknown reduction {reduce!r}: choose one of {', '.join(REDUCTIONS)}")
    spec = {"neuron": neuron, "reduce": reduce}
    if reduce != "max":
        spec["alpha"] = 1.0 if alpha is None else float(alpha)
        spec["learn_alpha"] = bool(learn_alpha)
    elif alpha is not None or learn_alpha:
        raise BmhwError("--alpha / learn_alpha apply to lse, smorph and lmorph, not to the hard max")
    return spec


def spec_of(layer: nn.Module) -> dict:
    """The neuron spec of an existing weight layer, with ``"bias"`` (a re-fit may add one)."""
    spec = layer.neuron_spec() if isinstance(layer, (_BMNeuron, _AdderNeuron, _BiSENeuron)) else {"neuron": "classical"}
    return {**spec, "bias": layer.bias is not None}


def _bm_args(spec: dict) -> dict:
    args = {"branches": 1.5 if spec["neuron"] == "bm15" else 4, "reduce": spec.get("reduce", "max")}
    if args["reduce"] != "max":
        args["alpha"] = spec.get("alpha", 1.0)
        args["learn_alpha"] = spec.get("learn_alpha", False)
    if "maxima" in spec:
        args["maxima"] = Maxima.parse(spec["maxima"])
    return args


def linear(spec: dict, in_features: int, out_features: int, bias: bool = True) -> nn.Module:
    if spec["neuron"] == "adder":  # no bias by default: the batch normalisation's offset is one
        return AdderLinear(in_features, out_features, bias=spec.get("bias", False), bn=spec.get("bn", True))
    if spec["neuron"] == "bise":
        return BiSELinear(in_features, out_features)
    bias = spec.get("bias", bias)
    if spec["neuron"] == "classical":
        return nn.Linear(in_features, out_features, bias=bias)
    return BMLinear(in_features, out_features, bias=bias, **_bm_args(spec))


def conv(spec: dict, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
         bias: bool = True) -> nn.Module:
    if spec["neuron"] == "adder":
        return AdderConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=spec.get("bias", False),
                           bn=spec.get("bn", True))
    if spec["neuron"] == "bise":
        return BiSE(in_channels, out_channels, kernel_size, stride, padding)
    bias = spec.get("bias", bias)
    if spec["neuron"] == "classical":
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
    return BMConv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **_bm_args(spec))


class SpecMixin:
    """Per-layer neuron specs for a model: a default for all weight layers, overridden by name."""

    def _specs(self, neuron, reduce, alpha, learn_alpha, layers, names):
        default = make_spec(neuron, reduce, alpha, learn_alpha)
        layers = dict(layers or {})
        unknown = sorted(set(layers) - set(names))
        if unknown:
            raise BmhwError(f"unknown layer name(s) {', '.join(unknown)}: this model has {', '.join(names)}")
        return {name: make_spec(**layers[name]) if name in layers else default for name in names}

    def weight_layers(self) -> dict[str, nn.Module]:
        """The model's weight layers (convolutions and linear layers) by dotted name, in order."""
        return {name: self.get_submodule(name) for name in self.WEIGHT_LAYERS}


class StagedMixin:
    """A network run as stages (``WEIGHT_LAYERS``, ``stage(name, h)``): what layer-wise training walks."""

    def forward_range(self, h, start: int = 0, stop: int | None = None, features=None):
        """Run stages ``start`` .. ``stop - 1``; store each stage's output in ``features`` if given."""
        for name in self.WEIGHT_LAYERS[start:stop]:
            h = self.stage(name, h)
            if features is not None:
                features[name] = h
        return h

    def forward(self, x):
        return self.forward_range(x)
