"""The NumPy golden model against a scalar re-implementation written from docs/datapath.md alone.

``ref_load`` / ``ref_forward`` below are the second implementation that docs/datapath.md promises:
they read a ``.bmq`` file with ``zipfile``, ``json`` and ``numpy.load`` only (nothing from bmhw, so the
format is proven readable without it) and compute one image at a time with Python integers, in plain
loops over outputs and patch elements, following the numbered steps of "The 1.5-branch BM layer".
``ref_ranges`` recomputes every signal's range and width from the tables per the "Widths" section.

The tests compare, layer by layer and bit for bit, the golden model (``bmhw.golden.forward``) with
this reference on random small networks (hypothesis: shapes, seeds, precisions, inputs including the
extreme codes) and on the example MNIST LeNet with images of the built-in sample.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from torch import nn
from golden_specs import EDGE_SPECS, GROUPED_IDS, GROUPED_SPECS, grouped_specs, mac_specs, net_specs, quantize_spec

# ---------------------------------------------------------------------------------------------------
# The reference: docs/datapath.md, transcribed. No bmhw import, no NumPy arithmetic.
# ---------------------------------------------------------------------------------------------------

SIGNALS = ("q_in", "LN", "W", "T", "M", "I", "r", "EXP", "E", "S", "S_CSUM", "C", "B", "Y", "q_out")
BM_TABLES = ("ln_lut", "log_weights", "exp_lut", "bias")


def floor_div(a: int, n: int) -> int:
    """floor_div(a, 2^n): floor division by 2^n (an arithmetic right shift)."""
    assert n >= 0
    return a // (1 << n)


def round_shift(a: int, n: int) -> int:
    """n > 0: floor_div(a + 2^(n-1), 2^n); n = 0: a; n < 0: a * 2^(-n)."""
    if n > 0:
        return floor_div(a + (1 << (n - 1)), n)
    if n == 0:
        return a
    return a * (1 << (-n))


def clamp(a: int, lo: int, hi: int) -> int:
    return min(max(a, lo), hi)


def width(lo: int, hi: int) -> int:
    """The smallest width holding [lo, hi]: unsigned if lo >= 0, else two's complement."""
    if lo >= 0:
        n = 1
        while not hi < (1 << n):
            n += 1
        return n
    n = 1
    while not (-(1 << (n - 1)) <= lo and hi < (1 << (n - 1))):
        n += 1
    return n


