"""The Verilog backend: a quantized network (.bmq IR) -> synthesizable Verilog of the layer-by-layer
architecture, verified bit for bit against the golden model by the cocotb benches in ``sim/``.

The building blocks are hand-written, parameterised Verilog-2005 modules (``templates/verilog/lib/``,
copied unchanged into every project). Python prepares, per layer, the parameter values (shapes, PE
count, and the width of every signal from the IR's proven ranges) and the ROM contents (``mem/*.mem``);
the one template, ``bmhw_net.v.j2``, only instantiates and wires them. The export is deterministic and
atomic like the HLS export. NumPy only, never torch. Architecture and cycle model: docs/verilog.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import numpy as np

from bmhw import __version__, ir
from bmhw.backends.project import layer_names, parse_pe_options, resolve_pe, write_project  # noqa: F401
from bmhw.errors import BmhwError
from bmhw.ir.intmath import width

TOP = "bmhw_net"
INPUT_BITS = 8  # image bytes: the network input codes are in [0, 255] (docs/datapath.md)
CYCLE_COUNTER_BITS = 32
DEFAULT_CLOCK_NS = 5.0
# Fixed cycles of each block around its loop (fill and drain of its pipeline, the done pulse), read off
# the schedules documented in the modules; the simulation measures them (docs/verilog.md).
BM_OVERHEAD = 11
MAC_OVERHEAD = 8  # the MAC layer's output stage has no 4-cycle exp pipeline (one bias cycle instead)
ADDER_OVERHEAD = 10  # the adder layer's: the MAC's, plus registered multiplier inputs and the product register
ADDER_OPS, ADDER_TABLES = ir.ADDER_OPS, ir.ADDER_TABLES
BISE_OVERHEAD = 8  # the BiSE layer's: the MAC layer's schedule (a threshold ROM and one comparison instead of the bias)
BISE_OPS = ir.BISE_OPS
BISE_MODULES = ("bmhw_bise_array.v", "bmhw_bise_layer.v", "bmhw_bise_pe.v")
POOL_OVERHEAD = 4
ARGMAX_OVERHEAD = 2
OUTPUT_OVERHEAD = 1


def library_dir() -> Path:
    from bmhw.resources import templates_dir

    return templates_dir() / "verilog" / "lib"


def library_files(bise: bool = False) -> list[str]:
    """The hand-written modules, in a fixed order (dependencies first). The BiSE blocks go only into the
    projects of BiSE networks (``bise``), so that the other projects are unchanged."""
    return sorted(p.name for p in library_dir().glob("*.v") if bise or p.name not in BISE_MODULES)


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
    w, scale, bias = (net.table(layer, t) for t in ADDER_TABLES)
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
    if layer["op"] in BISE_OPS:
        return {"module": "bmhw_bise_layer", **bise_layer_plan(net, layer, name, pe, threshold)}
    if layer["op"] in ADDER_OPS:
        return {"module": "bmhw_adder_layer", **adder_layer_plan(net, layer, name, pe)}
    if layer["op"] in ir.MAC_OPS:
        return {"module": "bmhw_mac_layer", **mac_layer_plan(net, layer, name, pe)}
    return {"module": "bmhw_bm_layer", **bm_layer_plan(net, layer, name, pe)}


def cycle_model(net: ir.QuantizedNet, pes: list) -> list[dict]:
    """Cycles per image of each block, from the schedules of the RTL (docs/verilog.md, "Cycle model"):
    input: one pixel per cycle; BM layer: positions * folds * K + (outputs of the last fold) + 11 (MAC layer: + 8;
    adder layer: + 10);
    max pooling: outputs * k^2 + 4;
    flatten: none (the buffer is read in place); arg-max: classes + 2, and one cycle to raise out_valid."""
    rows = [{"layer": "input", "op": "stream", "pe": None, "positions": None, "folds": None, "k": None,
             "cycles": _size(net.input_shape)}]
    for layer, name, pe in zip(net.layers, layer_names(net), pes):
        row = {"layer": name, "op": layer["op"], "pe": pe, "positions": None, "folds": None, "k": None}
        if layer["op"] in ir.WEIGHT_OPS or layer["op"] in BISE_OPS:
            positions = _size(layer["out_shape"][1:]) if len(layer["out_shape"]) == 3 else 1
            k, o = int(layer["fan_in"]), int(layer["out_count"])
            folds = -(-o // pe)
            last_fold = o - (folds - 1) * pe
            overhead = (ADDER_OVERHEAD if layer["op"] in ADDER_OPS else MAC_OVERHEAD if layer["op"] in ir.MAC_OPS
                        else BISE_OVERHEAD if layer["op"] in BISE_OPS else BM_OVERHEAD)
            row.update(positions=positions, folds=folds, k=k, cycles=positions * folds * k + last_fold + overhead)
        elif layer["op"] == "maxpool2d":
            row["cycles"] = _size(layer["out_shape"]) * int(layer["kernel"]) ** 2 + POOL_OVERHEAD
        else:
            row["cycles"] = 0
        rows.append(row)
    rows.append({"layer": "argmax", "op": "argmax", "pe": None, "positions": None, "folds": None, "k": None,
                 "cycles": net.num_classes + ARGMAX_OVERHEAD + OUTPUT_OVERHEAD})
    return rows


def cycle_summary(net: ir.QuantizedNet, pes: list, clock_ns: float = DEFAULT_CLOCK_NS) -> dict:
    """Per-block rows, the cycles per image (first input beat to output beat) and images/s at the clock."""
    rows = cycle_model(net, pes)
    total = sum(row["cycles"] for row in rows)
    return {"rows": rows, "total": total, "images_per_s": 1e9 / (total * clock_ns)}


def _check_network(net: ir.QuantizedNet) -> None:
    if not net.layers:
        raise BmhwError("the network has no layers: nothing to export")
    last = net.layers[-1]
    if net.is_bise:
        if net.layers[0]["op"] != "binarize" or any(layer["op"] == "binarize" for layer in net.layers[1:]):
            raise BmhwError("a BiSE network must start with its one binarize op; re-create the .bmq with bmhw quantize")
        if net.layers[1]["op"] not in BISE_OPS:
            raise BmhwError(f"layer {net.layers[1]['name']}: the binarize op must feed a BiSE layer directly (the "
                            "Verilog backend folds it into that layer's input)")
        if last["op"] not in BISE_OPS or not last["scores"]:
            raise BmhwError("the last layer must be the BiSE scores layer; re-create the .bmq with bmhw quantize")
    elif last["op"] not in ir.WEIGHT_OPS or last["relu"]:
        raise BmhwError("the last layer must be the logits layer (no ReLU); re-create the .bmq with bmhw quantize")
    if net.num_classes < 2:
        raise BmhwError(f"the network has {net.num_classes} output; the arg-max needs at least 2 classes")
    for layer in net.layers:
        if layer["op"] not in ir.OPS:
            raise BmhwError(f"layer {layer['name']}: the Verilog backend has no block for operation {layer['op']!r}")
        if layer["op"] == "maxpool2d" and int(layer["stride"]) != int(layer["kernel"]):
            raise BmhwError(f"layer {layer['name']}: max pooling with stride {layer['stride']} != kernel "
                            f"{layer['kernel']} is not supported by the Verilog backend")


def layer_pes(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """The PE count of each layer in the Verilog backend (None for layers without PEs)."""
    return resolve_pe(net, pe, pe_layers, cap_at_fan_in=True)


def build_context(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None,
                  clock_ns: float = DEFAULT_CLOCK_NS) -> tuple[dict, dict]:
    """The template context (buffers, blocks and their parameters) and the ROM files."""
    _check_network(net)
    pes = layer_pes(net, pe, pe_layers)
    in_size = _size(net.input_shape)
    buffers = [{"name": "input", "layer": None, "width": INPUT_BITS, "depth": in_size,
                "aw": address_width(in_size), "signed": False}]
    blocks, mems, current, threshold = [], {}, buffers[0], None
    for layer, name, layer_pe in zip(net.layers, layer_names(net), pes):
        op = layer["op"]
        if op == "flatten":  # (C, H, W) is already the flat order: the next layer reads the same buffer
            continue
        if op == "binarize":  # folded into the next (BiSE) layer, which reads the image codes
            threshold = int(layer["threshold"])
            continue
        if op in ir.WEIGHT_OPS or op in BISE_OPS:
            plan = layer_plan(net, layer, name, layer_pe, threshold)
            threshold = None
            if plan["params"]["Q_W"] != current["width"]:
                raise BmhwError(f"layer {layer['name']}: its input codes are {plan['params']['Q_W']} bits but the "
                                f"previous buffer holds {current['width']}; re-create the .bmq with bmhw quantize")
            mems.update(plan["mems"])
            params, module, out_bits = plan["params"], plan["module"], plan["out_bits"]
        else:
            c, ih, iw = layer["in_shape"]
            _, oh, ow = layer["out_shape"]
            params = {"C": c, "IN_H": ih, "IN_W": iw, "OUT_H": oh, "OUT_W": ow, "KERNEL": layer["kernel"],
                      "D_W": current["width"], "IN_AW": current["aw"],
                      "OUT_AW": address_width(_size(layer["out_shape"]))}
            module, out_bits = "bmhw_maxpool", current["width"]
        depth = _size(layer["out_shape"])
        out_buf = {"name": name, "layer": str(layer["name"]), "width": out_bits, "depth": depth,
                   "aw": address_width(depth),
                   "signed": (op in ir.WEIGHT_OPS and not layer["relu"]) or (op in BISE_OPS and layer["scores"])}
        buffers.append(out_buf)
        blocks.append({"module": module, "inst": f"u_{name}", "name": name, "in_buf": current["name"],
                       "out_buf": name, "params": [(key, verilog_value(value)) for key, value in params.items()]})
        current = out_buf
    classes = net.num_classes
    class_w = address_width(classes)
    summary = cycle_summary(net, pes, clock_ns)
    context = {"top": TOP, "version": __version__, "source": str(net.meta.get("source", "unknown")),
               "input_size": in_size, "input_aw": buffers[0]["aw"], "input_bits": INPUT_BITS,
               "buffers": buffers, "blocks": blocks, "classes": classes, "logit_bits": current["width"],
               "class_bits": class_w, "logits_buf": current["name"], "counter_bits": CYCLE_COUNTER_BITS,
               "pes": pes, "cycles": summary, "clock_ns": clock_ns,
               "input_shape": "x".join(map(str, net.input_shape))}
    return context, mems


def verilog_value(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    value = int(value)
    if not -(2 ** 31) <= value < 2 ** 31:
        if value < 0:
            raise BmhwError(f"parameter value {value} does not fit a 32-bit Verilog integer")
        return f"64'd{value}"
    return str(value)


def design_description(net: ir.QuantizedNet, context: dict) -> dict:
    """design.json: what the simulation benches need to know about the generated RTL."""
    return {"format": "bmhw-rtl", "version": 1, "top": TOP, "bmhw": __version__,
            "input_size": context["input_size"], "input_bits": INPUT_BITS, "classes": context["classes"],
            "logit_bits": context["logit_bits"], "class_bits": context["class_bits"],
            "counter_bits": CYCLE_COUNTER_BITS, "clock_ns": context["clock_ns"],
            "sources": [f"rtl/lib/{name}" for name in library_files(net.is_bise)] + [f"rtl/{TOP}.v"],
            "buffers": [{key: b[key] for key in ("name", "layer", "width", "depth", "signed")}
                        for b in context["buffers"]],
            "pe": {name: pe for name, pe in zip(layer_names(net), context["pes"]) if pe is not None},
            "cycles": {"total": context["cycles"]["total"],
                       "blocks": [{"block": r["layer"], "cycles": r["cycles"]} for r in context["cycles"]["rows"]]}}


def _environment() -> jinja2.Environment:
    from bmhw.resources import templates_dir

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "verilog")), autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True)


def render(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None,
           clock_ns: float = DEFAULT_CLOCK_NS) -> dict:
    """Every file of the project: relative path -> bytes."""
    context, mems = build_context(net, pe, pe_layers, clock_ns)
    env = _environment()
    design = design_description(net, context)
    files = {f"rtl/{TOP}.v": env.get_template(f"{TOP}.v.j2").render(context).encode(),
             "README.md": env.get_template("README.md.j2").render(context).encode(),
             "files.f": "".join(f"{path}\n" for path in design["sources"]).encode(),
             "design.json": (json.dumps(design, indent=1, sort_keys=True) + "\n").encode(),
             "model.bmq": ir.dumps(net)}
    files.update(mems)
    for name in library_files(net.is_bise):
        files[f"rtl/lib/{name}"] = (library_dir() / name).read_bytes()
    return files


def export(net: ir.QuantizedNet, out_dir, pe: int = 1, pe_layers: dict | None = None,
           clock_ns: float = DEFAULT_CLOCK_NS) -> Path:
    """Write the Verilog project to ``out_dir`` atomically. ``pe``: add-max PEs working at once in every BM
    layer; ``pe_layers``: per-layer overrides; both capped at a layer's outputs and at its fan-in."""
    return write_project(render(net, pe, pe_layers, clock_ns), out_dir, "Verilog project", "build/rtl")
