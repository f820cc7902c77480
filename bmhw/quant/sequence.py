"""A float network as the flat sequence of modules the quantizers and the calibration walk, and the names its
layers get in the IR."""

from __future__ import annotations

import copy

from torch import nn

from bmhw.errors import BmhwError
from bmhw.models import CNN, LeNet
from bmhw.nn.adder import _AdderNeuron
from bmhw.nn.layers import _BMNeuron

# The modules that become weighted IR layers (BM, AdderNet, classical convolutions and linear layers).
WEIGHT_MODULES = (_BMNeuron, _AdderNeuron, nn.Linear, nn.Conv2d)


def float64_copy(mod: nn.Module) -> nn.Module:
    """A float64 copy of ``mod``: calibration and tables are computed in float64, the model passed in keeps its
    dtype."""
    return copy.deepcopy(mod).double()


def layer_sequence(model: nn.Module) -> list[nn.Module]:
    """The model as a flat list of modules in execution order."""
    if isinstance(model, LeNet):
        pool = nn.MaxPool2d(2)
        return [model.conv1, nn.ReLU(), pool, model.conv2, nn.ReLU(), pool, nn.Flatten(),
                model.fc1, nn.ReLU(), model.fc2, nn.ReLU(), model.fc3]
    if isinstance(model, nn.Sequential):
        return list(model)
    if isinstance(model, CNN):
        return model.sequence()
    raise BmhwError(f"cannot quantize a {type(model).__name__}: this version quantizes the LeNet and nn.Sequential "
                    "networks of 1.5-branch BM layers (see docs/datapath.md, 'Limits')")


def layer_names(model: nn.Module, mods: list[nn.Module]) -> list[str]:
    """Weight layers keep their model names; pooling and flatten get pool1, pool2, ..., flatten."""
    weights = WEIGHT_MODULES
    by_id = {id(m): n for n, m in model.named_modules() if isinstance(m, weights)}
    names, pools = [], 0
    for i, mod in enumerate(mods):
        if isinstance(mod, weights):
            names.append(by_id.get(id(mod), f"layer{i}"))
        elif isinstance(mod, nn.MaxPool2d):
            pools += 1
            names.append(f"pool{pools}")
        elif isinstance(mod, nn.Flatten):
            names.append("flatten")
        else:
            names.append(f"{type(mod).__name__.lower()}{i}")
    return names


def check_layer_options(model: nn.Module, option: str, values) -> None:
    """Per-layer option values (``{layer name: value}``; anything else passes) name weight layers of ``model``: else one
    line naming the first unknown one and the layers there are."""
    if not isinstance(values, dict):
        return
    mods = layer_sequence(model)
    names = [n for n, m in zip(layer_names(model, mods), mods) if isinstance(m, WEIGHT_MODULES)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BmhwError(f"--{option} {unknown[0]}=...: no weight layer {unknown[0]!r}; this network has "
                        f"{', '.join(names)}")
