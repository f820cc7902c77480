"""Which module of the Verilog backend plans a weighted layer: one module per neuron family, by the family key
of ``bmhw.ir.ops``. Each has ``plan`` (the block's parameters and ROM files), ``MODULE`` (the hand-written
layer block; a plan may name another, as a grouped BM layer does), ``OVERHEAD`` and ``cycle_overhead(layer, pe)``
(its fixed cycles), ``OWN_LIBRARY`` (blocks only its projects carry) and
``check_network``. The cost model (``bmhw.cost``) reads the same plans."""

from __future__ import annotations

from types import ModuleType

from bmhw import ir
from bmhw.backends.verilog import adder, bise, bm, mac
from bmhw.errors import BmhwError
from bmhw.ir.groups import is_grouped

FAMILY_MODULES = {"bm": bm, "mac": mac, "adder": adder, "bise": bise}


def family_module(layer_or_key) -> ModuleType:
    """The module of a family key or of a weighted layer's op."""
    key = layer_or_key if isinstance(layer_or_key, str) else ir.OPS[layer_or_key["op"]].family
    if key not in FAMILY_MODULES:
        raise BmhwError(f"the Verilog backend has no blocks for the {key!r} family")
    return FAMILY_MODULES[key]


def layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """The plan of a weighted layer's block: ``module``, ``params``, ``mems``, ``out_bits``, ``folds``,
    ``positions``. ``threshold``: a folded ``binarize`` op's (BiSE)."""
    family = family_module(layer)
    return {"module": family.MODULE, **family.plan(net, layer, name, pe, threshold)}


def grouped_network(net: ir.QuantizedNet) -> bool:
    """Whether a layer of the network takes several maxima per output (its project carries the grouped blocks)."""
    return any(is_grouped(layer) for layer in net.layers if ir.OPS.get(layer["op"]) and ir.OPS[layer["op"]].weighted)
