"""The Verilog project of a network: the template context (buffers, blocks and their parameters from the
family plans), the ROM files, ``design.json`` for the benches, and the atomic, deterministic export."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from bmhw import __version__, ir
from bmhw.backends.project import layer_names, resolve_pe, write_project
from bmhw.backends.verilog.common import INPUT_BITS, address_width, size
from bmhw.backends.verilog.cycles import DEFAULT_CLOCK_NS, cycle_summary
from bmhw.backends.verilog import bm_groups
from bmhw.backends.verilog.layers import FAMILY_MODULES, family_module, grouped_network, layer_plan
from bmhw.errors import BmhwError
from bmhw.resources import templates_dir

TOP = "bmhw_net"
CYCLE_COUNTER_BITS = 32


def library_dir() -> Path:
    return templates_dir() / "verilog" / "lib"


def library_files(family: str | None = None, grouped: bool = False) -> list[str]:
    """The hand-written modules a project of ``family`` carries, in a fixed order (dependencies first): every
    block but those another family owns (``OWN_LIBRARY``) and, without a grouped BM layer (``grouped``), the grouped
    layer's blocks, so that adding a family or a variant leaves the other projects unchanged."""
    others = {name for key, module in FAMILY_MODULES.items() if key != family for name in module.OWN_LIBRARY}
    if not grouped:
        others.update(bm_groups.LIBRARY)
    return sorted(p.name for p in library_dir().glob("*.v") if p.name not in others)


def _check_network(net: ir.QuantizedNet) -> None:
    if not net.layers:
        raise BmhwError("the network has no layers: nothing to export")
    for layer in net.layers:
        if layer["op"] not in ir.OPS:
            raise BmhwError(f"layer {layer['name']}: the Verilog backend has no block for operation {layer['op']!r}")
    family_module(net.family or "bm").check_network(net)
    if net.num_classes < 2:
        raise BmhwError(f"the network has {net.num_classes} output; the arg-max needs at least 2 classes")
    for layer in net.layers:
        if layer["op"] == "maxpool2d" and int(layer["stride"]) != int(layer["kernel"]):
            raise BmhwError(f"layer {layer['name']}: max pooling with stride {layer['stride']} != kernel "
                            f"{layer['kernel']} is not supported by the Verilog backend")


def layer_pes(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """The PE count of each layer in the Verilog backend (None for layers without PEs)."""
    return resolve_pe(net, pe, pe_layers, cap_at_fan_in=True)


def _pool_block(layer: dict, current: dict) -> tuple[dict, str, int]:
    c, ih, iw = layer["in_shape"]
    _, oh, ow = layer["out_shape"]
    params = {"C": c, "IN_H": ih, "IN_W": iw, "OUT_H": oh, "OUT_W": ow, "KERNEL": layer["kernel"],
              "D_W": current["width"], "IN_AW": current["aw"], "OUT_AW": address_width(size(layer["out_shape"]))}
    return params, "bmhw_maxpool", current["width"]


def build_context(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None,
                  clock_ns: float = DEFAULT_CLOCK_NS) -> tuple[dict, dict]:
    """The template context (buffers, blocks and their parameters) and the ROM files."""
    _check_network(net)
    pes = layer_pes(net, pe, pe_layers)
    in_size = size(net.input_shape)
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
        if ir.OPS[op].weighted:
            plan = layer_plan(net, layer, name, layer_pe, threshold)
            threshold = None
            if plan["params"]["Q_W"] != current["width"]:
                raise BmhwError(f"layer {layer['name']}: its input codes are {plan['params']['Q_W']} bits but the "
                                f"previous buffer holds {current['width']}; re-create the .bmq with bmhw quantize")
            mems.update(plan["mems"])
            params, module, out_bits = plan["params"], plan["module"], plan["out_bits"]
        else:
            params, module, out_bits = _pool_block(layer, current)
        depth = size(layer["out_shape"])
        # Logits (no ReLU) and BiSE class scores are read by the arg-max as signed numbers.
        signed = ir.OPS[op].weighted and family_module(layer).signed_output(layer)
        out_buf = {"name": name, "layer": str(layer["name"]), "width": out_bits, "depth": depth,
                   "aw": address_width(depth), "signed": signed}
        buffers.append(out_buf)
        blocks.append({"module": module, "inst": f"u_{name}", "name": name, "in_buf": current["name"],
                       "out_buf": name, "params": [(key, verilog_value(value)) for key, value in params.items()]})
        current = out_buf
    summary = cycle_summary(net, pes, clock_ns)
    context = {"top": TOP, "version": __version__, "source": str(net.meta.get("source", "unknown")),
               "input_size": in_size, "input_aw": buffers[0]["aw"], "input_bits": INPUT_BITS,
               "buffers": buffers, "blocks": blocks, "classes": net.num_classes, "logit_bits": current["width"],
               "class_bits": address_width(net.num_classes), "logits_buf": current["name"],
               "counter_bits": CYCLE_COUNTER_BITS, "pes": pes, "cycles": summary, "clock_ns": clock_ns,
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
            "sources": [f"rtl/lib/{name}" for name in library_files(net.family, grouped_network(net))]
            + [f"rtl/{TOP}.v"],
            "buffers": [{key: b[key] for key in ("name", "layer", "width", "depth", "signed")}
                        for b in context["buffers"]],
            "pe": {name: pe for name, pe in zip(layer_names(net), context["pes"]) if pe is not None},
            "cycles": {"total": context["cycles"]["total"],
                       "blocks": [{"block": r["layer"], "cycles": r["cycles"]} for r in context["cycles"]["rows"]]}}


def _environment() -> jinja2.Environment:
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
    for name in library_files(net.family, grouped_network(net)):
        files[f"rtl/lib/{name}"] = (library_dir() / name).read_bytes()
    return files


def export(net: ir.QuantizedNet, out_dir, pe: int = 1, pe_layers: dict | None = None,
           clock_ns: float = DEFAULT_CLOCK_NS) -> Path:
    """Write the Verilog project to ``out_dir`` atomically. ``pe``: add-max PEs working at once in every BM
    layer; ``pe_layers``: per-layer overrides; both capped at a layer's outputs and at its fan-in."""
    return write_project(render(net, pe, pe_layers, clock_ns), out_dir, "Verilog project", "build/rtl")
