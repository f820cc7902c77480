"""The integer IR of a binarised BiSE LeNet (docs/datapath.md, "The BiSE layer").

From a trained BiSE network: every BiSE layer is projected onto its closest morphological operator
(:func:`bmhw.nn.bise_math.project`) and written as ``bise_conv2d`` / ``bise_linear`` with the tables ``se`` (O x K
of 0/1), ``op`` (O of 0 = dilation / 1 = erosion) and ``neg`` (O x K of 0/1: the input enters complemented,
its weight is negative; 0 outside S); the image bytes are binarised first (``binarize``:
code q -> 1 iff q >= 128, the code form of pixel >= 1/2). No calibration: every tensor is binary, only the
last layer's scores are counts.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from torch import nn

from bmhw import __version__
from bmhw.errors import BmhwError
from bmhw.ir import QuantizedNet
from bmhw.models import LeNet
from bmhw.nn.bise import INPUT_THRESHOLD, BiSE, _BiSENeuron
from bmhw.nn.bise_math import project
from bmhw.ir.intmath import width as width_of
from bmhw.ir.widths import proven_ranges

# The code threshold of the input binarisation: the smallest byte q with q / 255 >= INPUT_THRESHOLD.
INPUT_CODE_THRESHOLD = math.ceil(Fraction(INPUT_THRESHOLD) * 255)


def is_bise(model: nn.Module) -> bool:
    return any(isinstance(m, _BiSENeuron) for m in model.modules())


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def quantize_bise(model: nn.Module, input_shape=None, meta: dict | None = None) -> QuantizedNet:
    """The IR of a BiSE LeNet (all five weight layers BiSE), each layer projected by :func:`project`."""
    if not isinstance(model, LeNet):
        raise BmhwError(f"cannot build the BiSE IR of a {type(model).__name__}: only the BiSE LeNet is supported "
                        "(train one with bmhw train --model lenet --neuron bise)")
    mods = model.weight_layers()
    if not all(isinstance(m, _BiSENeuron) for m in mods.values()):
        raise BmhwError("the BiSE IR needs every weight layer to be BiSE: train with --neuron bise")
    args = model.arch_args
    c, hw = int(args["in_channels"]), int(args["input_size"])
    shape = [c, hw, hw]
    layers = [{"op": "binarize", "name": "binarize", "in_shape": shape, "out_shape": shape,
               "threshold": INPUT_CODE_THRESHOLD}]
    arrays, exact = {}, {}
    names = list(mods)
    pools = 0
    for i, (name, mod) in enumerate(mods.items()):
        if name == "fc1":
            flat = [int(np.prod(shape))]
            layers.append({"op": "flatten", "name": "flatten", "in_shape": shape, "out_shape": flat})
            shape = flat
        op, se, neg = project(mod)
        neg = neg & se  # the polarity of an input outside S does not matter: stored as 0
        o, k = se.shape
        last = i == len(names) - 1
        layer = {"name": name, "fan_in": k, "out_count": o, "scores": last, "in_shape": shape}
        if isinstance(mod, BiSE):
            (kh, kw), (sh, sw), (ph, pw) = mod.kernel_size, mod.stride, mod.padding
            out_shape = [o, _conv_out(shape[1], kh, sh, ph), _conv_out(shape[2], kw, sw, pw)]
            layer.update(op="bise_conv2d", kernel=[kh, kw], stride=[sh, sw], padding=[ph, pw])
        else:
            out_shape = [o]
            layer.update(op="bise_linear")
        ranges = proven_ranges(layer, {"se": se})
        layer.update(out_shape=out_shape, ranges=ranges, widths={s: width_of(*r) for s, r in ranges.items()})
        layers.append(layer)
        arrays[f"{name}/se"] = se.astype(np.int64)
        arrays[f"{name}/op"] = op.astype(np.int64)
        arrays[f"{name}/neg"] = neg.astype(np.int64)
        shape = out_shape
        if name in ("conv1", "conv2"):
            pools += 1
            pooled = [shape[0], shape[1] // 2, shape[2] // 2]
            layers.append({"op": "maxpool2d", "name": f"pool{pools}", "in_shape": shape, "out_shape": pooled,
                           "kernel": 2, "stride": 2})
            shape = pooled
    info = {"bmhw_version": __version__,
            "options": {"neuron": "bise", "projection": "activable distance", "literals": "signed"}, **(meta or {})}
    return QuantizedNet(input_shape=tuple([c, hw, hw]), input_scale=(1, 255), layers=layers, arrays=arrays,
                        meta=info)
