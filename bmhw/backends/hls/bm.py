"""The HLS context of a 1.5-branch BM layer (docs/datapath.md, "The BM layer"): one ap_int type per signal
from the IR's proven ranges, the four ROM tables and the mirrored-output flags; kernel ``bmhw::bm_conv2d`` /
``bm_linear`` in hls/bmhw_layers.h. A layer with several maxima per output ("Several maxima per neuron") adds the
type of ``D``, the group bounds and the weight signs, and takes ``bm_grouped_conv2d`` / ``bm_grouped_linear`` of
hls/bmhw_grouped.h."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.ir.groups import group_starts, groups_of, is_grouped
from bmhw.backends.hls.common import (GROUPED_PIPELINE_DEPTH, PE_PIPELINE_DEPTH, ap_type, c_literal, check_input,
                                      fold_cycles, geometry, partitions, rom, rom_type, shapes_text, layer_context)
from bmhw.errors import BmhwError
from bmhw.ir.widths import MAX_WIDTH  # the kernels do their rounding shifts in 64-bit integers

SIGNALS = ("q_in", "LN", "W", "T", "M", "I", "r", "EXP", "E", "S", "S_CSUM", "C", "B", "Y", "q_out")


def signals(layer: dict) -> tuple:
    """The layer's signals: a grouped layer adds D, the signed sum of its pairs' exp terms."""
    return SIGNALS + ("D",) if is_grouped(layer) else SIGNALS


def types(layer: dict) -> dict:
    """The ap_int type of every signal, and ``acc`` (E - C + B, or D - C + B, with two guard bits)."""
    ranges, widths = layer["ranges"], layer["widths"]
    for signal in signals(layer):
        if widths[signal] > MAX_WIDTH:
            raise BmhwError(f"layer {layer['name']}: signal {signal} needs {widths[signal]} bits; the HLS kernels "
                            f"support at most {MAX_WIDTH}: re-quantize with fewer --exp-frac-bits or --guard-bits")
    out = {s: ap_type(*ranges[s], widths[s]) for s in signals(layer)}
    terms = ("E", "C", "B", "Y") + (("D",) if is_grouped(layer) else ())
    out["acc"] = f"ap_int<{max(widths[s] for s in terms) + 2}>"
    return out

# The README's parts for this family (templates/hls/readme/*_<part>.md.j2) and what the top streams out.
README_PART = "bm"
RESULT_WHAT = "logits"


def context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int) -> dict:
    signal_types = types(layer)
    check_input(name, in_type, signal_types["q_in"])
    ln, w, exp, bias = (net.table(layer, t) for t in ir.BM_TABLES)
    signs = net.signs(layer)
    neg = np.zeros(len(bias), dtype=np.int64) if signs is None else (signs < 0).astype(np.int64)
    constants = geometry(layer) + [("LN_SIZE", len(ln)), ("EXP_SIZE", len(exp)), ("F", layer["F"]),
                                   ("P", layer["P"]), ("G", layer["G"]), ("H", layer["H"]),
                                   ("OUT_SHIFT", int(layer["G"]) + int(layer["out_scale_exp"])),
                                   ("OUT_MAX", layer["out_max"] if layer["relu"] else 0), ("PE", pe)]
    out_type = signal_types["q_out"] if layer["relu"] else signal_types["Y"]
    typedefs = [(f"{s.lower()}_t", signal_types[s]) for s in signals(layer) if s != "q_out"]
    typedefs += [("acc_t", signal_types["acc"]), ("out_t", out_type)]
    typedefs += [(f"{s.lower()}_rom_t", rom_type(*layer["ranges"][s])) for s in ("LN", "W", "EXP", "B")]
    config = f"{name}_config::"
    ctx = layer_context(
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
    return add_groups(net, layer, ctx) if is_grouped(layer) else ctx


def add_groups(net: ir.QuantizedNet, layer: dict, ctx: dict) -> dict:
    """A layer with several maxima per output (kernels of hls/bmhw_grouped.h): N and SPLIT; the group bounds as one
    bit per input, 1 on the last of its group (the same for every output), after the other tables; with the sign
    split one bit per weight, 1 for sign -1, beside the log-weights and partitioned like them (the kernel's order)."""
    name, k, n = ctx["name"], int(layer["fan_in"]), groups_of(layer)
    split = bool(layer.get("split_sign", False))
    last = np.zeros(k, dtype=np.int64)
    last[np.asarray(group_starts(k, n)[1:]) - 1] = 1
    ctx["kernel"] = layer["op"].replace("bm_", "bm_grouped_")
    ctx["int_constants"].append(("GROUPS", n))
    ctx["bool_constants"].append(("SPLIT", split))
    ctx["tables"].append(rom("bool", f"{name}_group_last", last))
    ctx["table_list"] += ", group ends"
    if split:
        ctx["tables"].insert(2, rom(  # after the ln LUT and the log-weights
            "bool", f"{name}_wneg", (net.table(layer, "weight_sign") < 0).astype(np.int64)))
        ctx["partitions"] += partitions([f"{name}_wneg"], ctx["pe"])
        ctx["table_list"] += ", weight signs"
    split_text = " split by sign" if split else ""
    ctx["summary"] += f", {n} group{'s' if n > 1 else ''}{split_text}, D {layer['widths']['D']} bits"
    return ctx


def cycles(layer: dict, pe: int) -> dict:
    """The add-max loop at II=1 plus the pipeline depth per fold, and the ln-lookup loop of each patch; a grouped
    layer's loop also carries the pairs' exp terms into D, one stage deeper (docs/hls.md)."""
    depth = GROUPED_PIPELINE_DEPTH if is_grouped(layer) else PE_PIPELINE_DEPTH
    return fold_cycles(layer, pe, depth, lookup=True)


def check_last(net: ir.QuantizedNet) -> None:
    """The last layer gives the logits: a BM layer without ReLU."""
    last = net.layers[-1]
    if last["op"] not in ir.BM_OPS or last["relu"]:
        raise BmhwError("the last layer must be the logits BM or adder layer (no ReLU); re-create the .bmq with "
                        "bmhw quantize")
