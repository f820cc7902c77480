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

from bmhw import __version__, ir
from bmhw.backends.project import layer_names, resolve_pe, write_project  # noqa: F401 - callers use them here
from bmhw.errors import BmhwError
from bmhw.backends.verilog_plans import INPUT_BITS, _size, address_width, layer_plan

TOP = "bmhw_net"
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
