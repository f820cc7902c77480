"""Reference networks and the config that rebuilds them from a checkpoint.

A model's config is ``{"arch": name, "args": {...}, "layers": {layer name: neuron spec}}``:
:func:`describe` reads it off a live model (so a partly converted network is described exactly) and
:func:`build` makes a fresh model of the same shapes and neurons.
"""

from __future__ import annotations

from torch import nn

from bmhw.errors import BmhwError
from bmhw.models.bounds import check_args
from bmhw.models.layers import NEURONS, make_spec, spec_of
from bmhw.models.lenet import LeNet, lenet
from bmhw.models.resnet import ResNet22, resnet22

ARCHS = {"lenet": LeNet, "resnet22": ResNet22}
# The dataset each reference network is made for.
DATASETS = {"lenet": "mnist", "resnet22": "cifar10"}


def arch_name(model: nn.Module) -> str:
    for name, cls in ARCHS.items():
        if isinstance(model, cls):
            return name
    raise BmhwError(f"{type(model).__name__} is not a bmhw reference model ({', '.join(ARCHS)})")


def describe(model: nn.Module) -> dict:
    """The config of a reference model, with the neuron spec of each weight layer as it is now."""
    layers = {name: spec_of(layer) for name, layer in model.weight_layers().items()}
    return {"arch": arch_name(model), "args": dict(model.arch_args), "layers": layers}


def build(config: dict) -> nn.Module:
    """A fresh model from a config made by :func:`describe` (weights initialised, not loaded); sizes out of
    bounds (:mod:`bmhw.models.bounds`) are refused before anything is allocated."""
    try:
        cls = ARCHS[config["arch"]]
        check_args(config["arch"], config.get("args", {}), cls)
        return cls(layers=config.get("layers"), **config.get("args", {}))
    except KeyError as err:
        raise BmhwError(f"model config names an unknown architecture or lacks {err}; known: {', '.join(ARCHS)}")
    except (TypeError, ValueError) as err:
        raise BmhwError(f"model config does not describe a valid {config.get('arch')}: {err}")


def create(arch: str, neuron="classical", reduce="max", alpha=None, learn_alpha=False, **args) -> nn.Module:
    """A new reference model by name, e.g. ``create("lenet", "bm15")``."""
    if arch not in ARCHS:
        raise BmhwError(f"unknown model {arch!r}: choose one of {', '.join(ARCHS)}")
    check_args(arch, args, ARCHS[arch])
    return ARCHS[arch](neuron=neuron, reduce=reduce, alpha=alpha, learn_alpha=learn_alpha, **args)


__all__ = ["ARCHS", "DATASETS", "NEURONS", "LeNet", "ResNet22", "build", "create", "describe", "lenet",
           "make_spec", "resnet22"]
