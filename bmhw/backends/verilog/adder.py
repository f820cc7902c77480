"""The Verilog plan of an AdderNet layer (docs/verilog.md): the parameters of ``bmhw_adder_layer`` and its
three ROMs (templates, per-output scale, bias). The cost model reads the same plan."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.verilog.common import (check_logits_last, finish_plan, layer_geometry, logits_signed, mem_text,
                                          padded, raise_failed, requantize_params, signed_width, weight_words)
from bmhw.ir.intmath import width

MODULE = "bmhw_adder_layer"
OVERHEAD = 10  # cycles around the loop (docs/verilog.md): the MAC's, plus the multiplier's registers
OWN_LIBRARY = ()  # its blocks go into every project
check_network, signed_output = check_logits_last, logits_signed  # the last layer gives the signed logits


def cycle_overhead(layer: dict, pe: int) -> int:
    """The layer's fixed cycles around its loop (docs/verilog.md, "Cycle model")."""
    return OVERHEAD


def plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """Parameters of one ``bmhw_adder_layer`` (AdderNet) and the contents of its three ROMs: the templates
    (``w``), the per-output scale ``MUL`` (``m``) and bias (``b``)."""
    ranges = layer["ranges"]
    params = layer_geometry(layer, pe)
    folds = -(-params["O"] // pe)
    w, scale, bias = (net.table(layer, t) for t in ir.ADDER_TABLES)
    q_w = int(layer["widths"]["q_in"])
    wt_w, mul_w, b_w = signed_width(*ranges["W"]), signed_width(*ranges["MUL"]), signed_width(*ranges["B"])
    # D = x - W signed; |D| and the sum unsigned (ACC >= 0), each at its proven range.
    d_w = signed_width(*ranges["D"])
    abs_w = min(width(0, max(int(ranges["ABS"][1]), 0)), d_w)
    acc_w = max(width(0, max(int(ranges["ACC"][1]), 0)), abs_w)
    prod_w = signed_width(*ranges["PROD"])
    # Y = B - PROD is computed at the widest of the three (Y's own range may be narrower).
    y_w = max(signed_width(*ranges["Y"]), prod_w, b_w)
    r = int(layer["R"])
    checks = [(int(ranges["ACC"][0]) >= 0, f"ACC's range {ranges['ACC']} is negative"),
              (r >= 0, f"the requantization shift R={r} is negative")]
    params.update({"Q_W": q_w, "WT_W": wt_w, "D_W": d_w, "ABS_W": abs_w, "ACC_W": acc_w, "MUL_W": mul_w,
                   "PROD_W": prod_w, "B_W": b_w, "Y_W": y_w, "RELU": int(bool(layer["relu"]))})
    params.update(requantize_params(layer, y_w, r, checks))
    raise_failed(layer, checks)
    mems = {f"mem/{name}_w.mem": mem_text(weight_words(w, pe, wt_w), pe * wt_w),
            f"mem/{name}_m.mem": mem_text(padded(scale, folds * pe), mul_w),
            f"mem/{name}_b.mem": mem_text(padded(bias, folds * pe), b_w)}
    return finish_plan(params, mems, name, params["OUT_H"] * params["OUT_W"])