def ref_load(path) -> tuple[dict, dict]:
    """Read a .bmq file: (model.json as a dict, {"LAYER/TABLE": nested lists of Python ints})."""
    with zipfile.ZipFile(path) as archive:
        model = json.loads(archive.read("model.json").decode("utf-8"))
        tables = {}
        for name in archive.namelist():
            if name.endswith(".npy"):
                array = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
                assert array.dtype == np.int64, f"{name}: dtype {array.dtype}, the spec says int64"
                tables[name[: -len(".npy")]] = array.tolist()
    assert model["format"] == "bmhw-bmq" and model["version"] == 1
    return model, tables


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _bm_tables(layer: dict, tables: dict) -> dict:
    name, K, O = layer["name"], layer["fan_in"], layer["out_count"]
    t = {key: tables[f"{name}/{key}"] for key in BM_TABLES}
    assert len(t["ln_lut"]) == layer["in_max"] + 1, f"{name}: ln_lut length"
    assert len(t["log_weights"]) == O and all(len(row) == K for row in t["log_weights"]), f"{name}: log_weights"
    assert len(t["exp_lut"]) == 1 << layer["F"], f"{name}: exp_lut length"
    assert len(t["bias"]) == O, f"{name}: bias length"
    # Optional: the per-output signs of a layer with mirrored outputs (absent: all +1).
    t["sign"] = [int(s) for s in tables[f"{name}/sign"]] if f"{name}/sign" in tables else [1] * O
    assert len(t["sign"]) == O and set(t["sign"]) <= {1, -1}, f"{name}: sign"
    # Several maxima ("Several maxima per neuron"): N groups, and with split_sign a sign per weight (else all +1).
    t["N"] = layer.get("groups", 1)
    assert 1 <= t["N"] <= K, f"{name}: groups"
    if layer.get("split_sign", False):
        t["sigma"] = tables[f"{name}/weight_sign"]
        assert len(t["sigma"]) == O and all(len(row) == K and set(row) <= {1, -1} for row in t["sigma"])
    else:
        t["sigma"] = [[1] * K for _ in range(O)]
    t["bounds"] = [(j * K) // t["N"] for j in range(t["N"] + 1)]  # b_j = floor(j K / N)
    return t


def _pairs(t: dict, o: int) -> list:
    """The non-empty pairs (j, sigma) of output o, each with its inputs k."""
    pairs = []
    for j in range(t["N"]):
        for sigma in (1, -1):
            ks = [k for k in range(t["bounds"][j], t["bounds"][j + 1]) if t["sigma"][o][k] == sigma]
            if ks:
                pairs.append((sigma, ks))
    return pairs


def _exp_of(layer: dict, t: dict, M: int) -> int:
    """Step 2: E from M."""
    F, P, G = layer["F"], layer["P"], layer["G"]
    I = floor_div(M, F)
    r = M - I * (1 << F)
    assert 0 <= r < (1 << F)
    return round_shift(t["exp_lut"][r], P - I - G)


def _bm_patch(layer: dict, t: dict, patch: list) -> list:
    """Steps 1-5 of the spec for one input patch q_1..q_K: the O outputs."""
    G, H = layer["G"], layer["H"]
    CSUM, Qin = layer["csum"], layer["in_max"]
    LN, Wt, B = t["ln_lut"], t["log_weights"], t["bias"]
    for q in patch:
        assert 0 <= q <= Qin, f"{layer['name']}: input code {q} outside [0, {Qin}]"
    # 3. input sum and correction, shared by all outputs of the patch
    S = 0
    for q in patch:
        S += q
    C = round_shift(S * CSUM, H)
    outputs = []
    for o in range(layer["out_count"]):
        # 1. add-max, one maximum per non-empty pair (one pair of all K inputs in a layer of one max), and
        # 2. exp per pair; D, the sum of the pairs' signed terms (= E for one max)
        D = 0
        for sigma, ks in _pairs(t, o):
            M = None
            for k in ks:
                T = LN[patch[k]] + Wt[o][k]
                if M is None or T > M:
                    M = T
            D += sigma * _exp_of(layer, t, M)
        # 4. accumulate (a mirrored output negates D - C)
        Y = t["sign"][o] * (D - C) + B[o]
        # 5. output
        if layer["relu"]:
            outputs.append(clamp(round_shift(Y, G + layer["out_scale_exp"]), 0, layer["out_max"]))
        else:
            outputs.append(Y)
    return outputs


def _mac_tables(layer: dict, tables: dict) -> dict:
    name, K, O = layer["name"], layer["fan_in"], layer["out_count"]
    t = {key: tables[f"{name}/{key}"] for key in ("weights", "bias")}
    assert len(t["weights"]) == O and all(len(row) == K for row in t["weights"]), f"{name}: weights"
    assert len(t["bias"]) == O, f"{name}: bias length"
    top = (1 << (layer["weight_bits"] - 1)) - 1
    assert all(-top <= w <= top for row in t["weights"] for w in row), f"{name}: weight outside +-{top}"
    return t


def _mac_patch(layer: dict, t: dict, patch: list) -> list:
    """Steps 1-3 of "The classical MAC layer" for one input patch: the O outputs."""
    for q in patch:
        assert 0 <= q <= layer["in_max"], f"{layer['name']}: input code {q} outside [0, {layer['in_max']}]"
    outputs = []
    for o in range(layer["out_count"]):
        ACC = 0
        for k in range(layer["fan_in"]):
            ACC += patch[k] * t["weights"][o][k]
        Y = ACC + t["bias"][o]
        if layer["relu"]:
            outputs.append(clamp(round_shift(Y, layer["out_scale_exp"] - layer["acc_scale_exp"]), 0,
                                 layer["out_max"]))
        else:
            outputs.append(Y)
    return outputs


def _adder_tables(layer: dict, tables: dict) -> dict:
    name, K, O = layer["name"], layer["fan_in"], layer["out_count"]
    t = {key: tables[f"{name}/{key}"] for key in ("weights", "scale", "bias")}
    assert len(t["weights"]) == O and all(len(row) == K for row in t["weights"]), f"{name}: weights"
    assert len(t["scale"]) == O and len(t["bias"]) == O, f"{name}: scale / bias length"
    top = (1 << (layer["scale_bits"] - 1)) - 1
    assert all(-top <= m <= top for m in t["scale"]), f"{name}: MUL outside {layer['scale_bits']} signed bits"
    return t


def _adder_patch(layer: dict, t: dict, patch: list) -> list:
    """Steps 1-3 of "The adder layer" for one input patch: the O outputs."""
    for q in patch:
        assert 0 <= q <= layer["in_max"], f"{layer['name']}: input code {q} outside [0, {layer['in_max']}]"
    outputs = []
    for o in range(layer["out_count"]):
        ACC = 0
        for k in range(layer["fan_in"]):
            ACC += abs(patch[k] - t["weights"][o][k])
        Y = t["bias"][o] - t["scale"][o] * ACC
        if layer["relu"]:
            outputs.append(clamp(round_shift(Y, layer["R"]), 0, layer["out_max"]))
        else:
            outputs.append(Y)
    return outputs


def _bm_conv2d(layer: dict, t: dict, x: list, patch_fn=_bm_patch) -> list:
    C, H, W = layer["in_shape"]
    O, Ho, Wo = layer["out_shape"]
    kh, kw = layer["kernel"]
    sh, sw = layer["stride"]
    ph, pw = layer["padding"]
    assert Ho == (H + 2 * ph - kh) // sh + 1 and Wo == (W + 2 * pw - kw) // sw + 1, layer["name"]
    assert layer["fan_in"] == C * kh * kw and layer["out_count"] == O, layer["name"]
    out = [0] * (O * Ho * Wo)
    for oy in range(Ho):
        for ox in range(Wo):
            patch = []
            for c in range(C):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                        inside = 0 <= iy < H and 0 <= ix < W
                        patch.append(x[(c * H + iy) * W + ix] if inside else 0)  # padding reads code 0
            values = patch_fn(layer, t, patch)
            for o in range(O):
                out[(o * Ho + oy) * Wo + ox] = values[o]
    return out


def _maxpool2d(layer: dict, x: list) -> list:
    C, H, W = layer["in_shape"]
    k, s = layer["kernel"], layer["stride"]
    assert k == s, "the spec's pooling has stride k"
    Co, Ho, Wo = layer["out_shape"]
    assert Co == C and Ho == (H - k) // k + 1 and Wo == (W - k) // k + 1, layer["name"]
    out = []
    for c in range(C):
        for oy in range(Ho):
            for ox in range(Wo):
                best = None
                for dy in range(k):
                    for dx in range(k):
                        value = x[(c * H + oy * s + dy) * W + ox * s + dx]
                        if best is None or value > best:
                            best = value
                out.append(best)
    return out


def ref_forward(model: dict, tables: dict, image) -> dict:
    """One image (nested lists or array, (C, H, W) of codes) through the network: {layer name: (flat list
    of Python ints, out_shape)} for every layer, in execution order."""
    shape = model["input"]["shape"]
    x = [int(v) for v in np.asarray(image).reshape(-1).tolist()]
    assert len(x) == _prod(shape)
    results = {}
    for layer in model["layers"]:
        op = layer["op"]
        assert len(x) == _prod(layer["in_shape"]), f"{layer['name']}: input size"
        if op == "bm_conv2d":
            x = _bm_conv2d(layer, _bm_tables(layer, tables), x)
        elif op == "bm_linear":
            assert layer["fan_in"] == len(x), layer["name"]
            x = _bm_patch(layer, _bm_tables(layer, tables), x)
        elif op == "mac_conv2d":
            x = _bm_conv2d(layer, _mac_tables(layer, tables), x, _mac_patch)
        elif op == "mac_linear":
            assert layer["fan_in"] == len(x), layer["name"]
            x = _mac_patch(layer, _mac_tables(layer, tables), x)
        elif op == "adder_conv2d":
            x = _bm_conv2d(layer, _adder_tables(layer, tables), x, _adder_patch)
        elif op == "adder_linear":
            assert layer["fan_in"] == len(x), layer["name"]
            x = _adder_patch(layer, _adder_tables(layer, tables), x)
        elif op == "maxpool2d":
            x = _maxpool2d(layer, x)
        elif op == "flatten":
            x = list(x)  # (C, H, W) is already flat in C, H, W order
        else:
            raise AssertionError(f"unknown op {op!r}")
        assert len(x) == _prod(layer["out_shape"]), f"{layer['name']}: output size"
        results[layer["name"]] = (x, tuple(layer["out_shape"]))
    return results


def ref_ranges(layer: dict, tables: dict) -> dict:
    """Every signal's [lo, hi] for one BM layer, from the tables and code ranges ("Widths")."""
    t = _bm_tables(layer, tables)
    F, P, G, H = layer["F"], layer["P"], layer["G"], layer["H"]
    K, Qin, CSUM = layer["fan_in"], layer["in_max"], layer["csum"]
    w_flat = [w for row in t["log_weights"] for w in row]
    R = {"q_in": [0, Qin]}
    R["LN"] = [min(t["ln_lut"]), max(t["ln_lut"])]
    R["W"] = [min(w_flat), max(w_flat)]
    R["EXP"] = [min(t["exp_lut"]), max(t["exp_lut"])]
    R["B"] = [min(t["bias"]), max(t["bias"])]
    R["T"] = [R["LN"][0] + R["W"][0], R["LN"][1] + R["W"][1]]
    R["M"] = list(R["T"])
    R["I"] = [floor_div(R["M"][0], F), floor_div(R["M"][1], F)]
    R["r"] = [0, (1 << F) - 1]
    R["E"] = [round_shift(R["EXP"][0], P - R["I"][0] - G), round_shift(R["EXP"][1], P - R["I"][1] - G)]
    R["S"] = [0, K * Qin]
    R["S_CSUM"] = [0, K * Qin * CSUM]
    R["C"] = [0, round_shift(K * Qin * CSUM, H)]
    terms = R["E"]
    if layer.get("groups", 1) > 1 or layer.get("split_sign", False):
        # D: between minus the largest sum of the negative pairs' bounds and the largest of the positive pairs'
        pos, neg = [], []
        for o in range(layer["out_count"]):
            ends = {1: 0, -1: 0}
            for sigma, ks in _pairs(t, o):
                top = max(t["log_weights"][o][k] for k in ks)
                ends[sigma] += round_shift(R["EXP"][1], P - floor_div(R["LN"][1] + top, F) - G)
            pos.append(ends[1])
            neg.append(ends[-1])
        R["D"] = terms = [-max(neg), max(pos)]
    lows, highs = [], []
    for sgn in set(t["sign"]):  # the extremes of sgn (D - C) over D and C in their ranges
        ends = [sgn * (e - c) for e in terms for c in R["C"]]
        lows.append(min(ends))
        highs.append(max(ends))
    R["Y"] = [min(lows) + R["B"][0], max(highs) + R["B"][1]]
    R["q_out"] = [0, layer["out_max"]] if layer["relu"] else list(R["Y"])
    return R


def ref_mac_ranges(layer: dict, tables: dict) -> dict:
    """Every signal's [lo, hi] for one MAC layer ("The classical MAC layer", Widths)."""
    t = _mac_tables(layer, tables)
    Qin = layer["in_max"]
    w_flat = [w for row in t["weights"] for w in row]
    R = {"q_in": [0, Qin], "W": [min(w_flat), max(w_flat)], "B": [min(t["bias"]), max(t["bias"])]}
    R["P"] = [min(0, Qin * R["W"][0]), max(0, Qin * R["W"][1])]
    lows = [Qin * sum(min(w, 0) for w in row) for row in t["weights"]]
    highs = [Qin * sum(max(w, 0) for w in row) for row in t["weights"]]
    R["ACC"] = [min(lows), max(highs)]
    R["Y"] = [min(lo + b for lo, b in zip(lows, t["bias"])), max(hi + b for hi, b in zip(highs, t["bias"]))]
    if layer["relu"]:
        shift = layer["out_scale_exp"] - layer["acc_scale_exp"]
        R["YR"] = [round_shift(R["Y"][0], shift), round_shift(R["Y"][1], shift)]
        R["q_out"] = [0, layer["out_max"]]
    else:
        R["q_out"] = list(R["Y"])
    return R


def ref_adder_ranges(layer: dict, tables: dict) -> dict:
    """Every signal's [lo, hi] for one adder layer ("The adder layer", Widths)."""
    t = _adder_tables(layer, tables)
    Qin = layer["in_max"]
    w_flat = [w for row in t["weights"] for w in row]
    R = {"q_in": [0, Qin], "W": [min(w_flat), max(w_flat)], "MUL": [min(t["scale"]), max(t["scale"])],
         "B": [min(t["bias"]), max(t["bias"])]}
    R["D"] = [-max(w_flat), Qin - min(w_flat)]
    far = [max(abs(w), abs(Qin - w)) for w in w_flat]  # |q - w| is largest at an end of [0, Qin]
    R["ABS"] = [0, max(far)]
    lows, highs, prods, ys = [], [], [], []
    for o, row in enumerate(t["weights"]):
        lo = sum(-w if w < 0 else w - Qin if w > Qin else 0 for w in row)  # distance from w to [0, Qin]
        hi = sum(max(abs(w), abs(Qin - w)) for w in row)
        lows.append(lo)
        highs.append(hi)
        m = t["scale"][o]
        p = sorted([m * lo, m * hi])
        prods.append(p)
        ys.append([t["bias"][o] - p[1], t["bias"][o] - p[0]])
    R["ACC"] = [min(lows), max(highs)]
    R["PROD"] = [min(p[0] for p in prods), max(p[1] for p in prods)]
    R["Y"] = [min(y[0] for y in ys), max(y[1] for y in ys)]
    if layer["relu"]:
        R["YR"] = [round_shift(R["Y"][0], layer["R"]), round_shift(R["Y"][1], layer["R"])]
        R["q_out"] = [0, layer["out_max"]]
    else:
        R["q_out"] = list(R["Y"])
    return R


# ---------------------------------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------------------------------


WEIGHT_OP_NAMES = ("bm_conv2d", "bm_linear", "mac_conv2d", "mac_linear", "adder_conv2d", "adder_linear")


def first_mismatch(a: np.ndarray, b: np.ndarray):
    diff = np.argwhere(a != b)
    return tuple(int(i) for i in diff[0]) if len(diff) else None


def compare_layers(model: dict, tables: dict, golden_all: dict, codes: np.ndarray, label: str = "") -> None:
    """Golden (return_all) against the reference, image by image, layer by layer."""
    for n in range(codes.shape[0]):
        ref = ref_forward(model, tables, codes[n])
        for layer in model["layers"]:
            name = layer["name"]
            assert name in golden_all, f"{label}golden forward(return_all=True) lacks layer {name!r}"
            got = np.asarray(golden_all[name])
            values, shape = ref[name]
            assert got.dtype == np.int64, f"{label}layer {name}: golden dtype {got.dtype}, expected int64"
            assert got.shape == (codes.shape[0], *shape), (
                f"{label}layer {name}: golden shape {got.shape}, expected {(codes.shape[0], *shape)}")
            want = np.array(values, dtype=object).reshape(shape)
            have = got[n].astype(object)
            if not np.array_equal(have, want):
                idx = first_mismatch(have, want)
                raise AssertionError(
                    f"{label}layer {name} ({layer['op']}), image {n}: first mismatch at index {idx}: "
                    f"golden {have[idx]} != reference {want[idx]} "
                    f"({int((have != want).sum())} of {want.size} values differ)")


def check_ranges(model: dict, tables: dict, net, label: str = "") -> None:
    """IR ranges/widths (in the file and on the in-memory net) against the spec's derivation."""
    for layer in model["layers"]:
        if layer["op"] not in WEIGHT_OP_NAMES:
            continue
        name = layer["name"]
        want = (ref_mac_ranges(layer, tables) if layer["op"].startswith("mac") else ref_adder_ranges(layer, tables)
                if layer["op"].startswith("adder") else ref_ranges(layer, tables))
        signals = tuple(want)
        assert set(layer["ranges"]) == set(signals), f"{label}layer {name}: range signals {sorted(layer['ranges'])}"
        assert set(layer["widths"]) == set(signals), f"{label}layer {name}: width signals {sorted(layer['widths'])}"
        for signal in signals:
            lo, hi = want[signal]
            assert lo <= hi, f"{label}layer {name}: reference range of {signal} is empty [{lo}, {hi}]"
            assert list(layer["ranges"][signal]) == [lo, hi], (
                f"{label}layer {name}, signal {signal}: IR range {layer['ranges'][signal]}, spec gives [{lo}, {hi}]")
            assert layer["widths"][signal] == width(lo, hi), (
                f"{label}layer {name}, signal {signal}: IR width {layer['widths'][signal]}, spec gives "
                f"{width(lo, hi)} for [{lo}, {hi}]")
            assert width(lo, hi) <= 62, f"{label}layer {name}, signal {signal}: {width(lo, hi)} bits > 62"
    # The in-memory QuantizedNet says the same as its file.
    for mem, disk in zip(net.layers, model["layers"]):
        assert json.loads(json.dumps(mem, default=_plain)) == disk, f"{label}layer {disk['name']}: in-memory IR differs from the file"


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def check_outputs_in_range(model: dict, golden_all: dict, label: str = "") -> None:
    """Every layer's outputs lie in the code range (hidden) or the Y range (logits)."""
    for layer in model["layers"]:
        got = np.asarray(golden_all[layer["name"]])
        if layer["op"] in WEIGHT_OP_NAMES:
            lo, hi = layer["ranges"]["q_out"]
        else:
            lo, hi = 0, None
        assert got.size == 0 or got.min() >= lo, f"{label}layer {layer['name']}: output {got.min()} < {lo}"
        if hi is not None:
            assert got.size == 0 or got.max() <= hi, f"{label}layer {layer['name']}: output {got.max()} > {hi}"


# ---------------------------------------------------------------------------------------------------
# Random networks
# ---------------------------------------------------------------------------------------------------


def _run_spec(spec: dict) -> None:
    from bmhw import golden

    label = f"spec {spec}: "
    with tempfile.TemporaryDirectory() as tmp:
        _, net, path, codes = quantize_spec(spec, Path(tmp))
        model, tables = ref_load(path)
        from bmhw.ir import dumps, load_bmq

        assert dumps(net) == path.read_bytes(), f"{label}dumps(net) differs from the saved file"
        loaded = load_bmq(path)
    golden_all = golden.forward(net, codes, return_all=True)
    compare_layers(model, tables, golden_all, codes, label)
    reloaded = golden.forward(loaded, codes, return_all=True)
    for name in golden_all:
        assert np.array_equal(np.asarray(reloaded[name]), np.asarray(golden_all[name])), (
            f"{label}layer {name}: golden on load_bmq(file) differs from golden on the in-memory net")
    check_ranges(model, tables, net, label)
    check_outputs_in_range(model, golden_all, label)
    logits = golden.forward(net, codes)
    last = model["layers"][-1]["name"]
    assert np.array_equal(np.asarray(logits), np.asarray(golden_all[last])), f"{label}logits != last layer output"


@pytest.mark.parametrize("spec", EDGE_SPECS, ids=["fanin1-1x1", "stride2-pad-pool", "all-padding", "signed"])
def test_edge_networks_match_reference(spec):
    _run_spec(spec)


@pytest.mark.parametrize("spec", EDGE_SPECS, ids=["fanin1-1x1", "stride2-pad-pool", "all-padding", "signed"])
def test_edge_mac_twins_match_reference(spec):
    _run_spec({**spec, "classical": True, "weight_bits": 8})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=mac_specs())
