"""The HLS project of a network: the template context (a flat list of layer contexts from the family
modules, the cycle table), the rendered files and their atomic, deterministic export."""

from __future__ import annotations

from pathlib import Path

import jinja2

from bmhw import ir
from bmhw.backends.hls.bise import BISE_PIPELINE_DEPTH
from bmhw.backends.hls.common import GROUPED_PIPELINE_DEPTH, INPUT_TYPE, PE_PIPELINE_DEPTH, size
from bmhw.backends.hls.cycles import DEFAULT_CLOCK_NS, cycle_summary
from bmhw.backends.hls.layers import family_module, layer_module
from bmhw.backends.project import layer_names, resolve_pe, write_project
from bmhw.errors import BmhwError
from bmhw.ir.groups import is_grouped
from bmhw.resources import hls_dir, templates_dir

KERNELS_HEADER = "bmhw_layers.h"
# The kernels of BM layers with several maxima per output: only the projects with such a layer get (and include)
# it, so that every other project keeps its files byte for byte.
GROUPED_HEADER = "bmhw_grouped.h"
DEFAULT_PART = "xcu250-figd2104-2L-e"


def layer_pes(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """The PE count of each layer in the HLS backend (None for layers without PEs; not capped at the fan-in)."""
    return resolve_pe(net, pe, pe_layers)


def build_context(net: ir.QuantizedNet, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS,
                  pe: int = 1, pe_layers: dict | None = None) -> dict:
    """The whole template context: a flat list of layers, each with its config values and tables."""
    if not net.layers:
        raise BmhwError("the network has no layers: nothing to export")
    family = family_module(net)
    pes = layer_pes(net, pe, pe_layers)
    layers, buffer_type, previous = [], INPUT_TYPE, "input"
    for layer, name, layer_pe in zip(net.layers, layer_names(net), pes):
        ctx = layer_module(layer).context(net, layer, buffer_type, name, layer_pe)
        ctx["in_buf"], ctx["out_buf"] = previous, f"{name}_out"
        layers.append(ctx)
        buffer_type, previous = ctx["out_type"], ctx["out_buf"]
    family.check_last(net)
    summary = cycle_summary(net, pes, clock_ns)
    cycles = [{"layer": r["layer"], "pe": _cell(r["pe"]), "patches": _cell(r["patches"]), "folds": _cell(r["folds"]),
               "k": _cell(r["k"]), "cycles": r["cycles"]} for r in summary["rows"]]
    return {"layers": layers, "input_size": size(net.input_shape), "input_type": INPUT_TYPE,
            "cycles": cycles, "cycle_total": summary["total"], "images_per_s": f"{summary['images_per_s']:.0f}",
            "pipeline_depth": PE_PIPELINE_DEPTH, "bise_depth": BISE_PIPELINE_DEPTH,
            # The README's family-specific parts (templates/hls/readme/).
            "readme_family": family.README_PART, "result_what": family.RESULT_WHAT,
            "input_shape": "x".join(map(str, net.input_shape)), "result_type": layers[-1]["out_type"],
            "result_size": layers[-1]["out_size"], "result_layer": layers[-1]["name"],
            "part": part, "clock_ns": f"{clock_ns:g}", "source": str(net.meta.get("source", "unknown")),
            "grouped_header": GROUPED_HEADER if any(is_grouped(layer) for layer in net.bm_layers()) else None,
            "grouped_depth": GROUPED_PIPELINE_DEPTH}


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
    if context["grouped_header"]:
        out[f"firmware/{GROUPED_HEADER}"] = (hls_dir() / GROUPED_HEADER).read_bytes()
    out["model.bmq"] = ir.dumps(net)
    return out


def export(net: ir.QuantizedNet, out_dir, part: str = DEFAULT_PART, clock_ns: float = DEFAULT_CLOCK_NS, pe: int = 1,
           pe_layers: dict | None = None) -> Path:
    """Write the project to ``out_dir`` atomically (``bmhw.backends.project.write_project``). ``pe``: add-max
    PEs working at once in every BM layer; ``pe_layers``: per-layer overrides (layer name -> PEs); both
    capped at a layer's outputs."""
    return write_project(render(net, part, clock_ns, pe, pe_layers), out_dir, "HLS project", "build/hls")
