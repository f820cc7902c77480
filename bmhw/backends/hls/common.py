"""What every layer context of the HLS backend shares: the C types of a signal or a ROM, table rows as C
literals, the shape constants of a layer kernel, and the structured pieces the templates print (ROM tables,
array partitions). NumPy only."""

from __future__ import annotations

import numpy as np

from bmhw.errors import BmhwError
from bmhw.ir import OPS


VALUES_PER_LINE = 16
# Image bytes: the network input codes are in [0, 255] (docs/datapath.md, "Activations").
INPUT_TYPE = "ap_uint<8>"
# Hidden BiSE activations are single bits (docs/datapath.md, "The BiSE layer": x in [0, 1]).
BIT_TYPE = "ap_uint<1>"
# Cycle model (docs/hls.md): the fill and drain of one fold's pipelined add-max (or L1) loop plus the exp lookup,
# the shift and the requantization that follow it. A model constant, not a synthesis result.
PE_PIPELINE_DEPTH = 8
# A grouped BM layer (several maxima per output) does the exp lookup and shift of each pair inside its pipelined loop
# and adds the terms into D there: one adder stage more per fold (docs/hls.md, "Several maxima per output").
GROUPED_PIPELINE_DEPTH = PE_PIPELINE_DEPTH + 1


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


def rows(values: np.ndarray) -> list[str]:
    """A 1-D table as lines of comma-separated C literals (the last without a trailing comma)."""
    text = [c_literal(v) for v in np.asarray(values).ravel().tolist()]
    lines = [", ".join(text[i:i + VALUES_PER_LINE]) for i in range(0, len(text), VALUES_PER_LINE)]
    return [line + ("," if n < len(lines) - 1 else "") for n, line in enumerate(lines)]


def rom(c_type: str, name: str, values: np.ndarray) -> dict:
    """A ROM table for weights.h.j2: ``static const <type> <name>[d0][d1] = {...}``; a 2-D table is printed one
    brace-enclosed row per output."""
    values = np.asarray(values)
    if values.ndim == 1:
        return {"type": c_type, "name": name, "dims": [len(values)], "rows": rows(values), "matrix": []}
    matrix = [{"rows": rows(row), "last": o == values.shape[0] - 1} for o, row in enumerate(values)]
    return {"type": c_type, "name": name, "dims": list(values.shape), "rows": [], "matrix": matrix}


def partitions(tables: list, pe: int) -> list[dict]:
    """Cyclic partitions of the ``tables`` (by name) by ``pe`` on their first dimension, so that PE lanes read
    at once; none at one PE."""
    return [{"variable": name, "factor": pe, "dim": 1} for name in tables] if pe > 1 else []


def size(shape) -> int:
    return int(np.prod(shape))


def geometry(layer: dict) -> list:
    """The shape constants every layer kernel takes (a linear layer is a 1 x 1 convolution of a 1 x 1 image)."""
    conv = OPS[layer["op"]].conv
    in_shape = list(layer["in_shape"]) if conv else [1, 1, size(layer["in_shape"])]
    out_shape = list(layer["out_shape"]) if conv else [int(layer["out_count"]), 1, 1]
    kh, kw = layer["kernel"] if conv else (1, 1)
    sh, sw = layer["stride"] if conv else (1, 1)
    ph, pw = layer["padding"] if conv else (0, 0)
    return [("IN_C", in_shape[0]), ("IN_H", in_shape[1]), ("IN_W", in_shape[2]), ("O", layer["out_count"]),
            ("OUT_H", out_shape[1]), ("OUT_W", out_shape[2]), ("K", layer["fan_in"]), ("KH", kh), ("KW", kw),
            ("SH", sh), ("SW", sw), ("PH", ph), ("PW", pw)]


def shapes_text(layer: dict) -> str:
    """``op CxHxW -> CxHxW``: how a layer's summary line starts."""
    return f"{layer['op']} {'x'.join(map(str, layer['in_shape']))} -> {'x'.join(map(str, layer['out_shape']))}"


def check_input(name: str, in_type: str, ir_type: str) -> None:
    if ir_type != in_type:
        raise BmhwError(f"layer {name}: its input codes are {in_type} but the IR gives q_in {ir_type}; "
                        "the .bmq file is inconsistent: re-create it with bmhw quantize")


def layer_context(layer: dict, name: str, pe: int | None, **entries) -> dict:
    """The entries every layer's context has, with ``entries`` (typedefs, constants, tables, ...)."""
    return {"name": name, "op": layer["op"], "kernel": layer["op"], "long_constants": [], "bool_constants": [],
            "out_size": size(layer["out_shape"]), "pe": pe, **entries}


def fold_cycles(layer: dict, pe: int, depth: int, lookup: bool) -> dict:
    """A weighted layer's cycle model row: ``patches * folds * (K + depth)`` (its loop at II=1 over each fold)
    plus ``patches * K`` where the layer has a per-patch loop before it (``lookup``: a BM layer's ln lookups,
    a convolution's gather)."""
    patches = size(layer["out_shape"][1:]) if OPS[layer["op"]].conv else 1
    k, o = int(layer["fan_in"]), int(layer["out_count"])
    folds = -(-o // pe)
    return {"pe": pe, "patches": patches, "folds": folds, "k": k,
            "cycles": patches * folds * (k + depth) + (patches * k if lookup else 0)}
