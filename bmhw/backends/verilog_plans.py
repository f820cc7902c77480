"""Per-layer plans of the Verilog backend (bmhw.backends.verilog): for each weight layer of a quantized network,
the parameters of its hand-written block (shapes, PE count, the width of every signal from the IR's proven
ranges) and its ROM contents, one plan function per neuron family; the cost model reads the same plans.
NumPy only."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.errors import BmhwError
from bmhw.ir.intmath import width

INPUT_BITS = 8  # image bytes: the network input codes are in [0, 255] (docs/datapath.md)


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest two's complement field holding [lo, hi] (a sign bit even when lo >= 0)."""
    return width(min(int(lo), -1), max(int(hi), 0))


def address_width(depth: int) -> int:
    return max(1, (int(depth) - 1).bit_length())


def mem_text(values, bits: int) -> bytes:
    """A $readmemh file: one two's complement entry of ``bits`` bits per line, in hex."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values).encode()


def _size(shape) -> int:
    return int(np.prod(shape))


def _round_shift_width(in_w: int, n: int) -> int:
    """Natural width of round_shift(a, n) for an ``in_w``-bit a (bmhw_round_shift)."""
    return in_w + 1 - n if n > 0 else in_w - n


def layer_geometry(layer: dict, pe: int) -> dict:
    """The shape parameters every layer block takes: bmhw_layer_scan's."""
    conv = layer["op"] in ir.CONV_OPS
    in_h, in_w = (list(layer["in_shape"][1:]) if conv else [1, 1])
    out_h, out_w = (list(layer["out_shape"][1:]) if conv else [1, 1])
    kh, kw = layer["kernel"] if conv else (1, 1)
    sh, sw = layer["stride"] if conv else (1, 1)
    ph, pw = layer["padding"] if conv else (0, 0)
    return {"IN_H": in_h, "IN_W": in_w, "OUT_H": out_h, "OUT_W": out_w, "KH": kh, "KW": kw, "SH": sh, "SW": sw,
            "PH": ph, "PW": pw, "K": int(layer["fan_in"]), "O": int(layer["out_count"]), "PE": pe,
            "IN_AW": address_width(_size(layer["in_shape"])), "OUT_AW": address_width(_size(layer["out_shape"]))}


def _weight_words(w: np.ndarray, pe: int, wt_w: int) -> list:
    """The weight ROM: the PE weights of one step side by side (PE 0 in the low bits), at address
    fold * K + k; outputs past O read zeros."""
    o, k = w.shape
    folds = -(-o // pe)
    w_pad = np.zeros((folds * pe, k), dtype=np.int64)
    w_pad[:o] = w
    words = []
    for fold in range(folds):
        block = w_pad[fold * pe:(fold + 1) * pe] & ((1 << wt_w) - 1)
        for step in range(k):
            word = 0
            for lane in reversed(range(pe)):
                word = (word << wt_w) | int(block[lane, step])
            words.append(word)
    return words


def _padded(values, depth: int) -> np.ndarray:
    out = np.zeros(depth, dtype=np.int64)
    out[:len(values)] = values
    return out


def _requantize_params(layer: dict, y_w: int, out_shift: int, checks: list) -> dict:
    """OUT_SHIFT, YR_W and OUT_D of a layer's output: requantized codes, or the Y_W-bit logits."""
    if not layer["relu"]:
        return {"OUT_SHIFT": 0, "YR_W": 1, "OUT_D": y_w}
    a = int(layer["widths"]["q_out"])
    checks += [(int(layer["out_max"]) == (1 << a) - 1, f"out_max {layer['out_max']} is not 2^{a} - 1"),
               (out_shift <= y_w, f"the requantization shift {out_shift} exceeds Y's {y_w} bits")]
    return {"OUT_SHIFT": out_shift, "YR_W": max(_round_shift_width(y_w, out_shift), a + 1), "OUT_D": a}


def _raise_failed(layer: dict, checks: list) -> None:
    for ok, problem in checks:
        if not ok:
            raise BmhwError(f"layer {layer['name']}: {problem}; the .bmq file is inconsistent or unsupported by "
                            "the Verilog backend: re-create it with bmhw quantize")


def _plan(params: dict, mems: dict, name: str, positions: int) -> dict:
    for path in mems:
        rom = path[len(f"mem/{name}_"):-len(".mem")]
        params[f"{rom.upper()}_FILE"] = path
    return {"params": params, "mems": mems, "out_bits": params["OUT_D"], "folds": -(-params["O"] // params["PE"]),
            "positions": positions}


def bm_layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int) -> dict:
    """Parameters of one ``bmhw_bm_layer`` and the contents of its four ROMs."""
    ranges, widths = layer["ranges"], layer["widths"]
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
    checks = [(f >= 1, "the Verilog blocks need F >= 1 log-domain fraction bits (re-quantize with --log-frac-bits 1 "
                       "or more)"),
              (0 < h <= sc_w, f"the correction shift H={h} must lie in [1, {sc_w}]"),
              (rs <= z_w, f"the exp shift {rs} exceeds the {z_w}-bit shifted table entry"),
              (len(ln) <= 1 << q_w, f"the ln table has {len(ln)} entries for {q_w}-bit codes"),
              (len(exp) == 1 << f, f"the exp table has {len(exp)} entries, not 2^F = {1 << f}")]
    e_w = _round_shift_width(z_w, rs)
    c_w = sc_w + 1 - h
    y_w = max(e_w, c_w, b_w) + 2
    params.update({"Q_W": q_w, "LN_W": ln_w, "WT_W": wt_w, "M_W": m_w, "F": f, "EXP_W": exp_w, "IMIN": i_min,
                   "L_W": max(1, lmax.bit_length()), "LMAX": lmax, "RS": rs, "E_W": e_w, "S_W": s_w, "SC_W": sc_w,
                   "H": h, "CSUM": csum, "C_W": c_w, "B_W": b_w, "Y_W": y_w, "RELU": int(bool(layer["relu"]))})
    params.update(_requantize_params(layer, y_w, g + int(layer["out_scale_exp"]), checks))
    _raise_failed(layer, checks)
    bias_words, bias_w = _padded(bias, folds * pe), b_w
    signs = net.signs(layer)
    if signs is not None:
        # Mirrored outputs: one more bit on top of each bias word marks them (docs/verilog.md).
        params["NEG"] = 1
        neg = _padded((signs < 0).astype(np.int64), folds * pe)
        bias_words = [(int(n) << b_w) | (int(b) & ((1 << b_w) - 1)) for n, b in zip(neg, bias_words)]
        bias_w = b_w + 1
    # The ln LUT is indexed by the full code width.
    mems = {f"mem/{name}_ln.mem": mem_text(_padded(ln, 1 << q_w), ln_w),
            f"mem/{name}_w.mem": mem_text(_weight_words(w, pe, wt_w), pe * wt_w),
            f"mem/{name}_exp.mem": mem_text(exp, exp_w),
            f"mem/{name}_b.mem": mem_text(bias_words, bias_w)}
    return _plan(params, mems, name, params["OUT_H"] * params["OUT_W"])


def mac_layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int) -> dict:
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
    params.update(_requantize_params(layer, y_w, int(layer["out_scale_exp"]) - int(layer["acc_scale_exp"]), checks))
    _raise_failed(layer, checks)
    mems = {f"mem/{name}_w.mem": mem_text(_weight_words(w, pe, wt_w), pe * wt_w),
            f"mem/{name}_b.mem": mem_text(_padded(bias, folds * pe), b_w)}
    return _plan(params, mems, name, params["OUT_H"] * params["OUT_W"])


