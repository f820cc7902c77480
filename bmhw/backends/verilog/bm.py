"""The Verilog plan of a 1.5-branch BM layer (docs/verilog.md): the parameters of ``bmhw_bm_layer`` (shapes,
PE count, every signal's width from the IR's proven ranges) and its four ROMs (ln, log-weights, exp, bias with
the mirrored-output flag). A layer with several maxima per output becomes a ``bmhw_bm_group_layer`` (``bm_groups``).
The cost model reads the same plan."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.ir.groups import is_grouped
from bmhw.backends.verilog import bm_groups
from bmhw.backends.verilog.common import (check_logits_last, finish_plan, layer_geometry, logits_signed, mem_text,
                                          padded, raise_failed, requantize_params, round_shift_width, signed_width,
                                          weight_words)
from bmhw.ir.intmath import width

MODULE = "bmhw_bm_layer"
OVERHEAD = 11  # cycles around the loop (docs/verilog.md): the exp pipeline and the output stage around the add-max loop
OWN_LIBRARY = ()  # its blocks go into every project
check_network, signed_output = check_logits_last, logits_signed  # the last layer gives the signed logits


def exp_shift_span(params: dict) -> int:
    """How far bmhw_exp_shift's shifter reaches: LMAX - L0, where below L0 = RS - EXP_W every table entry shifts to
    less than half a unit and E is 0 (docs/verilog.md). The cost model reads it too."""
    lmax, rs, exp_w = (int(params[key]) for key in ("LMAX", "RS", "EXP_W"))
    return lmax - min(max(rs - exp_w, 0), lmax)


def cycle_overhead(layer: dict, pe: int) -> int:
    """The layer's fixed cycles around its add-max loop (docs/verilog.md, "Cycle model")."""
    return OVERHEAD + (bm_groups.cycle_overhead(layer, pe) if is_grouped(layer) else 0)


def plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """Parameters of one ``bmhw_bm_layer`` and the contents of its four ROMs."""
    ranges, widths = layer["ranges"], layer["widths"]
    grouped = is_grouped(layer)
    params = layer_geometry(layer, pe)
    f, p, g, h, csum = (int(layer[key]) for key in ("F", "P", "G", "H", "csum"))
    folds = -(-params["O"] // pe)

    ln, w, exp, bias = (net.table(layer, t) for t in ir.BM_TABLES)
    q_w = int(widths["q_in"])
    ln_w, wt_w, b_w = signed_width(*ranges["LN"]), signed_width(*ranges["W"]), signed_width(*ranges["B"])
    m_w = max(ln_w, wt_w, signed_width(*ranges["T"]))
    exp_w = width(*ranges["EXP"])
    i_min, i_max = (int(v) for v in ranges["I"])
    lmax = i_max - i_min
    rs = p - g - i_min
    z_w = exp_w + lmax
    s_w, sc_w = int(widths["S"]), int(widths["S_CSUM"])
    if csum == 0:  # no correction (a sign-split layer's delta_w = 0): C = 0 at the narrowest width the block takes
        sc_w = max(sc_w, h)
    checks = [(f >= 1, "the Verilog blocks need F >= 1 log-domain fraction bits (re-quantize with --log-frac-bits 1 "
                       "or more)"),
              (0 < h <= sc_w, f"the correction shift H={h} must lie in [1, {sc_w}]"),
              (rs <= z_w, f"the exp shift {rs} exceeds the {z_w}-bit shifted table entry"),
              (len(ln) <= 1 << q_w, f"the ln table has {len(ln)} entries for {q_w}-bit codes"),
              (len(exp) == 1 << f, f"the exp table has {len(exp)} entries, not 2^F = {1 << f}")]
    e_w = round_shift_width(z_w, rs)
    c_w = sc_w + 1 - h
    # Y = s (E - C) + B, or s (D - C) + B with several maxima per output (D: the signed sum of their terms).
    y_w = max(signed_width(*ranges["D"]) if grouped else e_w, c_w, b_w) + 2
    params.update({"Q_W": q_w, "LN_W": ln_w, "WT_W": wt_w, "M_W": m_w, "F": f, "EXP_W": exp_w, "IMIN": i_min,
                   "LMAX": lmax, "RS": rs, "E_W": e_w, "S_W": s_w, "SC_W": sc_w,
                   "H": h, "CSUM": csum, "C_W": c_w, "B_W": b_w, "Y_W": y_w, "RELU": int(bool(layer["relu"]))})
    if grouped:
        params.update(bm_groups.params(layer, pe))
    params.update(requantize_params(layer, y_w, g + int(layer["out_scale_exp"]), checks))
    raise_failed(layer, checks)
    bias_words, bias_w = padded(bias, folds * pe), b_w
    signs = net.signs(layer)
    if signs is not None:
        # Mirrored outputs: one more bit on top of each bias word marks them (docs/verilog.md).
        params["NEG"] = 1
        neg = padded((signs < 0).astype(np.int64), folds * pe)
        bias_words = [(int(n) << b_w) | (int(b) & ((1 << b_w) - 1)) for n, b in zip(neg, bias_words)]
        bias_w = b_w + 1
    # The ln LUT is indexed by the full code width.
    if grouped:
        sign = net.table(layer, "weight_sign") if layer.get("split_sign") else None
        w_mem = mem_text(bm_groups.weight_words(w, sign, pe, wt_w), bm_groups.word_bits(layer, pe, wt_w))
    else:
        w_mem = mem_text(weight_words(w, pe, wt_w), pe * wt_w)
    mems = {f"mem/{name}_ln.mem": mem_text(padded(ln, 1 << q_w), ln_w),
            f"mem/{name}_w.mem": w_mem,
            f"mem/{name}_exp.mem": mem_text(exp, exp_w),
            f"mem/{name}_b.mem": mem_text(bias_words, bias_w)}
    if grouped:  # 1 at the steps that end a group: K bits, the same for every fold and output
        mems[f"mem/{name}_gl.mem"] = mem_text(bm_groups.group_ends(layer), 1)
    plan_ = finish_plan(params, mems, name, params["OUT_H"] * params["OUT_W"])
    return {**plan_, "module": bm_groups.MODULE} if grouped else plan_
