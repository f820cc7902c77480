"""Bit widths of every signal of a weighted layer (BM, classical MAC, adder, BiSE), derived in exact integer arithmetic
from its tables and code ranges (docs/datapath.md, "Widths"). NumPy only."""

from __future__ import annotations

import numpy as np

from bmhw.errors import BmhwError
from bmhw.ir.groups import group_starts, groups_of, is_grouped, pair_occupancy
from bmhw.ir.intmath import round_shift, width
from bmhw.ir.ops import OPS

# The golden model computes in 64-bit integers; keep one bit of headroom for intermediate sums.
MAX_WIDTH = 62


def signal_ranges(layer: dict, tables: dict) -> dict:
    """``signal -> (lo, hi)`` for one BM layer; ``tables``: ln_lut, log_weights, exp_lut, bias."""
    ln, w, exp, b = (np.asarray(tables[k]) for k in ("ln_lut", "log_weights", "exp_lut", "bias"))
    f, p, g, h, csum = (int(layer[k]) for k in ("F", "P", "G", "H", "csum"))
    k, q_in = int(layer["fan_in"]), int(layer["in_max"])
    r = {"q_in": (0, q_in), "LN": (int(ln.min()), int(ln.max())), "W": (int(w.min()), int(w.max())),
         "EXP": (int(exp.min()), int(exp.max())), "B": (int(b.min()), int(b.max()))}
    r["T"] = r["M"] = (r["LN"][0] + r["W"][0], r["LN"][1] + r["W"][1])
    r["I"] = (r["M"][0] >> f, r["M"][1] >> f)
    r["r"] = (0, (1 << f) - 1)
    r["E"] = (_exp_shifted(r["EXP"][0], p - r["I"][0] - g), _exp_shifted(r["EXP"][1], p - r["I"][1] - g))
    r["S"] = (0, k * q_in)
    r["S_CSUM"] = (min(0, k * q_in * csum), max(0, k * q_in * csum))
    r["C"] = (round_shift(r["S_CSUM"][0], h), round_shift(r["S_CSUM"][1], h))
    if is_grouped(layer) and width(*r["E"]) <= MAX_WIDTH:  # (a wider E is refused by infer_widths)
        r["D"] = _group_sum_range(layer, tables, r)
    terms = r.get("D", r["E"])  # the max term: one E, or the signed sum D of the groups' terms
    d = (terms[0] - r["C"][1], terms[1] - r["C"][0])  # E - C (or D - C)
    signs = set(np.asarray(tables["sign"]).tolist()) if "sign" in tables else {1}
    # Mirrored outputs (sign -1) take -(E - C): both ranges where both signs occur.
    d_lo = min([d[0]] * (1 in signs) + [-d[1]] * (-1 in signs))
    d_hi = max([d[1]] * (1 in signs) + [-d[0]] * (-1 in signs))
    r["Y"] = (d_lo + r["B"][0], d_hi + r["B"][1])
    r["q_out"] = (0, int(layer["out_max"])) if layer["relu"] else r["Y"]
    return r


def _exp_shifted(value: int, shift: int) -> int:
    """``round_shift(value, shift)`` of a non-negative int64 exp entry, with the shift bounded first: a right shift
    by 128 or more gives 0 as any longer one does, and a left shift by 64 already proves the signal too wide (a
    damaged table would otherwise have us build a number of 2^40 bits before refusing it)."""
    return round_shift(value, max(min(shift, 128), -64))


def _group_sum_range(layer: dict, tables: dict, r: dict) -> tuple:
    """The range of ``D``, the signed sum of a grouped layer's terms, and of every partial sum of it in any order: for
    each output, between minus the sum of its negative pairs' largest terms and the sum of its positive pairs'. A
    pair's maximum ``M`` lies in ``[min LN + w, max LN + w]``, ``w`` its largest log-weight, and ``E`` grows with
    ``M`` (docs/datapath.md, "Several maxima per neuron")."""
    f, p, g = (int(layer[k]) for k in ("F", "P", "G"))
    o, k = int(layer["out_count"]), int(layer["fan_in"])
    w = np.asarray(tables["log_weights"], dtype=np.int64).reshape(o, k)
    sign = tables.get("weight_sign") if layer.get("split_sign") else None
    positive, negative = pair_occupancy(layer, sign)
    starts = np.asarray(group_starts(k, groups_of(layer))[:-1])
    floor = np.int64(w.min())  # stands for "no weight of this sign" before the reduction; empty pairs are dropped
    ends = []
    for pair_sign, occupied in ((1, positive), (-1, negative)):
        chosen = w if sign is None else np.where(np.asarray(sign).reshape(o, k) == pair_sign, w, floor)
        top = np.maximum.reduceat(chosen, starts, axis=1)  # O x N: each pair's largest log-weight
        e_hi = round_shift(r["EXP"][1], p - ((r["LN"][1] + top) >> f) - g)
        ends.append(int(np.where(occupied, e_hi, 0).astype(object).sum(axis=1).max()))
    return (-ends[1], ends[0])