def test_random_mac_twins_match_reference(spec):
    _run_spec(spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=net_specs())
def test_random_networks_match_reference(spec):
    _run_spec(spec)


@pytest.mark.parametrize("spec", GROUPED_SPECS, ids=GROUPED_IDS)
def test_grouped_networks_match_reference(spec):
    _run_spec(spec)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=grouped_specs())
def test_random_grouped_networks_match_reference(spec):
    _run_spec(spec)


def test_one_group_is_the_one_max_layer(tmp_path):
    """N = 1 without a split written out (groups 1, split_sign false, no weight_sign) computes the layer of one max."""
    from bmhw import golden
    from bmhw.ir import QuantizedNet

    _, net, _, codes = quantize_spec(EDGE_SPECS[1], tmp_path)
    layers = [dict(layer, groups=1, split_sign=False) if layer["op"].startswith("bm_") else layer
              for layer in net.layers]
    grouped = QuantizedNet(net.input_shape, net.input_scale, layers, net.arrays, net.meta)
    want, got = golden.forward(net, codes, return_all=True), golden.forward(grouped, codes, return_all=True)
    assert all(np.array_equal(want[name], got[name]) for name in want)


# ---------------------------------------------------------------------------------------------------
# The example MNIST LeNet
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_lenet(tmp_path_factory):
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize
    from bmhw.resources import examples_dir

    images, _ = load_mnist_sample()
    model = load_checkpoint(examples_dir() / "lenet_bm15_mnist.pt").model
    net = quantize(model, images[:200])
    path = tmp_path_factory.mktemp("lenet") / "lenet.bmq"
    save_bmq(net, path)
    return net, path, images