def adder_layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int) -> dict:
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
    params.update(_requantize_params(layer, y_w, r, checks))
    _raise_failed(layer, checks)
    mems = {f"mem/{name}_w.mem": mem_text(_weight_words(w, pe, wt_w), pe * wt_w),
            f"mem/{name}_m.mem": mem_text(_padded(scale, folds * pe), mul_w),
            f"mem/{name}_b.mem": mem_text(_padded(bias, folds * pe), b_w)}
    return _plan(params, mems, name, params["OUT_H"] * params["OUT_W"])


def bise_layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
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
    _raise_failed(layer, checks)
    # The scores are read by the arg-max as signed numbers: one zero bit on top of C.
    out_d = acc_w + 1 if scores else 1
    params.update({"Q_W": INPUT_BITS if threshold is not None else 1, "BINARIZE": int(threshold is not None),
                   "THRESH": int(threshold) if threshold is not None else 0, "ACC_W": acc_w, "SCORES": int(scores),
                   "OUT_D": out_d})
    mems = {f"mem/{name}_w.mem": mem_text(_weight_words(se * 2 + neg * se, pe, 2), pe * 2)}
    if not scores:
        thresholds = np.where(op == 1, sizes, 1)
        mems[f"mem/{name}_t.mem"] = mem_text(_padded(thresholds, folds * pe), acc_w)
    return _plan(params, mems, name, params["OUT_H"] * params["OUT_W"])


def bise_input_threshold(net: ir.QuantizedNet, layer: dict) -> int | None:
    """The ``binarize`` threshold folded into ``layer`` (the layer right after it), else None."""
    index = next(i for i, entry in enumerate(net.layers) if entry is layer)
    if index > 0 and net.layers[index - 1]["op"] == "binarize":
        return int(net.layers[index - 1]["threshold"])
    return None


def layer_plan(net: ir.QuantizedNet, layer: dict, name: str, pe: int, threshold: int | None = None) -> dict:
    """The plan of a weight layer's block: ``module``, ``params``, ``mems``, ``out_bits``, ..."""
    if layer["op"] in ir.BISE_OPS:
        return {"module": "bmhw_bise_layer", **bise_layer_plan(net, layer, name, pe, threshold)}
    if layer["op"] in ir.ADDER_OPS:
        return {"module": "bmhw_adder_layer", **adder_layer_plan(net, layer, name, pe)}
    if layer["op"] in ir.MAC_OPS:
        return {"module": "bmhw_mac_layer", **mac_layer_plan(net, layer, name, pe)}
    return {"module": "bmhw_bm_layer", **bm_layer_plan(net, layer, name, pe)}
