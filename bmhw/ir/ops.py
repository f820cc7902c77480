"""The operations of the IR, one spec each, and the neuron families they belong to: the one vocabulary.

A family is named by its key, the prefix of its ops in the ``.bmq`` file (``bm``, ``mac``, ``adder``,
``bise``); its spec says how people and the other stages call it: the title printed in tables, the
``--neuron`` names of the float networks that quantize to it, the gate-model kind that costs it. Every
stage looks a layer's family up here (``OPS[layer["op"]].family``) and dispatches through a table keyed by
family or op, never by an if/elif chain over op names. Adding a family: a ``Family`` and its ``OpSpec``
entries here, then one module per stage (docs/architecture.md, "Adding a neuron family"). NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from bmhw.errors import BmhwError


@dataclass(frozen=True)
class Family:
    """A neuron family: ``key`` (the op prefix in .bmq files), ``title`` (for people), ``neurons`` (the
    ``--neuron`` names of float networks quantized to it), ``cost_kind`` (its row in the gate model, docs/gates.md),
    ``pe_sum`` (the signal its PEs accumulate, a key of a layer's widths), ``tables`` every weight layer carries,
    ``shapes(layer)`` (table -> (shape, required) of every table a layer may carry), ``check`` of a layer's table
    values, once their shapes are right (raises)."""

    key: str
    title: str
    neurons: tuple
    cost_kind: str
    pe_sum: str
    tables: tuple
    shapes: Callable
    check: Callable | None = None


@dataclass(frozen=True)
class OpSpec:
    """One IR operation: its ``family`` (None: a shape op every family uses), whether it is a ``conv``olution
    (patches of a C x H x W input) and whether it is ``weighted`` (tables, a neuron per output, PEs)."""

    name: str
    family: str | None
    conv: bool = False
    weighted: bool = False

    @property
    def tables(self) -> tuple:
        return FAMILIES[self.family].tables if self.weighted else ()


def _bad_table(path, layer: dict, what: str) -> BmhwError:
    return BmhwError(f"{path}: layer {layer['name']!r} {what}; re-create it with bmhw quantize")


def _bm_shapes(layer: dict) -> dict:
    """A layer with mirrored outputs also carries ``sign``: required where the layer declares ``mirrored``,
    absent where it declares none, optional in files written before that key existed."""
    o, k = int(layer["out_count"]), int(layer["fan_in"])
    shapes = {"ln_lut": ((int(layer["in_max"]) + 1,), True), "log_weights": ((o, k), True),
              "exp_lut": ((1 << int(layer["F"]),), True), "bias": ((o,), True)}
    if layer.get("mirrored") is not False:
        shapes["sign"] = ((o,), layer.get("mirrored") is True)
    if layer.get("split_sign") is True:  # several maxima split by the weights' signs: a sign per weight
        shapes["weight_sign"] = ((o, k), True)
    return shapes


def _weights_shapes(*per_output: str) -> Callable:
    """A family whose tables are ``weights`` O x K and ``per_output`` tables of O entries each."""
    def shapes(layer: dict) -> dict:
        o, k = int(layer["out_count"]), int(layer["fan_in"])
        return {"weights": ((o, k), True), **{name: ((o,), True) for name in per_output}}
    return shapes


def _bise_shapes(layer: dict) -> dict:
    o, k = int(layer["out_count"]), int(layer["fan_in"])
    return {"se": ((o, k), True), "op": ((o,), True), "neg": ((o, k), True)}


def check_bm(net, layer: dict, path="the network") -> None:
    """A BM layer's optional ``sign`` table holds +1 or -1 per output (absent: every output +1), a sign-split layer's
    ``weight_sign`` +1 or -1 per weight, its exp table no negative entry (what the range proofs assume)."""
    signs = net.signs(layer)
    if signs is not None and not np.isin(signs, (-1, 1)).all():
        raise BmhwError(f"{path} is not a valid .bmq file (layer {layer['name']!r} has a sign table that is not one "
                        "+1 or -1 per output); re-create it with bmhw quantize")
    if layer.get("split_sign") and not np.isin(net.table(layer, "weight_sign"), (-1, 1)).all():
        raise BmhwError(f"{path} is not a valid .bmq file (layer {layer['name']!r} has a weight_sign table that is not "
                        "one +1 or -1 per weight); re-create it with bmhw quantize")
    if int(net.table(layer, "exp_lut").min()) < 0:
        raise BmhwError(f"{path} is not a valid .bmq file (layer {layer['name']!r} has a negative entry in its exp "
                        "table); re-create it with bmhw quantize")


def check_bise(net, layer: dict, path="the network") -> None:
    """A BiSE layer's tables: ``se`` O x K of 0/1 with at least one 1 per row, ``op`` O of 0/1, ``neg`` O x K
    of 0/1 (1: the input enters complemented)."""
    se, op = net.table(layer, "se"), net.table(layer, "op")
    o, k = int(layer["out_count"]), int(layer["fan_in"])
    if not np.isin(se, (0, 1)).all() or not (se.sum(axis=1) > 0).all():
        raise _bad_table(path, layer, f"needs an 'se' table of {o} x {k} zeros and ones with a one in every row")
    if not np.isin(op, (0, 1)).all():
        raise _bad_table(path, layer, f"needs an 'op' table of {o} entries, 0 (dilation) or 1 (erosion)")
    if not np.isin(net.table(layer, "neg"), (0, 1)).all():
        raise _bad_table(path, layer, f"needs a 'neg' table of {o} x {k} zeros and ones (1: the input enters "
                                      "complemented)")


FAMILIES = {family.key: family for family in (
    # docs/datapath.md, "The BM layer"; a layer with mirrored outputs also carries "sign" (+1 / -1 per output).
    Family("bm", "BM 1.5-branch", ("bm15",), "bm15", "T", ("ln_lut", "log_weights", "exp_lut", "bias"), _bm_shapes,
           check_bm),
    # The classical integer layers of the MAC twin (docs/datapath.md, "The classical MAC layer").
    Family("mac", "classical MAC", ("classical",), "mac", "ACC", ("weights", "bias"), _weights_shapes("bias")),
    # sum_k |q_k - W[o, k]|, one multiplication per output (docs/datapath.md, "The adder layer").
    Family("adder", "AdderNet", ("adder",), "addernet", "ACC", ("weights", "scale", "bias"),
           _weights_shapes("scale", "bias")),
    # Binary dilations (OR) / erosions (AND) of binarised inputs (docs/datapath.md, "The BiSE layer").
    Family("bise", "BiSE", ("bise",), "bise", "C", ("se", "op", "neg"), _bise_shapes, check_bise),
)}

OPS = {spec.name: spec for spec in (
    *(OpSpec(f"{key}_{kind}", key, conv=kind == "conv2d", weighted=True)
      for key in ("bm", "mac", "adder", "bise") for kind in ("conv2d", "linear")),
    OpSpec("binarize", "bise"),  # image codes -> bits, the first op of a BiSE network
    OpSpec("maxpool2d", None),
    OpSpec("flatten", None),
)}


def ops_of(family: str) -> tuple:
    """The weighted ops of a family, convolution first (as the .bmq op tuples have always been ordered)."""
    return tuple(name for name, spec in OPS.items() if spec.family == family and spec.weighted)


def spec_of(layer: dict, path="the network") -> OpSpec:
    """The spec of a layer's op; an unknown op is a one-line error."""
    spec = OPS.get(layer.get("op"))
    if spec is None:
        raise BmhwError(f"{path} is not a valid .bmq file (unknown operation {layer.get('op')!r} in layer "
                        f"{layer.get('name')!r}); re-create it with bmhw quantize")
    return spec


def family_of(layers) -> str | None:
    """The family key of a network's weighted layers (None when it has none)."""
    return next((OPS[layer["op"]].family for layer in layers if layer["op"] in OPS and OPS[layer["op"]].weighted),
                None)


def family_of_neuron(neuron: str) -> Family:
    """The IR family a float network of ``--neuron`` ``neuron`` quantizes to."""
    for family in FAMILIES.values():
        if neuron in family.neurons:
            return family
    raise BmhwError(f"a {neuron} network has no integer form; convert it to bm15 first (bmhw convert --neuron bm15)")


BM_OPS, MAC_OPS, ADDER_OPS, BISE_OPS = (ops_of(key) for key in ("bm", "mac", "adder", "bise"))
WEIGHT_OPS = BM_OPS + MAC_OPS + ADDER_OPS  # the families with integer weights (not BiSE's binary tables)
CONV_OPS = tuple(name for name, spec in OPS.items() if spec.conv)
BM_TABLES, MAC_TABLES, ADDER_TABLES, BISE_TABLES = (FAMILIES[key].tables for key in ("bm", "mac", "adder", "bise"))
