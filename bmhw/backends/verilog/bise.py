"""The Verilog plan of a binarised BiSE layer (docs/verilog.md): the parameters of ``bmhw_bise_layer`` and its
ROMs (the SE / NEG bits, a hidden layer's thresholds); the network's ``binarize`` op folds into the first
layer. The cost model reads the same plan."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.backends.verilog.common import (INPUT_BITS, finish_plan, layer_geometry, mem_text, padded, raise_failed,
                                          weight_words)
from bmhw.errors import BmhwError
from bmhw.ir.intmath import width

MODULE = "bmhw_bise_layer"
OVERHEAD = 8  # cycles around the loop (docs/verilog.md): the MAC's, a threshold compare for the bias
OWN_LIBRARY = ("bmhw_bise_array.v", "bmhw_bise_layer.v", "bmhw_bise_pe.v")


def cycle_overhead(layer: dict, pe: int) -> int:
    """The layer's fixed cycles around its loop (docs/verilog.md, "Cycle model")."""
    return OVERHEAD


def signed_output(layer: dict) -> bool:
    """The class scores are read by the arg-max as signed numbers; hidden layers output bits."""
    return bool(layer["scores"])


def plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """Parameters of one ``bmhw_bise_layer`` and the contents of its ROMs: the table bits (``w``: SE and NEG,
    two bits per PE) and, for a hidden layer, the per-output threshold (``t``: 1 for a dilation, |S_o| for an
    erosion). ``threshold``: the network's ``binarize`` threshold when the layer reads the image codes."""
    params = layer_geometry(layer, pe)
    folds = -(-params["O"] // pe)
    se, op, neg = (net.table(layer, t).astype(np.int64) for t in ir.BISE_TABLES)
    c_lo, c_hi = (int(v) for v in layer["ranges"]["C"])
    acc_w = width(0, max(c_hi, 1))
    scores = bool(layer["scores"])
    sizes = se.sum(axis=1)
    checks = [(c_lo >= 0 and int(sizes.max()) <= c_hi, f"C's range {layer['ranges']['C']} does not hold |S_o| <= "
                                                       f"{int(sizes.max())}"),
              (threshold is None or 0 <= int(threshold) <= (1 << INPUT_BITS),
               f"the binarisation threshold {threshold} is not in [0, {1 << INPUT_BITS}]")]
    raise_failed(layer, checks)
    # The scores are read by the arg-max as signed numbers: one zero bit on top of C.
    out_d = acc_w + 1 if scores else 1
    params.update({"Q_W": INPUT_BITS if threshold is not None else 1, "BINARIZE": int(threshold is not None),
                   "THRESH": int(threshold) if threshold is not None else 0, "ACC_W": acc_w, "SCORES": int(scores),
                   "OUT_D": out_d})
    mems = {f"mem/{name}_w.mem": mem_text(weight_words(se * 2 + neg * se, pe, 2), pe * 2)}
    if not scores:
        thresholds = np.where(op == 1, sizes, 1)
        mems[f"mem/{name}_t.mem"] = mem_text(padded(thresholds, folds * pe), acc_w)
    return finish_plan(params, mems, name, params["OUT_H"] * params["OUT_W"])


def bise_input_threshold(net: ir.QuantizedNet, layer: dict) -> int | None:
    """The ``binarize`` threshold folded into ``layer`` (the layer right after it), else None."""
    index = next(i for i, entry in enumerate(net.layers) if entry is layer)
    if index > 0 and net.layers[index - 1]["op"] == "binarize":
        return int(net.layers[index - 1]["threshold"])
    return None


def input_threshold(net: ir.QuantizedNet, layer: dict) -> int | None:
    """The ``binarize`` threshold folded into ``layer`` (the layer right after it), else None."""
    index = next(i for i, entry in enumerate(net.layers) if entry is layer)
    if index > 0 and net.layers[index - 1]["op"] == "binarize":
        return int(net.layers[index - 1]["threshold"])
    return None


def check_network(net: ir.QuantizedNet) -> None:
    """One binarize op first, folded into the BiSE layer it feeds; the scores layer last."""
    if net.layers[0]["op"] != "binarize" or any(layer["op"] == "binarize" for layer in net.layers[1:]):
        raise BmhwError("a BiSE network must start with its one binarize op; re-create the .bmq with bmhw quantize")
    if net.layers[1]["op"] not in ir.BISE_OPS:
        raise BmhwError(f"layer {net.layers[1]['name']}: the binarize op must feed a BiSE layer directly (the "
                        "Verilog backend folds it into that layer's input)")
    last = net.layers[-1]
    if last["op"] not in ir.BISE_OPS or not last["scores"]:
        raise BmhwError("the last layer must be the BiSE scores layer; re-create the .bmq with bmhw quantize")
