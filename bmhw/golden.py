"""The golden model: the integer datapath of docs/datapath.md in NumPy, vectorised over the batch.

It is the specification every generated artefact must match bit for bit. It reads only the IR
(``bmhw.ir.QuantizedNet``) and never imports torch.
"""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.errors import BmhwError
from bmhw.ir.groups import group_starts, groups_of, is_grouped, pair_occupancy
from bmhw.ir.intmath import round_shift

# Elements of the rows x outputs x fan-in sum tensor formed at once.
CHUNK_ELEMENTS = 1 << 22


def patches(codes: np.ndarray, layer: dict) -> np.ndarray:
    """Input patches of a layer: (N*L, K) rows, batch-major then output position in raster order; the
    K axis is ordered channel, kernel row, kernel column (zero padding is code 0)."""
    if not ir.OPS[layer["op"]].conv:
        return codes.reshape(codes.shape[0], -1)
    (kh, kw), (sh, sw), (ph, pw) = layer["kernel"], layer["stride"], layer["padding"]
    padded = np.pad(codes, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    n, c, ho, wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)


def addmax(ln_codes: np.ndarray, log_weights: np.ndarray, dtype) -> np.ndarray:
    """The add-max PE array: ``M[n, o] = max_k (ln_codes[n, k] + log_weights[o, k])``."""
    rows, k = ln_codes.shape
    o = log_weights.shape[0]
    out = np.empty((rows, o), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(1, o * k))
    a, w = ln_codes.astype(dtype), log_weights.astype(dtype)
    for start in range(0, rows, step):
        out[start:start + step] = (a[start:start + step, None, :] + w[None, :, :]).max(axis=2)
    return out


def exp_term(m: np.ndarray, exp: np.ndarray, f: int, p: int, g: int) -> np.ndarray:
    """The exp unit: ``E = round_shift(EXP[r], P - I - G)`` with ``I = floor_div(M, 2^F)``, ``r = M - I 2^F``."""
    i = m >> f
    return round_shift(exp[m - (i << f)], p - i - g)


def group_sum(net, layer: dict, ln_codes: np.ndarray, dtype) -> np.ndarray:
    """The max term of a grouped layer (docs/datapath.md, "Several maxima per neuron"): ``D[n, o]``, the sum over the
    (group, sign) pairs holding a weight of ``+-E`` of the pair's maximum ``max_(k in pair) (LN + W[o, k])``."""
    w, exp = net.table(layer, "log_weights"), net.table(layer, "exp_lut")
    f, p, g = (int(layer[k]) for k in ("F", "P", "G"))
    rows, k = ln_codes.shape
    o = w.shape[0]
    sign = net.table(layer, "weight_sign") if layer.get("split_sign") else None
    starts = np.asarray(group_starts(k, groups_of(layer))[:-1])
    positive, negative = pair_occupancy(layer, sign)
    # A weight of the other sign is left out of a pair's maximum by a value below every T; empty pairs add nothing.
    floor = np.iinfo(dtype).min // 2
    weights = [(1, positive, w if sign is None else np.where(sign > 0, w, floor).astype(dtype))]
    if sign is not None:
        weights.append((-1, negative, np.where(sign < 0, w, floor).astype(dtype)))
    out = np.zeros((rows, o), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(1, o * k))
    a = ln_codes.astype(dtype)
    for start in range(0, rows, step):
        chunk = a[start:start + step, None, :]
        for pair_sign, occupied, wp in weights:
            m = np.maximum.reduceat(chunk + wp[None].astype(dtype), starts, axis=2).astype(np.int64)
            e = np.where(occupied[None], exp_term(np.where(occupied[None], m, 0), exp, f, p, g), 0)
            out[start:start + step] += pair_sign * e.sum(axis=2)
    return out


