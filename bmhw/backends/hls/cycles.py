"""The cycle model of the HLS project (docs/hls.md, "Cycle model"): each layer's row from its family module,
the layers one after another. A model, not a synthesis report."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.hls.layers import layer_module
from bmhw.backends.project import layer_names

DEFAULT_CLOCK_NS = 5.0


def cycle_model(net: ir.QuantizedNet, pes: list) -> list[dict]:
    """Expected cycles per image of each layer for the given PE counts: a row per layer with ``layer``,
    ``op``, ``pe``, ``patches``, ``folds``, ``k`` (None for layers without PEs) and ``cycles``."""
    return [{"layer": name, "op": layer["op"], **layer_module(layer).cycles(layer, pe)}
            for layer, name, pe in zip(net.layers, layer_names(net), pes)]


def cycle_summary(net: ir.QuantizedNet, pes: list, clock_ns: float = DEFAULT_CLOCK_NS) -> dict:
    """The per-layer rows, the total cycles per image (layers one after another) and images/s at the clock."""
    rows = cycle_model(net, pes)
    total = sum(row["cycles"] for row in rows)
    return {"rows": rows, "total": total, "images_per_s": 1e9 / (total * clock_ns)}
