"""The Verilog plan of a BM layer with several maxima per output (docs/verilog.md, "Grouped BM layers"): how many
exp units convert the groups' maxima so that the PEs never stall, the parameters ``bmhw_bm_group_layer`` adds to
``bmhw_bm_layer``'s, and its weight ROM (log-weights, sign bits) and group-end ROM. A layer of one max never comes here,
so its files keep their bytes. NumPy only."""

from __future__ import annotations

import numpy as np

from bmhw.ir.groups import group_starts, groups_of
from bmhw.backends.verilog.common import signed_width

MODULE = "bmhw_bm_group_layer"
# Blocks only projects with a grouped layer carry (the others' files stay as they were).
LIBRARY = ("bmhw_addmax_group_pe.v", "bmhw_bm_group_layer.v", "bmhw_group_exp.v")
EXTRA_OVERHEAD = 2  # + ROWS: cycles beyond bmhw_bm_layer's 11 (the exp units move before the drain, docs/verilog.md)


def exp_lanes(layer: dict, pe: int) -> dict:
    """The exp units of a grouped layer with ``pe`` PEs. After each group every PE has SPE slots (its pairs: two
    with the sign split, one without, one also when every group is a single input, whose one weight has one
    sign: MERGE). CLUSTERS clusters of PPL PEs share LPC exp units each and take ROWS = PPL * SPE / LPC cycles per
    group; ROWS <= the shortest group (floor(K / N) steps), so a cluster is free again before the PEs' next
    group ends: no stall at any PE setting. LPC = 2 only where a group of one input meets the split beside longer
    groups (two slots, one cycle)."""
    k, n = int(layer["fan_in"]), groups_of(layer)
    split = bool(layer.get("split_sign", False))
    merge = split and n == k
    spe = 2 if split and not merge else 1
    shortest = k // n
    if shortest >= spe:
        lpc, per_unit = 1, shortest // spe
        clusters = -(-pe // per_unit)
        ppl = -(-pe // clusters)
        clusters = -(-pe // ppl)  # the last cluster is never empty
    else:
        lpc, ppl, clusters = 2, 1, pe
    return {"SPLIT": int(split), "MERGE": int(merge), "SPE": spe, "LPC": lpc, "PPL": ppl, "CLUSTERS": clusters,
            "ROWS": ppl * spe // lpc}


def exp_units(layer: dict, pe: int) -> int:
    lanes = exp_lanes(layer, pe)
    return lanes["CLUSTERS"] * lanes["LPC"]


def cycle_overhead(layer: dict, pe: int) -> int:
    """Cycles a grouped layer adds to bmhw_bm_layer's overhead: its D is complete ROWS + 5 cycles after the fold's
    last step's maxima are held, against the 4-cycle exp unit that follows the drain in the layer of one max."""
    return EXTRA_OVERHEAD + exp_lanes(layer, pe)["ROWS"]


def group_ends(layer: dict) -> np.ndarray:
    """1 at the steps k that end a group (b_(j+1) - 1), else 0: K entries."""
    k = int(layer["fan_in"])
    ends = np.zeros(k, dtype=np.int64)
    ends[np.asarray(group_starts(k, groups_of(layer))[1:]) - 1] = 1
    return ends


def weight_words(w: np.ndarray, sign: np.ndarray | None, pe: int, wt_w: int) -> list:
    """The weight ROM of a grouped layer at address fold * K + k: the PE log-weights (PE 0 in the low bits, as in
    ``common.weight_words``), then with the split one sign bit per PE (1: sigma = -1). Outputs past O read zero
    weights of sign +1. (The group ends, the same in every fold, have their own K-entry ROM: ``group_ends``.)"""
    o, k = w.shape
    folds = -(-o // pe)
    w_pad = np.zeros((folds * pe, k), dtype=np.int64)
    w_pad[:o] = w
    neg = np.zeros((folds * pe, k), dtype=np.int64)
    if sign is not None:
        neg[:o] = np.asarray(sign).reshape(o, k) < 0
    sign_bits = pe if sign is not None else 0
    words = []
    for fold in range(folds):
        rows = slice(fold * pe, (fold + 1) * pe)
        block, nblock = w_pad[rows] & ((1 << wt_w) - 1), neg[rows]
        for step in range(k):
            word = 0
            for lane in reversed(range(sign_bits)):
                word = (word << 1) | int(nblock[lane, step])
            for lane in reversed(range(pe)):
                word = (word << wt_w) | int(block[lane, step])
            words.append(word)
    return words


def params(layer: dict, pe: int) -> dict:
    """What bmhw_bm_group_layer takes beyond bmhw_bm_layer's parameters: the exp units and D's width."""
    return {**exp_lanes(layer, pe), "D_W": signed_width(*layer["ranges"]["D"])}


def word_bits(layer: dict, pe: int, wt_w: int) -> int:
    return pe * wt_w + (pe if layer.get("split_sign") else 0)
