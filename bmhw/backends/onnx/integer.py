"""The quantized network as an ONNX graph of integer operators: a third executor of the datapath.

Every step of docs/datapath.md becomes standard ONNX operators on int64 tensors (the operator mapping
is tabled in docs/onnx.md); onnxruntime then computes the network, and the result must equal the golden
model bit for bit. This writer is derived from docs/datapath.md alone: it does not call, or share code
with, ``bmhw.golden`` or ``bmhw.ir.intmath``, so that a mistake in one of them cannot hide in the other.
It reads the IR (``bmhw.ir.QuantizedNet``) and uses NumPy and onnx only, never torch.

The graph takes ``codes`` (int64, N x C x H x W: the image bytes, 0 .. 255) and returns ``logits``
(int64, N x classes: the last layer's ``Y``), then, unless ``layer_outputs`` is off, every layer's
output under the layer's name, as the golden model's ``forward(..., return_all=True)`` gives them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from bmhw import ir
from bmhw.ir.groups import group_starts, groups_of, is_grouped
from bmhw.backends.onnx.graph import Graph, save_model
from bmhw.errors import BmhwError

INPUT = "codes"
LOGITS = "logits"
KIND = "integer"
# The datapath's widths stay within 62 bits (docs/datapath.md, "Widths"), and so do its shift amounts.
MAX_SHIFT = 62
# The masked log-weight of a grouped layer: an input outside a pair (or a padded slot) adds this instead of W[o, k].
# Every LN lies in [-2^61, 2^61) (62 bits), so LN + FLOOR < -2^61 <= every T, and it never overflows int64.
FLOOR = -(1 << 62)


class _IntGraph(Graph):
    """Integer helpers on top of :class:`Graph`: the rounding and shifts of docs/datapath.md."""

    def floor_div_pow2(self, x: str, n: int, hint: str) -> str:
        """floor_div(x, 2^n) for any sign of x: ``(x - Mod(x, 2^n)) / 2^n``. ONNX ``Mod`` with fmod=0 takes
        the divisor's sign (0 <= Mod < 2^n here), so the difference is a multiple of 2^n and ``Div``, which
        truncates, divides it exactly."""
        if n == 0:
            return x
        d = self.i64(1 << n, f"two_pow_{n}")
        rem = self.op("Mod", [x, d], f"{hint}_mod", fmod=0)
        return self.op("Div", [self.op("Sub", [x, rem], f"{hint}_sub"), d], hint)

    def round_shift(self, x: str, n: int, hint: str) -> str:
        """round_shift(x, n) for a constant n: n > 0 divides by 2^n rounding halves up, n < 0 multiplies."""
        n = int(n)
        if abs(n) > MAX_SHIFT:
            raise BmhwError(f"{hint}: a shift by {n} bits is beyond the datapath's {MAX_SHIFT}; re-quantize")
        if n > 0:
            half = self.op("Add", [x, self.i64(1 << (n - 1), f"two_pow_{n - 1}")], f"{hint}_half")
            return self.floor_div_pow2(half, n, hint)
        if n < 0:
            return self.op("Mul", [x, self.i64(1 << -n, f"two_pow_{-n}")], hint)
        return x

    def pow2(self, n: str, hint: str) -> str:
        """2^n for an int64 tensor n in [0, 62]: ``1 << n`` by BitShift, which ONNX defines on unsigned types."""
        shift = self.op("Cast", [n], f"{hint}_u64", to=TensorProto.UINT64)
        one = self.const(1, np.uint64, "one_u64")
        return self.op("Cast", [self.op("BitShift", [one, shift], f"{hint}_shl", direction="LEFT")], hint,
                       to=TensorProto.INT64)

    def round_shift_by(self, a: str, n: str, hint: str) -> str:
        """round_shift(a, n) with a shift amount n per element, for 0 <= a < 2^62 (the exp table's entries).

        The right shift by ``min(max(n, 0), 62)`` is ``floor_div(a + 2^(n-1), 2^n)``, the left shift by
        ``min(max(-n, 0), 62)`` a multiplication; where n > 62 the exact result is 0 (a < 2^62 <= 2^(n-1)),
        which a ``Where`` puts in."""
        zero, top = self.i64(0, "zero"), self.i64(MAX_SHIFT, "max_shift")
        right = self.op("Clip", [n, zero, top], f"{hint}_right")
        left = self.op("Clip", [self.op("Neg", [n], f"{hint}_neg"), zero, top], f"{hint}_left")
        divisor = self.pow2(right, f"{hint}_divisor")
        half = self.op("Div", [divisor, self.i64(2, "two")], f"{hint}_halfstep")  # 2^(n-1), or 0 when n <= 0
        num = self.op("Add", [a, half], f"{hint}_rounded")
        rem = self.op("Mod", [num, divisor], f"{hint}_mod", fmod=0)
        quotient = self.op("Div", [self.op("Sub", [num, rem], f"{hint}_sub"), divisor], f"{hint}_quotient")
        shifted = self.op("Mul", [quotient, self.pow2(left, f"{hint}_factor")], f"{hint}_shifted")
        beyond = self.op("Greater", [n, top], f"{hint}_beyond")
        return self.op("Where", [beyond, zero, shifted], hint)

    def clamp(self, x: str, lo: int, hi: int, hint: str) -> str:
        return self.op("Clip", [x, self.i64(lo, f"c{lo}"), self.i64(hi, f"c{hi}")], hint)


def _patches(g: _IntGraph, x: str, layer: dict) -> str:
    """The patches of a convolution layer, (N, L, K): channel, kernel row, kernel column; the padding is code 0."""
    patches, out_hw = g.patches(x, layer["in_shape"], layer["kernel"], layer["stride"], layer["padding"],
                                layer["name"])
    if list(out_hw) != list(layer["out_shape"][1:]):
        raise BmhwError(f"layer {layer['name']}: its out_shape {layer['out_shape']} does not follow from its input "
                        "and kernel")
    return patches


def _exp(g: _IntGraph, net, layer: dict, m: str, hint: str) -> str:
    """Step 2, the exp unit, on maxima M of any shape: r = M mod 2^F (0 <= r < 2^F), I = floor_div(M, 2^F),
    E = round_shift(EXP[r], P - I - G)."""
    name = layer["name"]
    f, p, gg = (int(layer[k]) for k in ("F", "P", "G"))
    r = g.op("Mod", [m, g.i64(1 << f, f"two_pow_{f}")], f"{hint}r", fmod=0)
    i = g.op("Div", [g.op("Sub", [m, r], f"{hint}M_minus_r"), g.i64(1 << f, f"two_pow_{f}")], f"{hint}I")
    exp_r = g.op("Gather", [g.i64(net.table(layer, "exp_lut"), f"{name}_exp_lut"), r], f"{hint}EXP", axis=0)
    shift = g.op("Sub", [g.i64(p - gg, f"{name}_P_minus_G"), i], f"{hint}exp_shift")
    return g.round_shift_by(exp_r, shift, f"{hint}E")


def pair_tables(net, layer: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The constant tables of a grouped layer's pairs (docs/datapath.md, "Several maxima per neuron"), pairs in the
    order (group 0, +), (group 0, -), (group 1, +), ... (no - pairs without ``split_sign``), each padded to the largest
    group's size Z:

    * ``index`` (pairs, Z): the patch input k of every slot (a padded slot repeats the group's last input);
    * ``weights`` (O, pairs, Z): ``W[o, k]`` where input k of the slot belongs to the pair for output o, else FLOOR;
    * ``coefficient`` (O, pairs): the pair's sign, 0 for an empty pair (no input of that sign in the group)."""
    k = int(layer["fan_in"])
    starts = group_starts(k, groups_of(layer))
    size = max(b - a for a, b in zip(starts, starts[1:]))
    w = net.table(layer, "log_weights")
    sign = net.table(layer, "weight_sign") if layer.get("split_sign") else np.ones_like(w)
    signs = (1, -1) if layer.get("split_sign") else (1,)
    index = np.array([[a + min(s, b - a - 1) for s in range(size)] for a, b in zip(starts, starts[1:])
                      for _ in signs], dtype=np.int64).reshape(-1, size)
    real = np.array([[s < b - a for s in range(size)] for a, b in zip(starts, starts[1:]) for _ in signs])
    pair_sign = np.tile(np.array(signs, dtype=np.int64), len(starts) - 1)
    member = real[None] & (sign[:, index] == pair_sign[None, :, None])
    weights = np.where(member, w[:, index], FLOOR).astype(np.int64)
    coefficient = np.where(member.any(axis=2), pair_sign[None, :], 0).astype(np.int64)
    return index, weights, coefficient


def _group_sum(g: _IntGraph, net, layer: dict, ln: str) -> str:
    """Steps 1-2 of a grouped layer on LN (..., K): D (..., O), the signed sum of the pairs' exp terms.

    Every pair's inputs are gathered into a slot row of its own (padded to the largest group), the log-weights of the
    inputs outside the pair (the other sign, the padding) are FLOOR, below every T; then one ReduceMax gives every
    pair's M, the exp unit its E, and the pair's sign (0 for an empty pair) weighs it in the sum."""
    name = layer["name"]
    index, weights, coefficient = pair_tables(net, layer)
    slots = g.op("Gather", [ln, g.i64(index, f"{name}_pair_index")], f"{name}/LN_pairs", axis=-1)
    # 1. add-max per pair: T = LN[q_k] + W[o, k] (FLOOR outside the pair), M = max over the pair's slots
    t = g.op("Add", [g.op("Unsqueeze", [slots, g.i64([-3], "axis_m3")], f"{name}/LN_row"),
                     g.i64(weights, f"{name}_pair_log_weights")], f"{name}/T")
    m = g.op("ReduceMax", [t, g.i64([-1], "axis_m1")], f"{name}/M", keepdims=0)
    # 2. exp per pair, then D = sum of sign * E over the non-empty pairs
    e = _exp(g, net, layer, m, f"{name}/")
    if layer.get("split_sign"):
        e = g.op("Mul", [e, g.i64(coefficient, f"{name}_pair_sign")], f"{name}/signed_E")
    return g.op("ReduceSum", [e, g.i64([-1], "axis_m1")], f"{name}/D", keepdims=0)


def _bm_neuron(g: _IntGraph, net, layer: dict, x: str) -> str:
    """Steps 1-5 of "The 1.5-branch BM layer" on patches x (..., K): the outputs (..., O); a grouped layer's steps 1-2
    are those of "Several maxima per neuron" (:func:`_group_sum`)."""
    name = layer["name"]
    gg, h, csum = (int(layer[k]) for k in ("G", "H", "csum"))
    table = net.table
    ln = g.op("Gather", [g.i64(table(layer, "ln_lut"), f"{name}_ln_lut"), x], f"{name}/LN", axis=0)
    if is_grouped(layer):
        e = _group_sum(g, net, layer, ln)
    else:
        # 1. add-max: T = LN[q_k] + W[o, k], M = max_k T
        t = g.op("Add", [g.op("Unsqueeze", [ln, g.i64([-2], "axis_m2")], f"{name}/LN_row"),
                         g.i64(table(layer, "log_weights"), f"{name}_log_weights")], f"{name}/T")
        m = g.op("ReduceMax", [t, g.i64([-1], "axis_m1")], f"{name}/M", keepdims=0)
        # 2. exp: E = round_shift(EXP[r], P - I - G)
        e = _exp(g, net, layer, m, f"{name}/")
    # 3. input sum and correction: S = sum_k q_k, C = round_shift(S * CSUM, H)
    s = g.op("ReduceSum", [x, g.i64([-1], "axis_m1")], f"{name}/S", keepdims=1)
    c = g.round_shift(g.op("Mul", [s, g.i64(csum, f"{name}_csum")], f"{name}/S_CSUM"), h, f"{name}/C")
    # 4. accumulate: Y = s[o] (E - C) + B[o]
    d = g.op("Sub", [e, c], f"{name}/E_minus_C")
    signs = net.signs(layer)
    if signs is not None:
        d = g.op("Mul", [d, g.i64(signs, f"{name}_sign")], f"{name}/signed")
    y = g.op("Add", [d, g.i64(table(layer, "bias"), f"{name}_bias")], f"{name}/Y")
    # 5. output: codes of a hidden layer, Y itself for the logits
    if layer["relu"]:
        shifted = g.round_shift(y, gg + int(layer["out_scale_exp"]), f"{name}/requant")
        return g.clamp(shifted, 0, int(layer["out_max"]), f"{name}/q_out")
    return y


def _mac_neuron(g: _IntGraph, net, layer: dict, x: str) -> str:
    """Steps 1-3 of "The classical MAC layer" on patches x (..., K): the outputs (..., O)."""
    name = layer["name"]
    weights = np.ascontiguousarray(net.table(layer, "weights").T)
    acc = g.op("MatMul", [x, g.i64(weights, f"{name}_weights_t")], f"{name}/ACC")
    y = g.op("Add", [acc, g.i64(net.table(layer, "bias"), f"{name}_bias")], f"{name}/Y")
    if layer["relu"]:
        shift = int(layer["out_scale_exp"]) - int(layer["acc_scale_exp"])
        return g.clamp(g.round_shift(y, shift, f"{name}/requant"), 0, int(layer["out_max"]), f"{name}/q_out")
    return y


def _adder_neuron(g: _IntGraph, net, layer: dict, x: str) -> str:
    """Steps 1-3 of "The adder layer" on patches x (..., K): the outputs (..., O)."""
    name = layer["name"]
    # 1. adder PE: ACC = sum_k |q_k - W[o, k]|
    d = g.op("Sub", [g.op("Unsqueeze", [x, g.i64([-2], "axis_m2")], f"{name}/q_row"),
                     g.i64(net.table(layer, "weights"), f"{name}_weights")], f"{name}/D")
    acc = g.op("ReduceSum", [g.op("Abs", [d], f"{name}/ABS"), g.i64([-1], "axis_m1")], f"{name}/ACC", keepdims=0)
    # 2. scale and offset: Y = B[o] - MUL[o] * ACC
    prod = g.op("Mul", [acc, g.i64(net.table(layer, "scale"), f"{name}_scale")], f"{name}/PROD")
    y = g.op("Sub", [g.i64(net.table(layer, "bias"), f"{name}_bias"), prod], f"{name}/Y")
    # 3. output: codes of a hidden layer, Y itself for the logits
    if layer["relu"]:
        return g.clamp(g.round_shift(y, int(layer["R"]), f"{name}/requant"), 0, int(layer["out_max"]), f"{name}/q_out")
    return y


# The neuron of each family with an integer ONNX graph, by family key (bmhw.ir.ops.FAMILIES); BiSE has none.
NEURONS = {"bm": _bm_neuron, "mac": _mac_neuron, "adder": _adder_neuron}


def _weight_layer(g: _IntGraph, net, layer: dict, x: str) -> str:
    neuron = NEURONS[ir.OPS[layer["op"]].family]
    name = layer["name"]
    if ir.OPS[layer["op"]].conv:
        out = neuron(g, net, layer, _patches(g, x, layer))  # (N, L, O), L in raster order
        o, ho, wo = (int(v) for v in layer["out_shape"])
        rows = g.op("Reshape", [out, g.i64([0, ho, wo, o], f"{name}_shape_nhwc")], f"{name}/nhwc")
        return g.op("Transpose", [rows], f"{name}/out", perm=[0, 3, 1, 2])
    return neuron(g, net, layer, x)


def _maxpool(g: _IntGraph, layer: dict, x: str) -> str:
    """k x k windows at stride k, no padding: the input cropped to whole windows, each window made an axis
    of its own by a Reshape, then the largest code."""
    k, name = int(layer["kernel"]), layer["name"]
    c, h, w = (int(v) for v in layer["in_shape"])
    if int(layer.get("stride", k)) != k:
        raise BmhwError(f"layer {name}: max pooling with stride {layer['stride']} != kernel {k} is not in the datapath")
    ho, wo = h // k, w // k
    if (ho * k, wo * k) != (h, w):
        x = g.op("Slice", [x, g.i64([0, 0], "zeros2"), g.i64([ho * k, wo * k], f"{name}_crop"),
                           g.i64([2, 3], "axes_hw")], f"{name}/crop")
    windows = g.op("Reshape", [x, g.i64([0, c, ho, k, wo, k], f"{name}_windows")], f"{name}/windows")
    return g.op("ReduceMax", [windows, g.i64([3, 5], "axes_window")], f"{name}/out", keepdims=0)


def build(net, layer_outputs: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``net`` (a ``bmhw.ir.QuantizedNet``), checked with ``onnx.checker``."""
    names = [layer["name"] for layer in net.layers]
    g = _IntGraph("bmhw_integer_network", reserved=(INPUT, LOGITS, *names))
    x = g.add_input(INPUT, np.int64, ["N", *net.input_shape])
    exposed = []
    for layer in net.layers:
        op = layer["op"]
        if ir.OPS.get(op) is not None and ir.OPS[op].family in NEURONS and ir.OPS[op].weighted:
            x = _weight_layer(g, net, layer, x)
        elif op == "maxpool2d":
            x = _maxpool(g, layer, x)
        elif op == "flatten":
            x = g.op("Reshape", [x, g.i64([0, -1], "shape_n_flat")], f"{layer['name']}/out")
        else:
            raise BmhwError(f"layer {layer['name']}: the ONNX integer export has no operation {op!r}")
        exposed.append((layer, x))
    g.add_output(x, LOGITS, np.int64, ["N", int(net.layers[-1]["out_shape"][0])])
    if layer_outputs:
        for layer, value in exposed:
            g.add_output(value, layer["name"], np.int64, ["N", *layer["out_shape"]])
    doc = ("bmhw integer network (docs/datapath.md): input 'codes' are the image bytes 0..255 as int64; output "
           "'logits' is the last layer's Y" + ("; then every layer's output by its name" if layer_outputs else ""))
    scale = "/".join(str(int(v)) for v in net.input_scale)
    return g.model(doc, {"bmhw.kind": KIND, "bmhw.input": INPUT, "bmhw.input_scale": scale,
                         "bmhw.layers": ",".join(names) if layer_outputs else "", "bmhw.ir_version": ir.VERSION,
                         "bmhw.elements_per_image": elements_per_image(net)})


def elements_per_image(net) -> int:
    """The largest intermediate tensor per image: a BM layer's add-max sums (positions x O x K) or a
    layer's patches (positions x K); onnxruntime's batches are sized by it."""
    largest = 1
    for layer in net.weight_layers():
        positions = int(np.prod(layer["out_shape"][1:])) if ir.OPS[layer["op"]].conv else 1
        per_output = int(layer["out_count"]) if layer["op"] in ir.BM_OPS + ir.ADDER_OPS else 1
        inputs = int(layer["fan_in"])
        if layer["op"] in ir.BM_OPS and is_grouped(layer):  # the pairs' slots: (1 or 2) x N x the largest group
            starts = group_starts(inputs, groups_of(layer))
            inputs = (2 if layer.get("split_sign") else 1) * groups_of(layer) * int(np.diff(starts).max())
        largest = max(largest, positions * per_output * inputs)
    return largest


def export(net, path, layer_outputs: bool = True) -> Path:
    """Write the ONNX model of ``net`` to ``path`` atomically; the same net gives byte-identical files."""
    return save_model(build(net, layer_outputs), path)
