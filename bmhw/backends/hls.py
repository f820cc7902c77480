"""The Vitis HLS backend: a quantized network (.bmq IR) -> a C++ project checked by C-simulation.

Python prepares a flat per-layer context (names, shapes, constants, one ap_int type per signal from the
IR's proven ranges, table rows as text); the Jinja2 templates under ``templates/hls/`` only loop over it;
the kernels themselves are hand-written in ``hls/bmhw_layers.h``. The export is deterministic (the same
IR gives byte-identical files) and atomic (built in a temporary folder renamed into place at the end).
NumPy only, never torch.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import numpy as np

from bmhw import ir
from bmhw.backends.project import layer_names as c_names
from bmhw.backends.project import resolve_pe, write_project
from bmhw.errors import BmhwError
from bmhw.resources import hls_dir, templates_dir
# The kernels do their rounding shifts in 64-bit integers, like the golden model.
from bmhw.ir.widths import MAX_WIDTH

KERNELS_HEADER = "bmhw_layers.h"
SIGNALS = ("q_in", "LN", "W", "T", "M", "I", "r", "EXP", "E", "S", "S_CSUM", "C", "B", "Y", "q_out")
# The adder layer's signals (docs/datapath.md, "The adder layer"); YR only in hidden layers.
ADDER_SIGNALS = ("q_in", "W", "D", "ABS", "ACC", "MUL", "PROD", "B", "Y", "q_out")
VALUES_PER_LINE = 16
DEFAULT_PART = "xcu250-figd2104-2L-e"
DEFAULT_CLOCK_NS = 5.0
# Image bytes: the network input codes are in [0, 255] (docs/datapath.md, "Activations").
INPUT_TYPE = "ap_uint<8>"
# Cycle model (docs/hls.md): the fill and drain of one fold's pipelined add-max loop plus the exp lookup,
# the shift and the requantization that follow it. A model constant, not a synthesis result.
PE_PIPELINE_DEPTH = 8
# The same for a BiSE layer's fold: the ROM read of SE / NEG and the XOR feeding the 1-bit OR / AND (or the
# score counter); nothing follows the loop (no lookup, no shift, no requantization). A model constant too.
BISE_PIPELINE_DEPTH = 2
# Hidden BiSE activations are single bits (docs/datapath.md, "The BiSE layer": x in [0, 1]).
BIT_TYPE = "ap_uint<1>"


def ap_type(lo: int, hi: int, bits: int) -> str:
    """The ap_int type of a signal with range [lo, hi] and proven width ``bits``."""
    return f"ap_int<{bits}>" if lo < 0 else f"ap_uint<{bits}>"


def rom_type(lo: int, hi: int) -> str:
    """The smallest standard C integer type holding [lo, hi]: ROM tables are stored in these (g++ takes
    minutes over large ap_int array initializers); the kernels convert each entry to its ap_int type."""
    for bits in (8, 16, 32, 64):
        if lo >= 0 and hi < 2 ** bits:
            return f"uint{bits}_t"
        if -(2 ** (bits - 1)) <= lo and hi < 2 ** (bits - 1):
            return f"int{bits}_t"
    raise BmhwError(f"range [{lo}, {hi}] does not fit in 64 bits")


def c_literal(value: int) -> str:
    value = int(value)
    return str(value) if -(2 ** 31) < value < 2 ** 31 else f"{value}LL"


def _rows(values: np.ndarray) -> list[str]:
    """A 1-D table as lines of comma-separated C literals (the last without a trailing comma)."""
    text = [c_literal(v) for v in np.asarray(values).ravel().tolist()]
    lines = [", ".join(text[i:i + VALUES_PER_LINE]) for i in range(0, len(text), VALUES_PER_LINE)]
    return [line + ("," if n < len(lines) - 1 else "") for n, line in enumerate(lines)]


def _bm_types(layer: dict) -> dict:
    ranges, widths = layer["ranges"], layer["widths"]
    for signal in SIGNALS:
        if widths[signal] > MAX_WIDTH:
            raise BmhwError(f"layer {layer['name']}: signal {signal} needs {widths[signal]} bits; the HLS kernels "
                            f"support at most {MAX_WIDTH}: re-quantize with fewer --exp-frac-bits or --guard-bits")
    types = {s: ap_type(*ranges[s], widths[s]) for s in SIGNALS}
    acc_bits = max(widths[s] for s in ("E", "C", "B", "Y")) + 2
    types["acc"] = f"ap_int<{acc_bits}>"
    return types


def _size(shape) -> int:
    return int(np.prod(shape))


def cycle_model(net: ir.QuantizedNet, pes: list) -> list[dict]:
    """Expected cycles per image of each layer for the given PE counts (docs/hls.md, "Cycle model"):
    BM layer: patches * ceil(O / PE) * (K + PE_PIPELINE_DEPTH) + patches * K (the lookup loop);
    BiSE layer: patches * ceil(O / PE) * (K + BISE_PIPELINE_DEPTH), plus patches * K for a convolution's
    gather loop; max pooling: its output elements; flatten, binarize: its elements. A model, not a
    synthesis report."""
    rows = []
    for layer, name, pe in zip(net.layers, c_names(net), pes):
        if layer["op"] in ir.BISE_OPS:
            conv = layer["op"] == "bise_conv2d"
            patches = _size(layer["out_shape"][1:]) if conv else 1
            k, o = int(layer["fan_in"]), int(layer["out_count"])
            folds = -(-o // pe)
            cycles = patches * folds * (k + BISE_PIPELINE_DEPTH) + (patches * k if conv else 0)
            rows.append({"layer": name, "op": layer["op"], "pe": pe, "patches": patches, "folds": folds, "k": k,
                         "cycles": cycles})
            continue
        if layer["op"] in ir.BM_OPS:
            patches = _size(layer["out_shape"][1:]) if layer["op"] == "bm_conv2d" else 1
            k, o = int(layer["fan_in"]), int(layer["out_count"])
            folds = -(-o // pe)
            cycles = patches * folds * (k + PE_PIPELINE_DEPTH) + patches * k
            rows.append({"layer": name, "op": layer["op"], "pe": pe, "patches": patches, "folds": folds, "k": k,
                         "cycles": cycles})
        elif layer["op"] in ir.ADDER_OPS:
            # Adder layer: the L1 loop at II=1 per fold plus the pipeline depth, and a convolution's gather loop.
            conv = layer["op"] == "adder_conv2d"
            patches = _size(layer["out_shape"][1:]) if conv else 1
            k, o = int(layer["fan_in"]), int(layer["out_count"])
            folds = -(-o // pe)
            cycles = patches * folds * (k + PE_PIPELINE_DEPTH) + (patches * k if conv else 0)
            rows.append({"layer": name, "op": layer["op"], "pe": pe, "patches": patches, "folds": folds, "k": k,
                         "cycles": cycles})
        else:
            size = _size(layer["out_shape"] if layer["op"] == "maxpool2d" else layer["in_shape"])
            rows.append({"layer": name, "op": layer["op"], "pe": None, "patches": None, "folds": None, "k": None,
                         "cycles": size})
    return rows


def cycle_summary(net: ir.QuantizedNet, pes: list, clock_ns: float = DEFAULT_CLOCK_NS) -> dict:
    """The per-layer rows, the total cycles per image (layers one after another) and images/s at the clock."""
    rows = cycle_model(net, pes)
    total = sum(row["cycles"] for row in rows)
    return {"rows": rows, "total": total, "images_per_s": 1e9 / (total * clock_ns)}


def _geometry(layer: dict) -> list:
    """The shape constants every layer kernel takes (a linear layer is a 1 x 1 convolution of a 1 x 1 image)."""
    conv = layer["op"] in ir.CONV_OPS
    in_shape = list(layer["in_shape"]) if conv else [1, 1, _size(layer["in_shape"])]
    out_shape = list(layer["out_shape"]) if conv else [int(layer["out_count"]), 1, 1]
    kh, kw = layer["kernel"] if conv else (1, 1)
    sh, sw = layer["stride"] if conv else (1, 1)
    ph, pw = layer["padding"] if conv else (0, 0)
    return [("IN_C", in_shape[0]), ("IN_H", in_shape[1]), ("IN_W", in_shape[2]), ("O", layer["out_count"]),
            ("OUT_H", out_shape[1]), ("OUT_W", out_shape[2]), ("K", layer["fan_in"]), ("KH", kh), ("KW", kw),
            ("SH", sh), ("SW", sw), ("PH", ph), ("PW", pw)]


def _bm_context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int = 1) -> dict:
    types = _bm_types(layer)
    if types["q_in"] != in_type:
        raise BmhwError(f"layer {name}: its input codes are {in_type} but the IR gives q_in {types['q_in']}; "
                        "the .bmq file is inconsistent: re-create it with bmhw quantize")
    ln, w, exp, bias = (net.table(layer, t) for t in ir.BM_TABLES)
    signs = net.signs(layer)
    neg = np.zeros(len(bias), dtype=np.int64) if signs is None else (signs < 0).astype(np.int64)
    conv = layer["op"] == "bm_conv2d"
    constants = _geometry(layer) + [("LN_SIZE", len(ln)), ("EXP_SIZE", len(exp)), ("F", layer["F"]),
                                    ("P", layer["P"]), ("G", layer["G"]), ("H", layer["H"]),
                                    ("OUT_SHIFT", int(layer["G"]) + int(layer["out_scale_exp"])),
                                    ("OUT_MAX", layer["out_max"] if layer["relu"] else 0), ("PE", pe)]
    out_type = types["q_out"] if layer["relu"] else types["Y"]
    typedefs = [(f"{s.lower()}_t", types[s]) for s in SIGNALS if s != "q_out"]
    typedefs += [("acc_t", types["acc"]), ("out_t", out_type)]
    typedefs += [(f"{s.lower()}_rom_t", rom_type(*layer["ranges"][s])) for s in ("LN", "W", "EXP", "B")]
    return {
        "name": name, "op": layer["op"], "kernel": "bm_conv2d" if conv else "bm_linear", "bm": True,
        "typedefs": typedefs, "int_constants": [(k, int(v)) for k, v in constants],
        "csum": c_literal(layer["csum"]), "relu": "true" if layer["relu"] else "false",
        "long_constants": [("CSUM", c_literal(layer["csum"]))], "bool_constants": [("RELU", layer["relu"])],
        "table_list": "ln LUT, log-weights, exp LUT, bias",
        "out_type": out_type, "out_size": _size(layer["out_shape"]),
        "table_args": f", {name}_ln_lut, {name}_w, {name}_exp_lut, {name}_bias, {name}_neg", "pe": pe,
        "partitions": [f"variable = {name}_w cyclic factor = {pe} dim = 1"] if pe > 1 else [],
        "tables": [
            {"decl": f"{name}_config::ln_rom_t {name}_ln_lut[{len(ln)}]", "rows": _rows(ln), "matrix": []},
            {"decl": f"{name}_config::w_rom_t {name}_w[{w.shape[0]}][{w.shape[1]}]",
             "rows": [], "matrix": [{"rows": _rows(row), "last": o == w.shape[0] - 1} for o, row in enumerate(w)]},
            {"decl": f"{name}_config::exp_rom_t {name}_exp_lut[{len(exp)}]", "rows": _rows(exp), "matrix": []},
            {"decl": f"{name}_config::b_rom_t {name}_bias[{len(bias)}]", "rows": _rows(bias), "matrix": []},
            # 1 where the output is mirrored (Y = -(E - C) + B): docs/datapath.md
            {"decl": f"bool {name}_neg[{len(neg)}]", "rows": _rows(neg), "matrix": []},
        ],
        "summary": f"{layer['op']} {'x'.join(map(str, layer['in_shape']))} -> {'x'.join(map(str, layer['out_shape']))}"
                   f", K={layer['fan_in']}, PE sum T {layer['widths']['T']} bits, Y {layer['widths']['Y']} bits",
    }


def _adder_context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int = 1) -> dict:
    """An AdderNet layer (docs/datapath.md, "The adder layer"): one ap_int type per signal from the IR."""
    ranges, widths = layer["ranges"], layer["widths"]
    types = {s: ap_type(*ranges[s], widths[s]) for s in ADDER_SIGNALS}
    if types["q_in"] != in_type:
        raise BmhwError(f"layer {name}: its input codes are {in_type} but the IR gives q_in {types['q_in']}; "
                        "the .bmq file is inconsistent: re-create it with bmhw quantize")
    w, mul, bias = (net.table(layer, t) for t in ir.ADDER_TABLES)
    constants = _geometry(layer) + [("OUT_SHIFT", int(layer["R"])),
                                    ("OUT_MAX", layer["out_max"] if layer["relu"] else 0), ("PE", pe)]
    out_type = types["q_out"] if layer["relu"] else types["Y"]
    typedefs = [(f"{s.lower()}_t", types[s]) for s in ADDER_SIGNALS if s != "q_out"]
    typedefs += [("out_t", out_type)]
    typedefs += [(f"{s.lower()}_rom_t", rom_type(*ranges[s])) for s in ("W", "MUL", "B")]
    return {
        "name": name, "op": layer["op"], "kernel": layer["op"], "bm": False,
        "typedefs": typedefs, "int_constants": [(k, int(v)) for k, v in constants],
        "long_constants": [], "bool_constants": [("RELU", layer["relu"])],
        "table_list": "templates W, multipliers MUL, offsets B",
        "out_type": out_type, "out_size": _size(layer["out_shape"]),
        "table_args": f", {name}_w, {name}_mul, {name}_bias", "pe": pe,
        "partitions": [f"variable = {name}_w cyclic factor = {pe} dim = 1"] if pe > 1 else [],
        "tables": [
            {"decl": f"{name}_config::w_rom_t {name}_w[{w.shape[0]}][{w.shape[1]}]",
             "rows": [], "matrix": [{"rows": _rows(row), "last": o == w.shape[0] - 1} for o, row in enumerate(w)]},
            {"decl": f"{name}_config::mul_rom_t {name}_mul[{len(mul)}]", "rows": _rows(mul), "matrix": []},
            {"decl": f"{name}_config::b_rom_t {name}_bias[{len(bias)}]", "rows": _rows(bias), "matrix": []},
        ],
        "summary": f"{layer['op']} {'x'.join(map(str, layer['in_shape']))} -> {'x'.join(map(str, layer['out_shape']))}"
                   f", K={layer['fan_in']}, ACC {widths['ACC']} bits, MUL {widths['MUL']} bits, Y {widths['Y']} bits",
    }


def _bise_context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int = 1) -> dict:
    """A binarised BiSE layer (docs/datapath.md, "The BiSE layer"): 1-bit activations in; a hidden layer
    outputs one bit per output (OR / AND), the last one the class score C (its proven width)."""
    ranges, widths = layer["ranges"], layer["widths"]
    scores = bool(layer["scores"])
    for signal in ("x", "C", "q_out"):
        if widths[signal] > MAX_WIDTH:
            raise BmhwError(f"layer {layer['name']}: signal {signal} needs {widths[signal]} bits; the HLS kernels "
                            f"support at most {MAX_WIDTH}")
    x_type = ap_type(*ranges["x"], widths["x"])
    if in_type != BIT_TYPE or x_type != BIT_TYPE:
        raise BmhwError(f"layer {name}: a BiSE layer takes bits ({BIT_TYPE}) but gets {in_type} (IR x: {x_type}); "
                        "the .bmq file is inconsistent: re-create it with bmhw quantize")
    se, op, neg = (net.table(layer, t) for t in ir.BISE_TABLES)
    c_type = ap_type(*ranges["C"], widths["C"])
    out_type = ap_type(*ranges["q_out"], widths["q_out"])
    if scores and out_type != c_type:
        raise BmhwError(f"layer {name}: the scores layer's q_out ({out_type}) must be its count C ({c_type}); "
                        "re-create the .bmq with bmhw quantize")
    if not scores and out_type != BIT_TYPE:
        raise BmhwError(f"layer {name}: a hidden BiSE layer outputs bits, the IR gives q_out {out_type}; "
                        "re-create the .bmq with bmhw quantize")
    constants = _geometry(layer) + [("PE", pe)]
    size = int(se.sum(axis=1).max())
    partitions = [f"variable = {name}_{t} cyclic factor = {pe} dim = 1" for t in ir.BISE_TABLES] if pe > 1 else []

    def matrix(table):
        return [{"rows": _rows(row), "last": o == table.shape[0] - 1} for o, row in enumerate(table)]

    return {
        "name": name, "op": layer["op"], "kernel": layer["op"], "bm": False,
        "typedefs": [("x_t", x_type), ("c_t", c_type), ("out_t", out_type)],
        "int_constants": [(k, int(v)) for k, v in constants],
        "long_constants": [], "bool_constants": [("SCORES", scores)],
        "table_list": "structuring elements SE, operators OP (0 dilation, 1 erosion), complemented inputs NEG",
        "out_type": out_type, "out_size": _size(layer["out_shape"]),
        "table_args": f", {name}_se, {name}_op, {name}_neg", "pe": pe, "partitions": partitions,
        "tables": [
            {"decl": f"bool {name}_se[{se.shape[0]}][{se.shape[1]}]", "rows": [], "matrix": matrix(se)},
            {"decl": f"bool {name}_op[{len(op)}]", "rows": _rows(op), "matrix": []},
            {"decl": f"bool {name}_neg[{neg.shape[0]}][{neg.shape[1]}]", "rows": [], "matrix": matrix(neg)},
        ],
        "summary": f"{layer['op']} {'x'.join(map(str, layer['in_shape']))} -> {'x'.join(map(str, layer['out_shape']))}"
                   f", K={layer['fan_in']}, max |S|={size}, "
                   + (f"class scores C {widths['C']} bits" if scores else "1-bit OR / AND outputs"),
    }


def _binarize_context(layer: dict, in_type: str, name: str) -> dict:
    """The input binarisation: image bytes -> bits (code >= threshold)."""
    threshold = int(layer["threshold"])
    return {"name": name, "op": "binarize", "kernel": "binarize", "bm": False,
            "typedefs": [("data_t", in_type), ("out_t", BIT_TYPE)],
            "int_constants": [("SIZE", _size(layer["in_shape"])), ("THRESHOLD", threshold)],
            "out_type": BIT_TYPE, "out_size": _size(layer["out_shape"]), "table_args": "", "tables": [],
            "pe": None, "partitions": [], "long_constants": [], "bool_constants": [], "table_list": "",
            "summary": f"binarize {'x'.join(map(str, layer['in_shape']))}: x = 1 iff code >= {threshold}"}


def _plain_context(layer: dict, in_type: str, name: str) -> dict:
    op = layer["op"]
    if op == "maxpool2d":
        c, h, w = layer["in_shape"]
        _, oh, ow = layer["out_shape"]
        if int(layer["stride"]) != int(layer["kernel"]):
            raise BmhwError(f"layer {layer['name']}: max pooling with stride {layer['stride']} != kernel "
                            f"{layer['kernel']} is not supported by the HLS kernels")
        constants = [("C", c), ("IN_H", h), ("IN_W", w), ("OUT_H", oh), ("OUT_W", ow), ("KERNEL", layer["kernel"])]
    else:
        constants = [("SIZE", _size(layer["in_shape"]))]
    return {"name": name, "op": op, "kernel": op, "bm": False, "typedefs": [("data_t", in_type), ("out_t", in_type)],
            "int_constants": [(k, int(v)) for k, v in constants], "out_type": in_type,
            "out_size": _size(layer["out_shape"]), "table_args": "", "tables": [],
            "pe": None, "partitions": [], "long_constants": [], "bool_constants": [], "table_list": "",
            "summary": f"{op} {'x'.join(map(str, layer['in_shape']))} -> {'x'.join(map(str, layer['out_shape']))}"}


def layer_pes(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """The PE count of each layer in the HLS backend (None for layers without PEs; not capped at the fan-in)."""
    return resolve_pe(net, pe, pe_layers)


def build_context(net: ir.QuantizedNet, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS,
                  pe: int = 1, pe_layers: dict | None = None) -> dict:
    """The whole template context: a flat list of layers, each with its config values and tables."""
    if not net.layers:
        raise BmhwError("the network has no layers: nothing to export")
    if net.is_mac:
        raise BmhwError("this is a classical MAC network (the MAC twin): the HLS backend implements BM layers; "
                        "export it with --target verilog")
    pes = layer_pes(net, pe, pe_layers)
    layers, buffer_type, previous = [], INPUT_TYPE, "input"
    for layer, name, layer_pe in zip(net.layers, c_names(net), pes):
        if layer["op"] in ir.BM_OPS:
            ctx = _bm_context(net, layer, buffer_type, name, layer_pe)
        elif layer["op"] in ir.ADDER_OPS:
            ctx = _adder_context(net, layer, buffer_type, name, layer_pe)
        elif layer["op"] in ir.BISE_OPS:
            ctx = _bise_context(net, layer, buffer_type, name, layer_pe)
        elif layer["op"] == "binarize":
            ctx = _binarize_context(layer, buffer_type, name)
        elif layer["op"] in ("maxpool2d", "flatten"):
            ctx = _plain_context(layer, buffer_type, name)
        else:
            raise BmhwError(f"layer {layer['name']}: the HLS backend has no kernel for operation {layer['op']!r}")
        ctx["in_buf"], ctx["out_buf"] = previous, f"{name}_out"
        layers.append(ctx)
        buffer_type, previous = ctx["out_type"], ctx["out_buf"]
    last = net.layers[-1]
    if net.is_bise:
        if last["op"] not in ir.BISE_OPS or not last["scores"] or \
                any(layer.get("scores") for layer in net.layers[:-1] if layer["op"] in ir.BISE_OPS):
            raise BmhwError("the last layer of a BiSE network must be its scores layer (and only the last); "
                            "re-create the .bmq with bmhw quantize")
    elif last["op"] not in ir.BM_OPS + ir.ADDER_OPS or last["relu"]:
        raise BmhwError("the last layer must be the logits BM or adder layer (no ReLU); re-create the .bmq with "
                        "bmhw quantize")
    summary = cycle_summary(net, pes, clock_ns)
    cycles = [{"layer": r["layer"], "pe": _cell(r["pe"]), "patches": _cell(r["patches"]), "folds": _cell(r["folds"]),
               "k": _cell(r["k"]), "cycles": r["cycles"]} for r in summary["rows"]]
    return {"layers": layers, "input_size": _size(net.input_shape), "input_type": INPUT_TYPE,
            "cycles": cycles, "cycle_total": summary["total"], "images_per_s": f"{summary['images_per_s']:.0f}",
            "pipeline_depth": PE_PIPELINE_DEPTH, "bise_depth": BISE_PIPELINE_DEPTH,
            # The README's family-specific parts (templates/hls/readme/); AdderNet networks share the BM text so far.
            "readme_family": "bise" if net.is_bise else "bm",
            "result_what": "class scores" if net.is_bise else "logits",
            "input_shape": "x".join(map(str, net.input_shape)), "result_type": layers[-1]["out_type"],
            "result_size": layers[-1]["out_size"], "result_layer": layers[-1]["name"],
            "part": part, "clock_ns": f"{clock_ns:g}", "source": str(net.meta.get("source", "unknown"))}


def _cell(value) -> str:
    return "" if value is None else str(value)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "hls")), autoescape=False,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True)


def render(net: ir.QuantizedNet, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS, pe: int = 1,
           pe_layers: dict | None = None) -> dict:
    """Every file of the project: relative path -> bytes."""
    context = build_context(net, part, clock_ns, pe, pe_layers)
    env = _environment()
    files = {
        "firmware/parameters.h": env.get_template("parameters.h.j2").render(context),
        "firmware/bmhw_net.h": env.get_template("bmhw_net.h.j2").render(context),
        "firmware/bmhw_net.cpp": env.get_template("bmhw_net.cpp.j2").render(context),
        "tb/bmhw_tb.cpp": env.get_template("bmhw_tb.cpp.j2").render(context),
        "run_hls.tcl": env.get_template("run_hls.tcl.j2").render(context),
        "README.md": env.get_template("README.md.j2").render(context),
    }
    weights = env.get_template("weights.h.j2")
    for layer in context["layers"]:
        if layer["tables"]:
            files[f"firmware/weights/{layer['name']}.h"] = weights.render(context, layer=layer)
    out = {path: text.encode() for path, text in files.items()}
    out[f"firmware/{KERNELS_HEADER}"] = (hls_dir() / KERNELS_HEADER).read_bytes()
    out["model.bmq"] = ir.dumps(net)
    return out


def export(net: ir.QuantizedNet, out_dir, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS, pe: int = 1,
           pe_layers: dict | None = None) -> Path:
    """Write the project to ``out_dir`` atomically (``bmhw.backends.project.write_project``). ``pe``: add-max
    PEs working at once in every BM layer; ``pe_layers``: per-layer overrides (layer name -> PEs); both
    capped at a layer's outputs."""
    return write_project(render(net, part, clock_ns, pe, pe_layers), out_dir, "HLS project", "build/hls")