def test_mnist_lenet_matches_reference(mnist_lenet):
    from bmhw import golden

    net, path, images = mnist_lenet
    model, tables = ref_load(path)
    codes = np.concatenate([images[[0, 250]], images[499:500]]).astype(np.int64)  # 2 calibration images, 1 not
    golden_all = golden.forward(net, codes, return_all=True)
    compare_layers(model, tables, golden_all, codes, "lenet: ")
    check_ranges(model, tables, net, "lenet: ")
    check_outputs_in_range(model, golden_all, "lenet: ")
    ops = [layer["op"] for layer in model["layers"]]
    assert ops.count("bm_conv2d") == 2 and ops.count("bm_linear") == 3, ops
    assert model["input"]["shape"] == [1, 28, 28] and model["input"]["scale"] == [1, 255]


def test_mnist_lenet_extreme_images(mnist_lenet):
    from bmhw import golden

    net, path, _ = mnist_lenet
    model, tables = ref_load(path)
    codes = np.stack([np.zeros((1, 28, 28), np.int64), np.full((1, 28, 28), 255, np.int64)])
    compare_layers(model, tables, golden.forward(net, codes, return_all=True), codes, "lenet extremes: ")


def test_width_of_a_single_negative_power_of_two():
    """A one-weight layer whose log-weight is exactly -32 (F = 4): W's range is [-32, -32], which the
    spec's rule ("the smallest n with -2^(n-1) <= lo and hi < 2^(n-1)") fits in 6 bits."""
    from bmhw.nn import BMLinear

    torch.manual_seed(0)
    layer = BMLinear(1, 1)
    with torch.no_grad():
        layer.v.fill_(-2 * math.log(2))  # 2^4 * v / ln 2 = -32
    model = nn.Sequential(nn.Flatten(), layer).eval()
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize

    net = quantize(model, np.full((4, 1, 1, 1), 200, np.uint8), log_frac_bits=4)
    with tempfile.TemporaryDirectory() as tmp:
        save_bmq(net, Path(tmp) / "one.bmq")
        model_json, tables = ref_load(Path(tmp) / "one.bmq")
    bm = [layer for layer in model_json["layers"] if layer["op"] == "bm_linear"][0]
    assert tables[f"{bm['name']}/log_weights"] == [[-32]]
    assert bm["ranges"]["W"] == [-32, -32]
    assert width(-32, -32) == 6
    check_ranges(model_json, tables, net)


