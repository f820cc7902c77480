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
from bmhw.models.cnn import CNN, cnn, parse_layers
from bmhw.models.lenet import LeNet, lenet
from bmhw.models.resnet import ResNet22, resnet22

ARCHS = {"lenet": LeNet, "resnet22": ResNet22, "cnn": CNN}
# The dataset each reference network is made for (a CNN: by its input, see dataset_of).
DATASETS = {"lenet": "mnist", "resnet22": "cifar10"}
# A CNN's dataset by its input (channels, size).
INPUT_DATASETS = {(1, 28): "mnist", (3, 32): "cifar10"}


def dataset_of(model: nn.Module) -> str:
    """The dataset a model is made for: its architecture's, or for a CNN the one of its input size."""
    name = arch_name(model)
    if name in DATASETS:
        return DATASETS[name]
    key = (model.arch_args["in_channels"], model.arch_args["input_size"])
    if key not in INPUT_DATASETS:
        raise BmhwError(f"no dataset of bmhw has {key[0]} x {key[1]} x {key[1]} images (MNIST: 1 x 28 x 28, CIFAR-10: "
                        "3 x 32 x 32)")
    return INPUT_DATASETS[key]


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


__all__ = ["ARCHS", "CNN", "DATASETS", "NEURONS", "LeNet", "ResNet22", "build", "cnn", "create", "dataset_of",
           "describe", "lenet", "make_spec", "parse_layers", "resnet22"]
