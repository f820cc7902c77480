"""A feed-forward CNN of the user's design: any stack of convolutions (any kernel, stride, zero padding), linear
layers, ReLU, max pooling and one flatten, with any neuron per weight layer (docs/models.md, "Your own network").

Described by a list of layer entries, kept in the checkpoint config as ``args["stack"]``::

    [{"op": "conv", "out": 8, "kernel": 3, "stride": 1, "padding": 1}, {"op": "relu"}, {"op": "maxpool", "kernel": 2},
     {"op": "flatten"}, {"op": "linear", "out": 10}]

or by the same as text (``bmhw train --model cnn --layers``): ``conv8k3p1 relu pool2 flatten fc10``, where
``conv<out>k<kernel>[s<stride>][p<padding>]``, ``fc<out>``, ``relu``, ``pool<kernel>`` (stride = kernel) and
``flatten`` are separated by spaces or commas. Weight layers are named ``conv1, conv2, ..., fc1, fc2, ...`` in
order; every one but the last is followed by a ReLU (the hidden activations the hardware codes as unsigned
integers), the last gives the logits. A stage is a weight layer and the ReLU, pooling and flatten after it, as
in the LeNet, so every training method that walks the LeNet's stages walks this network too.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from bmhw.errors import BmhwError
from bmhw.models.layers import SpecMixin, StagedMixin, conv, linear

# Bounds of one entry, generous for a network an FPGA holds (bmhw.models.bounds bounds the whole).
MAX_ENTRIES = 64
MAX_OUT = 4096
MAX_KERNEL = 15
MAX_STRIDE = 4
_TOKEN = re.compile(r"^(?:conv(?P<c>\d+)k(?P<k>\d+)(?:s(?P<s>\d+))?(?:p(?P<p>\d+))?|fc(?P<f>\d+)|pool(?P<pool>\d+)"
                    r"|(?P<word>relu|flatten))$")
TEXT_HELP = "conv<out>k<kernel>[s<stride>][p<padding>], fc<out>, relu, pool<kernel>, flatten"


def parse_layers(text: str) -> list[dict]:
    """The stack of a text description, e.g. ``"conv8k3p1 relu pool2 flatten fc10"``."""
    stack = []
    for token in (t for t in re.split(r"[\s,]+", str(text).strip().lower()) if t):
        m = _TOKEN.match(token)
        if m is None:
            raise BmhwError(f"--layers: {token!r} is not a layer; write {TEXT_HELP}, e.g. 'conv8k3p1 relu pool2 "
                            "flatten fc10'")
        if m["c"]:
            stack.append({"op": "conv", "out": int(m["c"]), "kernel": int(m["k"]), "stride": int(m["s"] or 1),
                          "padding": int(m["p"] or 0)})
        elif m["f"]:
            stack.append({"op": "linear", "out": int(m["f"])})
        elif m["pool"]:
            stack.append({"op": "maxpool", "kernel": int(m["pool"])})
        else:
            stack.append({"op": m["word"]})
    return stack


def stack_text(stack: list) -> str:
    """The text form of a stack (what :func:`parse_layers` reads back)."""
    words = []
    for e in stack:
        if e["op"] == "conv":
            words.append(f"conv{e['out']}k{e['kernel']}" + (f"s{e['stride']}" if e.get("stride", 1) != 1 else "")
                         + (f"p{e['padding']}" if e.get("padding", 0) else ""))
        else:
            words.append({"linear": f"fc{e.get('out')}", "maxpool": f"pool{e.get('kernel')}"}.get(e["op"], e["op"]))
    return " ".join(words)


def _int(entry: dict, key: str, lo: int, hi: int, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BmhwError(f"{where}: {key} is {value!r}, expected an integer in [{lo}, {hi}]")
    return value


def check_stack(stack, in_channels: int, input_size: int) -> list[tuple]:
    """Validate ``stack`` for ``in_channels`` x ``input_size`` x ``input_size`` images: returns the shape after
    each entry. One line names the entry and what is wrong."""
    if not isinstance(stack, (list, tuple)) or not 1 <= len(stack) <= MAX_ENTRIES:
        raise BmhwError(f"the network description is not a list of 1 to {MAX_ENTRIES} layers")
    if not all(isinstance(entry, dict) for entry in stack):
        raise BmhwError("the network description has an entry that is not a layer (a mapping with 'op')")
    shape, shapes = (in_channels, input_size, input_size), []
    weights = [i for i, e in enumerate(stack) if e.get("op") in ("conv", "linear")]
    if not weights:
        raise BmhwError("the network has no convolution or linear layer")
    for i, entry in enumerate(stack):
        op = entry.get("op")
        where = f"layer {i + 1} ({op})"
        if op == "conv":
            if len(shape) != 3:
                raise BmhwError(f"{where}: a convolution after flatten; convolutions come before it")
            out, k = _int(entry, "out", 1, MAX_OUT, where), _int(entry, "kernel", 1, MAX_KERNEL, where)
            s, p = _int(entry, "stride", 1, MAX_STRIDE, where), _int(entry, "padding", 0, k - 1, where)
            side = [(v + 2 * p - k) // s + 1 for v in shape[1:]]
            if min(side) < 1:
                raise BmhwError(f"{where}: a {k}x{k} kernel does not fit the {shape[1]}x{shape[2]} input")
            shape = (out, *side)
        elif op == "linear":
            if len(shape) != 1:
                raise BmhwError(f"{where}: a linear layer reads a flat vector: put flatten before it")
            shape = (_int(entry, "out", 1, MAX_OUT, where),)
        elif op == "maxpool":
            k = _int(entry, "kernel", 2, MAX_KERNEL, where)
            if len(shape) != 3 or min(shape[1:]) < k:
                raise BmhwError(f"{where}: pooling by {k} needs a feature map of at least {k}x{k}")
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif op == "flatten":
            if len(shape) != 3:
                raise BmhwError(f"{where}: the input is flat already; one flatten is enough")
            shape = (shape[0] * shape[1] * shape[2],)
        elif op != "relu":
            raise BmhwError(f"{where}: unknown layer; the network is made of conv, linear, relu, maxpool, flatten")
        if op in ("conv", "linear") and i != weights[-1] and (i + 1 >= len(stack) or stack[i + 1].get("op") != "relu"):
            raise BmhwError(f"{where}: every weight layer but the last is followed by relu (hidden activations "
                            "are non-negative codes in hardware)")
        if op == "relu" and (i == 0 or stack[i - 1].get("op") not in ("conv", "linear") or i - 1 == weights[-1]):
            raise BmhwError(f"{where}: relu follows a hidden weight layer only (the last one gives the logits)")
        shapes.append(shape)
    if weights[-1] != len(stack) - 1 or len(shape) != 1:
        raise BmhwError("the network must end with its logits layer: a linear layer (flatten before it)")
    return shapes


class CNN(SpecMixin, StagedMixin, nn.Module):
    """The feed-forward network of ``stack`` (see the module) for ``in_channels`` x ``input_size`` images."""

    SIZE_LIMITS = {"input_size": (1, 1024)}  # any image a stack fits (bmhw.models.bounds)

    def __init__(self, neuron="classical", reduce="max", alpha=None, learn_alpha=False, layers=None, stack=(),
                 in_channels=1, input_size=28):
        super().__init__()
        stack = [dict(entry) for entry in stack] if isinstance(stack, (list, tuple)) else stack
        shapes = check_stack(stack, in_channels, input_size)
        self.arch_args = {"stack": stack, "in_channels": in_channels, "input_size": input_size}
        counts, names = {"conv": 0, "linear": 0}, []
        for entry in stack:
            if entry["op"] in counts:
                counts[entry["op"]] += 1
                names.append(f"conv{counts['conv']}" if entry["op"] == "conv" else f"fc{counts['linear']}")
        self.WEIGHT_LAYERS = tuple(names)
        specs = self._specs(neuron, reduce, alpha, learn_alpha, layers, self.WEIGHT_LAYERS)
        if any(spec["neuron"] == "bise" for spec in specs.values()):
            raise BmhwError("BiSE layers come in the LeNet only so far (--model lenet --neuron bise)")
        self._ops, weight_names = [], iter(names)
        for entry, in_shape in zip(stack, [(in_channels, input_size, input_size)] + shapes[:-1]):
            if entry["op"] not in counts:
                self._ops.append((entry["op"], entry.get("kernel")))
                continue
            name = next(weight_names)
            if entry["op"] == "conv":
                layer = conv(specs[name], in_shape[0], entry["out"], entry["kernel"], entry.get("stride", 1),
                             entry.get("padding", 0))
            else:
                layer = linear(specs[name], in_shape[0], entry["out"])
            setattr(self, name, layer)
            self._ops.append((name, None))
        # Weight layer name -> the ops of its stage (itself, then what follows up to the next weight layer); the
        # ops before the first weight layer form its input.
        self._prefix, self._stage_ops, current = [], {}, None
        for op, k in self._ops:
            if op in self.WEIGHT_LAYERS:
                current = self._stage_ops.setdefault(op, [])
            (current if current is not None else self._prefix).append((op, k))

    @property
    def num_classes(self) -> int:
        return int(self.arch_args["stack"][-1]["out"])

    def sequence(self) -> list[nn.Module]:
        """The network as a flat list of modules in execution order (what the quantizers walk)."""
        out = []
        for op, k in self._ops:
            out.append({"relu": nn.ReLU, "flatten": nn.Flatten}[op]() if op in ("relu", "flatten")
                       else nn.MaxPool2d(k) if op == "maxpool" else self.get_submodule(op))
        return out

    def layer_names(self) -> list[str]:
        """A name per entry of :meth:`sequence`: the weight layers' own, relu1, pool1, flatten for the others."""
        counts, names = {}, []
        for op, _ in self._ops:
            if op in self.WEIGHT_LAYERS:
                names.append(op)
            else:
                counts[op] = counts.get(op, 0) + 1
                names.append(op if op == "flatten" else f"{op.replace('maxpool', 'pool')}{counts[op]}")
        return names

    def _apply(self, op: str, k, h: torch.Tensor) -> torch.Tensor:
        if op == "relu":
            return F.relu(h)
        if op == "maxpool":
            return F.max_pool2d(h, k)
        if op == "flatten":
            return h.flatten(1)
        return self.get_submodule(op)(h)

    def layer_input(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """What weight layer ``name`` receives, given the previous stage's output (or the image, for the first)."""
        if name == self.WEIGHT_LAYERS[0]:
            for op, k in self._prefix:
                h = self._apply(op, k, h)
        return h

    def stage(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """One weight layer and the operations that follow it up to the next weight layer."""
        for op, k in self._stage_ops[name]:
            h = self._apply(op, k, self.layer_input(name, h) if op == name else h)
        return h


def cnn(description, neuron="classical", in_channels=1, input_size=28, **kwargs) -> CNN:
    """A CNN from a text description or a stack (see the module)."""
    stack = parse_layers(description) if isinstance(description, str) else description
    return CNN(neuron=neuron, stack=stack, in_channels=in_channels, input_size=input_size, **kwargs)