def test_comparison_names_layer_and_index():
    """A single changed value in the golden outputs is caught, with the layer and index in the message."""
    from bmhw import golden

    spec = EDGE_SPECS[1]
    with tempfile.TemporaryDirectory() as tmp:
        _, net, path, codes = quantize_spec(spec, Path(tmp))
        model, tables = ref_load(path)
    golden_all = {name: np.array(values) for name, values in golden.forward(net, codes, return_all=True).items()}
    name = model["layers"][0]["name"]
    golden_all[name][1, 2, 0, 1] += 1
    with pytest.raises(AssertionError, match=rf"layer {name} .*image 1: first mismatch at index \(2, 0, 1\)"):
        compare_layers(model, tables, golden_all, codes)


def test_reference_helpers():
    """round_shift and width exactly as the spec defines them, on hand-checked values."""
    assert [round_shift(a, 1) for a in (-3, -2, -1, 0, 1, 2, 3)] == [-1, -1, 0, 0, 1, 1, 2]  # halves go up
    assert round_shift(5, 0) == 5 and round_shift(-5, -3) == -40 and round_shift(6, 2) == 2
    assert floor_div(-1, 4) == -1 and floor_div(-16, 4) == -1 and floor_div(15, 4) == 0
    assert width(0, 0) == 1 and width(0, 1) == 1 and width(0, 2) == 2 and width(0, 255) == 8
    assert width(-1, -1) == 1 and width(-32, -32) == 6 and width(-33, -32) == 7
    assert width(-1, 0) == 1 and width(-128, 127) == 8 and width(-129, 0) == 9 and width(-1, 128) == 9


