"""The HLS context of an AdderNet layer (docs/datapath.md, "The adder layer"): one ap_int type per signal from
the IR's proven ranges and the three ROM tables; kernel ``bmhw::adder_conv2d`` / ``adder_linear``."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.hls.common import (PE_PIPELINE_DEPTH, ap_type, check_input, fold_cycles, geometry, partitions, rom,
                                      rom_type, shapes_text, layer_context)
from bmhw.errors import BmhwError

SIGNALS = ("q_in", "W", "D", "ABS", "ACC", "MUL", "PROD", "B", "Y", "q_out")

# The README's parts for this family (templates/hls/readme/*_<part>.md.j2) and what the top streams out.
README_PART = "adder"
RESULT_WHAT = "logits"


def context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int) -> dict:
    ranges, widths = layer["ranges"], layer["widths"]
    types = {s: ap_type(*ranges[s], widths[s]) for s in SIGNALS}
    check_input(name, in_type, types["q_in"])
    w, mul, bias = (net.table(layer, t) for t in ir.ADDER_TABLES)
    constants = geometry(layer) + [("OUT_SHIFT", int(layer["R"])),
                                   ("OUT_MAX", layer["out_max"] if layer["relu"] else 0), ("PE", pe)]
    out_type = types["q_out"] if layer["relu"] else types["Y"]
    typedefs = [(f"{s.lower()}_t", types[s]) for s in SIGNALS if s != "q_out"]
    typedefs += [("out_t", out_type)]
    typedefs += [(f"{s.lower()}_rom_t", rom_type(*ranges[s])) for s in ("W", "MUL", "B")]
    config = f"{name}_config::"
    return layer_context(
        layer, name, pe, typedefs=typedefs, int_constants=[(k, int(v)) for k, v in constants],
        bool_constants=[("RELU", layer["relu"])], table_list="templates W, multipliers MUL, offsets B",
        out_type=out_type, partitions=partitions([f"{name}_w"], pe),
        tables=[rom(config + "w_rom_t", f"{name}_w", w), rom(config + "mul_rom_t", f"{name}_mul", mul),
                rom(config + "b_rom_t", f"{name}_bias", bias)],
        summary=f"{shapes_text(layer)}, K={layer['fan_in']}, ACC {widths['ACC']} bits, MUL {widths['MUL']} bits, "
                f"Y {widths['Y']} bits")


def cycles(layer: dict, pe: int) -> dict:
    """The L1 loop at II=1 per fold plus the pipeline depth, and a convolution's gather loop."""
    return fold_cycles(layer, pe, PE_PIPELINE_DEPTH, lookup=ir.OPS[layer["op"]].conv)


def check_last(net: ir.QuantizedNet) -> None:
    """The last layer gives the logits: an adder layer without ReLU."""
    last = net.layers[-1]
    if last["op"] not in ir.ADDER_OPS or last["relu"]:
        raise BmhwError("the last layer must be the logits BM or adder layer (no ReLU); re-create the .bmq with "
                        "bmhw quantize")