def bm_layer(net, layer: dict, codes: np.ndarray) -> np.ndarray:
    """One 1.5-branch BM layer: codes (N, *in_shape) -> codes or logits (N, *out_shape), int64."""
    ln, w, exp, bias = (net.table(layer, t) for t in ("ln_lut", "log_weights", "exp_lut", "bias"))
    f, p, g, h, csum = (int(layer[k]) for k in ("F", "P", "G", "H", "csum"))
    n = codes.shape[0]
    x = patches(codes, layer)
    # int32 wherever the proven widths allow: exact, and about twice as fast.
    dtype = np.int32 if layer["widths"]["T"] <= 30 or (layer["widths"]["T"] <= 32 and not is_grouped(layer)) \
        else np.int64
    if is_grouped(layer):
        e = group_sum(net, layer, ln[x], dtype)
    else:
        e = exp_term(addmax(ln[x], w, dtype), exp, f, p, g)
    c = round_shift(x.sum(axis=1, dtype=np.int64) * csum, h)
    d = e - c[:, None]
    sign = net.signs(layer)
    if sign is not None:  # mirrored outputs: Y = -(E - C) + B
        d = d * sign[None, :]
    y = d + bias[None, :]
    if layer["relu"]:
        y = np.clip(round_shift(y, g + int(layer["out_scale_exp"])), 0, int(layer["out_max"]))
    return _layer_output(layer, y, n)


def _layer_output(layer: dict, y: np.ndarray, n: int) -> np.ndarray:
    """(N*L, O) rows -> (N, O, Ho, Wo) for a convolution, (N, O) for a linear layer."""
    if ir.OPS[layer["op"]].conv:
        _, ho, wo = layer["out_shape"]
        return y.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)
    return y.reshape(n, -1)


def mac_layer(net, layer: dict, codes: np.ndarray) -> np.ndarray:
    """One classical integer layer of the MAC twin: ``Y = sum_k q_k * W[o, k] + B[o]``, then (hidden
    layers) ``clamp(round_shift(Y, out_scale_exp - acc_scale_exp), 0, out_max)``."""
    w, bias = net.table(layer, "weights"), net.table(layer, "bias")
    x = patches(codes, layer)
    # Integer sums below 2^53 are exact in float64 whatever the order: BLAS is then exact and fast.
    if layer["widths"]["ACC"] <= 53:
        acc = np.rint(x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)
    else:
        acc = x.astype(np.int64) @ w.T.astype(np.int64)
    y = acc + bias[None, :]
    if layer["relu"]:
        shift = int(layer["out_scale_exp"]) - int(layer["acc_scale_exp"])
        y = np.clip(round_shift(y, shift), 0, int(layer["out_max"]))
    return _layer_output(layer, y, codes.shape[0])


