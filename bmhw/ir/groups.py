"""The groups of a BM layer with several maxima per neuron (docs/datapath.md, "Several maxima per neuron").

A layer with ``groups`` = N splits the K inputs of every output (in patch order: channel, kernel row, kernel
column) into N contiguous groups: group ``j`` holds ``b_j <= k < b_(j+1)`` with ``b_j = floor(j K / N)``, the
split of the float layer (``bmhw.nn.groups``). A ``split_sign`` layer carries a sign per weight
(``weight_sign``, +1 / -1) and reduces each group's positive and negative weights apart: up to 2N maxima per
output, each a *pair* (group, sign). A layer without these fields is one group of one sign, today's neuron.
Pure Python and NumPy: the IR, the golden model and every backend read the same split from here.
"""

from __future__ import annotations

import numpy as np


def group_starts(fan_in: int, groups: int) -> tuple:
    """``(b_0 = 0, b_1, ..., b_N = K)``: the bounds of ``groups`` contiguous groups of nearly equal size."""
    if not 1 <= groups <= fan_in:
        raise ValueError(f"groups must lie in 1..{fan_in}, got {groups}")
    return tuple((j * fan_in) // groups for j in range(groups + 1))


def groups_of(layer: dict) -> int:
    """N, the number of groups of a BM layer (1 where the file has no ``groups`` field)."""
    return int(layer.get("groups", 1))


def is_grouped(layer: dict) -> bool:
    """A layer with several maxima per output: more than one group, or its weights split by sign."""
    return groups_of(layer) > 1 or bool(layer.get("split_sign", False))


def pair_occupancy(layer: dict, weight_sign: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(positive, negative)``: O x N booleans, whether output ``o``'s group ``j`` holds at least one weight of that
    sign. Without a sign split every group is one positive pair; an empty pair is no maximum and adds nothing."""
    o, k = int(layer["out_count"]), int(layer["fan_in"])
    starts = np.asarray(group_starts(k, groups_of(layer))[:-1])
    if weight_sign is None:
        return np.ones((o, len(starts)), dtype=bool), np.zeros((o, len(starts)), dtype=bool)
    sign = np.asarray(weight_sign).reshape(o, k)
    positive = np.maximum.reduceat((sign > 0).astype(np.int8), starts, axis=1) > 0
    negative = np.maximum.reduceat((sign < 0).astype(np.int8), starts, axis=1) > 0
    return positive, negative

