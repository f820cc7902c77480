"""The Verilog plan of a classical MAC layer (the MAC twin, docs/verilog.md): the parameters of
``bmhw_mac_layer`` and its two ROMs (weights, bias). The cost model reads the same plan."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.verilog.common import (check_logits_last, finish_plan, layer_geometry, logits_signed, mem_text,
                                          padded, raise_failed, requantize_params, signed_width, weight_words)

MODULE = "bmhw_mac_layer"
OVERHEAD = 8  # cycles around the loop (docs/verilog.md): no 4-cycle exp pipeline, one bias cycle instead
OWN_LIBRARY = ()  # its blocks go into every project
check_network, signed_output = check_logits_last, logits_signed  # the last layer gives the signed logits


def cycle_overhead(layer: dict, pe: int) -> int:
    """The layer's fixed cycles around its loop (docs/verilog.md, "Cycle model")."""
    return OVERHEAD


def plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """Parameters of one ``bmhw_mac_layer`` (the MAC twin) and the contents of its two ROMs."""
    ranges, widths = layer["ranges"], layer["widths"]
    params = layer_geometry(layer, pe)
    folds = -(-params["O"] // pe)
    w, bias = (net.table(layer, t) for t in ir.MAC_TABLES)
    wt_w, b_w = signed_width(*ranges["W"]), signed_width(*ranges["B"])
    # The PE forms the (Q_W + 1) x WT_W-bit signed product; with a small fan-in the sums may need fewer bits.
    acc_w = max(signed_width(*ranges["ACC"]), int(widths["q_in"]) + 1 + wt_w)
    # Y = ACC + B is computed at the widest of the three (Y's own range may be narrower than ACC's).
    y_w = max(signed_width(*ranges["Y"]), acc_w, b_w)
    checks = []
    params.update({"Q_W": int(widths["q_in"]), "WT_W": wt_w, "ACC_W": acc_w, "B_W": b_w, "Y_W": y_w,
                   "RELU": int(bool(layer["relu"]))})
    params.update(requantize_params(layer, y_w, int(layer["out_scale_exp"]) - int(layer["acc_scale_exp"]), checks))
    raise_failed(layer, checks)
    mems = {f"mem/{name}_w.mem": mem_text(weight_words(w, pe, wt_w), pe * wt_w),
            f"mem/{name}_b.mem": mem_text(padded(bias, folds * pe), b_w)}
    return finish_plan(params, mems, name, params["OUT_H"] * params["OUT_W"])