def mac_signal_ranges(layer: dict, tables: dict) -> dict:
    """``signal -> (lo, hi)`` for one classical MAC layer; ``tables``: weights, bias. The accumulator's
    bounds are exact per output channel: codes are non-negative, so its extremes put the largest code on
    the weights of one sign and zero on the others."""
    w, b = np.asarray(tables["weights"], dtype=object), np.asarray(tables["bias"], dtype=object)
    q_in = int(layer["in_max"])
    neg = np.array([sum(min(int(v), 0) for v in row) for row in w], dtype=object) * q_in
    pos = np.array([sum(max(int(v), 0) for v in row) for row in w], dtype=object) * q_in
    r = {"q_in": (0, q_in), "W": (int(w.min()), int(w.max())), "B": (int(b.min()), int(b.max()))}
    r["P"] = (min(0, q_in * r["W"][0]), max(0, q_in * r["W"][1]))
    r["ACC"] = (int(neg.min()), int(pos.max()))
    r["Y"] = (int((neg + b).min()), int((pos + b).max()))
    shift = int(layer["out_scale_exp"]) - int(layer["acc_scale_exp"])
    r["q_out"] = (0, int(layer["out_max"])) if layer["relu"] else r["Y"]
    if layer["relu"]:
        r["YR"] = (round_shift(r["Y"][0], shift), round_shift(r["Y"][1], shift))
    return r


def adder_signal_ranges(layer: dict, tables: dict) -> dict:
    """``signal -> (lo, hi)`` for one adder layer (docs/datapath.md, "The adder layer"); ``tables``: weights,
    scale, bias. ``ACC`` is bounded exactly per output: each ``|q - W[o, k]|`` over ``q`` in ``[0, Qin]`` lies
    between the distance from ``W[o, k]`` to ``[0, Qin]`` and the larger distance to an end."""
    q_in = int(layer["in_max"])
    w = [[int(v) for v in row] for row in np.asarray(tables["weights"]).tolist()]
    mul = [int(v) for v in np.asarray(tables["scale"]).reshape(-1).tolist()]
    b = [int(v) for v in np.asarray(tables["bias"]).reshape(-1).tolist()]
    flat = [v for row in w for v in row]
    acc_lo = [sum(max(0, -v, v - q_in) for v in row) for row in w]
    acc_hi = [sum(max(abs(v), abs(q_in - v)) for v in row) for row in w]
    prod = [(min(m * lo, m * hi), max(m * lo, m * hi)) for m, lo, hi in zip(mul, acc_lo, acc_hi)]
    y = [(bo - phi, bo - plo) for bo, (plo, phi) in zip(b, prod)]
    r = {"q_in": (0, q_in), "W": (min(flat), max(flat)), "D": (-max(flat), q_in - min(flat)),
         "ABS": (0, max(max(abs(v), abs(q_in - v)) for v in flat)),
         "ACC": (min(acc_lo), max(acc_hi)), "MUL": (min(mul), max(mul)), "B": (min(b), max(b)),
         "PROD": (min(p[0] for p in prod), max(p[1] for p in prod)),
         "Y": (min(v[0] for v in y), max(v[1] for v in y))}
    r["q_out"] = (0, int(layer["out_max"])) if layer["relu"] else r["Y"]
    if layer["relu"]:
        shift = int(layer["R"])
        r["YR"] = (round_shift(r["Y"][0], shift), round_shift(r["Y"][1], shift))
    return r


def bise_signal_ranges(layer: dict, tables: dict) -> dict:
    """``signal -> (lo, hi)`` for one BiSE layer (docs/datapath.md, "The BiSE layer"); ``tables``: se. Bits in; the
    count C of true literals up to the largest structuring element; out: C (the scores layer) or one bit."""
    size = int(np.asarray(tables["se"]).sum(axis=1).max())
    return {"x": (0, 1), "C": (0, size), "q_out": (0, size) if layer["scores"] else (0, 1)}


# The range derivation of each family, by family key (bmhw.ir.ops.FAMILIES).
SIGNAL_RANGES = {"bm": signal_ranges, "mac": mac_signal_ranges, "adder": adder_signal_ranges,
                 "bise": bise_signal_ranges}


def proven_ranges(layer: dict, tables: dict) -> dict:
    """``signal -> [lo, hi]`` of a weighted layer, proven from its tables and constants."""
    ranges = SIGNAL_RANGES[OPS[layer["op"]].family](layer, tables)
    return {name: [int(lo), int(hi)] for name, (lo, hi) in ranges.items()}


def infer_widths(layer: dict, tables: dict) -> tuple[dict, dict]:
    """Ranges and widths of every signal; a signal that needs more than MAX_WIDTH bits is an error."""
    ranges = proven_ranges(layer, tables)
    widths = {name: width(lo, hi) for name, (lo, hi) in ranges.items()}
    for name, bits in widths.items():
        if bits > MAX_WIDTH:
            lo, hi = ranges[name]
            raise BmhwError(f"layer {layer['name']}: signal {name} needs {bits} bits (range [{lo}, {hi}]), more than "
                            f"the {MAX_WIDTH} the datapath allows; lower "
                            + ("--scale-bits" if OPS[layer["op"]].family == "adder"
                               else "--exp-frac-bits, --log-frac-bits or --guard-bits"))
    return ranges, widths
