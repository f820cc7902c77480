"""Which module of the HLS backend handles a layer: one module per neuron family (by the family key of
``bmhw.ir.ops``), ``shapes`` for the ops without weights. Each module has ``context`` (the layer's template
data) and ``cycles`` (its row of the cycle model); a family module also ``check_last`` (what its last layer
must be). A family the backend has no kernels for is refused here in one line."""

from __future__ import annotations

from types import ModuleType

from bmhw import ir
from bmhw.backends.hls import adder, bise, bm, shapes
from bmhw.errors import BmhwError

FAMILY_MODULES = {"bm": bm, "adder": adder, "bise": bise}


def family_module(net: ir.QuantizedNet) -> ModuleType:
    """The module of the network's family; the MAC twin has no HLS kernels."""
    if net.family == "mac":
        raise BmhwError("this is a classical MAC network (the MAC twin): the HLS backend implements BM layers; "
                        "export it with --target verilog")
    return FAMILY_MODULES.get(net.family, bm)


def layer_module(layer: dict) -> ModuleType:
    spec = ir.OPS.get(layer["op"])
    if spec is not None and not spec.weighted:
        return shapes
    if spec is None or spec.family not in FAMILY_MODULES:
        raise BmhwError(f"layer {layer['name']}: the HLS backend has no kernel for operation {layer['op']!r}")
    return FAMILY_MODULES[spec.family]
