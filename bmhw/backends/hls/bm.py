"""The HLS context of a 1.5-branch BM layer (docs/datapath.md, "The BM layer"): one ap_int type per signal
from the IR's proven ranges, the four ROM tables and the mirrored-output flags; kernel ``bmhw::bm_conv2d`` /
``bm_linear`` in hls/bmhw_layers.h."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.ir.groups import refuse_grouped_layer
from bmhw.backends.hls.common import (PE_PIPELINE_DEPTH, ap_type, c_literal, check_input, fold_cycles, geometry,
                                      partitions, rom, rom_type, shapes_text, layer_context)
from bmhw.errors import BmhwError
from bmhw.ir.widths import MAX_WIDTH  # the kernels do their rounding shifts in 64-bit integers

SIGNALS = ("q_in", "LN", "W", "T", "M", "I", "r", "EXP", "E", "S", "S_CSUM", "C", "B", "Y", "q_out")


def types(layer: dict) -> dict:
    """The ap_int type of every signal, and ``acc`` (E - C + B with two guard bits)."""
    ranges, widths = layer["ranges"], layer["widths"]
    for signal in SIGNALS:
        if widths[signal] > MAX_WIDTH:
            raise BmhwError(f"layer {layer['name']}: signal {signal} needs {widths[signal]} bits; the HLS kernels "
                            f"support at most {MAX_WIDTH}: re-quantize with fewer --exp-frac-bits or --guard-bits")
    out = {s: ap_type(*ranges[s], widths[s]) for s in SIGNALS}
    out["acc"] = f"ap_int<{max(widths[s] for s in ('E', 'C', 'B', 'Y')) + 2}>"
    return out

# The README's parts for this family (templates/hls/readme/*_<part>.md.j2) and what the top streams out.
README_PART = "bm"
RESULT_WHAT = "logits"


def context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int) -> dict:
    signal_types = types(layer)
    refuse_grouped_layer(layer, "the HLS backend")
    check_input(name, in_type, signal_types["q_in"])
    ln, w, exp, bias = (net.table(layer, t) for t in ir.BM_TABLES)
    signs = net.signs(layer)
    neg = np.zeros(len(bias), dtype=np.int64) if signs is None else (signs < 0).astype(np.int64)
    constants = geometry(layer) + [("LN_SIZE", len(ln)), ("EXP_SIZE", len(exp)), ("F", layer["F"]),
                                   ("P", layer["P"]), ("G", layer["G"]), ("H", layer["H"]),
                                   ("OUT_SHIFT", int(layer["G"]) + int(layer["out_scale_exp"])),
                                   ("OUT_MAX", layer["out_max"] if layer["relu"] else 0), ("PE", pe)]
    out_type = signal_types["q_out"] if layer["relu"] else signal_types["Y"]
    typedefs = [(f"{s.lower()}_t", signal_types[s]) for s in SIGNALS if s != "q_out"]
    typedefs += [("acc_t", signal_types["acc"]), ("out_t", out_type)]
    typedefs += [(f"{s.lower()}_rom_t", rom_type(*layer["ranges"][s])) for s in ("LN", "W", "EXP", "B")]
    config = f"{name}_config::"
    return layer_context(
        layer, name, pe, typedefs=typedefs, int_constants=[(k, int(v)) for k, v in constants],
        long_constants=[("CSUM", c_literal(layer["csum"]))], bool_constants=[("RELU", layer["relu"])],
        table_list="ln LUT, log-weights, exp LUT, bias", out_type=out_type,
        partitions=partitions([f"{name}_w"], pe),
        tables=[rom(config + "ln_rom_t", f"{name}_ln_lut", ln), rom(config + "w_rom_t", f"{name}_w", w),
                rom(config + "exp_rom_t", f"{name}_exp_lut", exp), rom(config + "b_rom_t", f"{name}_bias", bias),
                # 1 where the output is mirrored (Y = -(E - C) + B): docs/datapath.md
                rom("bool", f"{name}_neg", neg)],
        summary=f"{shapes_text(layer)}, K={layer['fan_in']}, PE sum T {layer['widths']['T']} bits, "
                f"Y {layer['widths']['Y']} bits")


def cycles(layer: dict, pe: int) -> dict:
    """The add-max loop at II=1 plus the pipeline depth per fold, and the ln-lookup loop of each patch."""
    return fold_cycles(layer, pe, PE_PIPELINE_DEPTH, lookup=True)


def check_last(net: ir.QuantizedNet) -> None:
    """The last layer gives the logits: a BM layer without ReLU."""
    last = net.layers[-1]
    if last["op"] not in ir.BM_OPS or last["relu"]:
        raise BmhwError("the last layer must be the logits BM or adder layer (no ReLU); re-create the .bmq with "
                        "bmhw quantize")