# ---------------------------------------------------------------------------------------------------
# The adder layer (AdderNet): random IRs built directly, golden against the reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "linear"])
def test_random_adder_networks_match_reference(seed, conv):
    from adder_nets import random_adder_net, random_codes

    from bmhw import golden
    from bmhw.ir import save_bmq

    net = random_adder_net(seed, conv)
    codes = random_codes(net, seed)
    with tempfile.TemporaryDirectory() as tmp:
        save_bmq(net, Path(tmp) / "adder.bmq")
        model, tables = ref_load(Path(tmp) / "adder.bmq")
        from bmhw.ir import load_bmq

        loaded = load_bmq(Path(tmp) / "adder.bmq")
    golden_all = golden.forward(loaded, codes, return_all=True)
    compare_layers(model, tables, golden_all, codes, f"adder {seed}: ")
    check_ranges(model, tables, net, f"adder {seed}: ")
    check_outputs_in_range(model, golden_all, f"adder {seed}: ")
    # The tests' nets have what the spec allows and the hardware must handle: templates outside [0, Qin] and
    # negative multipliers.
    for layer in model["layers"]:
        if layer["op"].startswith("adder"):
            w = tables[f"{layer['name']}/weights"]
            assert min(map(min, w)) < 0 and max(map(max, w)) > layer["in_max"]
            assert min(tables[f"{layer['name']}/scale"]) < 0


def test_adder_comparison_catches_one_off():
    """A golden that is off by one in one ACC is caught by the reference comparison."""
    from adder_nets import random_adder_net, random_codes

    from bmhw import golden

    net = random_adder_net(3, False)
    codes = random_codes(net, 3)
    with tempfile.TemporaryDirectory() as tmp:
        from bmhw.ir import save_bmq

        save_bmq(net, Path(tmp) / "adder.bmq")
        model, tables = ref_load(Path(tmp) / "adder.bmq")
    golden_all = {k: np.array(v) for k, v in golden.forward(net, codes, return_all=True).items()}
    golden_all["fc2"][0, 0] += 1
    with pytest.raises(AssertionError, match=r"layer fc2 .*image 0"):
        compare_layers(model, tables, golden_all, codes)
