"""The cycle model of the Verilog project (docs/verilog.md, "Cycle model"), from the schedules of the RTL."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.project import layer_names
from bmhw.backends.verilog.common import size
from bmhw.backends.verilog.layers import family_module

DEFAULT_CLOCK_NS = 5.0
POOL_OVERHEAD = 4
ARGMAX_OVERHEAD = 2
OUTPUT_OVERHEAD = 1


def cycle_model(net: ir.QuantizedNet, pes: list) -> list[dict]:
    """Cycles per image of each block: input: one pixel per cycle; weighted layer: positions * folds * K +
    (outputs of the last fold) + its family's overhead (BM 11, a grouped BM layer 13 + its exp units' rows per
    group, MAC 8, adder 10, BiSE 8); max pooling: outputs
    * k^2 + 4; flatten and binarize: none (read in place, folded into the next layer); arg-max: classes + 2,
    and one cycle to raise out_valid."""
    rows = [{"layer": "input", "op": "stream", "pe": None, "positions": None, "folds": None, "k": None,
             "cycles": size(net.input_shape)}]
    for layer, name, pe in zip(net.layers, layer_names(net), pes):
        row = {"layer": name, "op": layer["op"], "pe": pe, "positions": None, "folds": None, "k": None}
        if ir.OPS[layer["op"]].weighted:
            positions = size(layer["out_shape"][1:]) if len(layer["out_shape"]) == 3 else 1
            k, o = int(layer["fan_in"]), int(layer["out_count"])
            folds = -(-o // pe)
            last_fold = o - (folds - 1) * pe
            overhead = family_module(layer).cycle_overhead(layer, pe)
            row.update(positions=positions, folds=folds, k=k, cycles=positions * folds * k + last_fold + overhead)
        elif layer["op"] == "maxpool2d":
            row["cycles"] = size(layer["out_shape"]) * int(layer["kernel"]) ** 2 + POOL_OVERHEAD
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