def l1_distance(x: np.ndarray, weights: np.ndarray, dtype) -> np.ndarray:
    """The adder PE array: ``ACC[n, o] = sum_k |x[n, k] - weights[o, k]|``, in chunks of rows so that the
    rows x outputs x fan-in tensor stays below CHUNK_ELEMENTS elements."""
    rows, k = x.shape
    o = weights.shape[0]
    out = np.empty((rows, o), dtype=np.int64)
    step = max(1, CHUNK_ELEMENTS // max(1, o * k))
    a, w = x.astype(dtype), weights.astype(dtype)
    for start in range(0, rows, step):
        out[start:start + step] = np.abs(a[start:start + step, None, :] - w[None, :, :]).sum(axis=2, dtype=dtype)
    return out


def adder_layer(net, layer: dict, codes: np.ndarray) -> np.ndarray:
    """One AdderNet layer (docs/datapath.md, "The adder layer"): ``ACC = sum_k |q_k - W[o, k]|``,
    ``Y = B[o] - MUL[o] * ACC``; hidden layers ``clamp(round_shift(Y, R), 0, out_max)``, the last one ``Y``."""
    w, mul, bias = (net.table(layer, t) for t in ("weights", "scale", "bias"))
    x = patches(codes, layer)
    # int32 wherever the proven widths allow (D, ABS and every partial sum of ACC): exact and faster.
    wd = layer["widths"]
    dtype = np.int32 if max(wd["D"], wd["ABS"], wd["ACC"]) <= 31 else np.int64
    acc = l1_distance(x, w, dtype)
    y = bias[None, :].astype(np.int64) - mul[None, :].astype(np.int64) * acc
    if layer["relu"]:
        y = np.clip(round_shift(y, int(layer["R"])), 0, int(layer["out_max"]))
    return _layer_output(layer, y, codes.shape[0])


def binarize(layer: dict, codes: np.ndarray) -> np.ndarray:
    """Input binarisation (docs/datapath.md, "The BiSE layer"): code q -> 1 if q >= threshold, else 0."""
    return (codes >= int(layer["threshold"])).astype(np.int64)


def bise_layer(net, layer: dict, codes: np.ndarray) -> np.ndarray:
    """One binarised BiSE layer: ``C[o] = sum_{k in S_o} l_ok`` over the literals ``l_ok = 1 - x_k`` where
    ``neg[o, k]``, else ``x_k`` (zero padding reads 0, its complement 1); hidden: ``C >= 1`` (dilation, an OR)
    or ``C >= |S_o|`` (erosion, an AND); last layer (``scores``): ``C`` itself, the class scores."""
    se, op, neg = net.table(layer, "se"), net.table(layer, "op"), net.table(layer, "neg")
    x = patches(codes, layer).astype(np.int64)
    pos, inv = (se * (1 - neg)).astype(np.int64), (se * neg).astype(np.int64)
    count = x @ pos.T + (1 - x) @ inv.T
    if not layer["scores"]:
        thr = np.where(op == 1, se.sum(axis=1), 1)
        count = (count >= thr[None, :]).astype(np.int64)
    return _layer_output(layer, count, codes.shape[0])


def maxpool(layer: dict, codes: np.ndarray) -> np.ndarray:
    k = int(layer["kernel"])
    n, c, h, w = codes.shape
    ho, wo = h // k, w // k
    return codes[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).max(axis=(3, 5))


def flatten(layer: dict, codes: np.ndarray) -> np.ndarray:
    return codes.reshape(codes.shape[0], -1)


# The integer kernel of every weighted layer, by family key (bmhw.ir.ops.FAMILIES), and of the other ops by
# name; each as kernel(net, layer, codes). A new family adds its kernel here.
FAMILY_KERNELS = {"bm": bm_layer, "mac": mac_layer, "adder": adder_layer, "bise": bise_layer}
KERNELS = {
    **{op: FAMILY_KERNELS[spec.family] for op, spec in ir.OPS.items() if spec.weighted},
    "binarize": lambda net, layer, codes: binarize(layer, codes),
    "maxpool2d": lambda net, layer, codes: maxpool(layer, codes),
    "flatten": lambda net, layer, codes: flatten(layer, codes),
}


def forward(net, codes, return_all: bool = False):
    """Run the network on input codes (N, C, H, W). Returns the logits (int64, N x classes) or, with
    ``return_all``, a dict of every layer's output by layer name."""
    codes = np.asarray(codes)
    if codes.ndim != 4 or tuple(codes.shape[1:]) != tuple(net.input_shape):
        raise BmhwError(f"the network takes inputs of shape (N, {', '.join(map(str, net.input_shape))}), "
                        f"got {tuple(codes.shape)}")
    h = codes.astype(np.int64)
    outputs = {}
    for layer in net.layers:
        kernel = KERNELS.get(layer["op"])
        if kernel is None:
            raise BmhwError(f"layer {layer['name']}: the golden model has no operation {layer['op']!r}")
        h = kernel(net, layer, h)
        outputs[layer["name"]] = h
    return outputs if return_all else h


def predict(net, codes, batch_size: int = 500) -> np.ndarray:
    """Predicted classes: the first index of the largest logit."""
    codes = np.asarray(codes)
    out = [forward(net, codes[i:i + batch_size]).argmax(axis=1) for i in range(0, len(codes), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
