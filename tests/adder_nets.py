"""Random small adder IRs built directly (docs/datapath.md, "The adder layer"): templates outside [0, Qin],
negative multipliers, conv and linear, hidden and logits layers. Shared by the golden, quantizer and HLS tests."""

from __future__ import annotations

import numpy as np

from bmhw.ir import QuantizedNet
from bmhw.ir.widths import infer_widths


def _adder(rng, name, op, in_shape, out_shape, fan_in, out_count, q_in, relu, act_bits, scale_bits, extra=None):
    top = (1 << (scale_bits - 1)) - 1
    w = rng.integers(-40, q_in + 41, size=(out_count, fan_in))
    w[0, 0] = -int(rng.integers(1, 9))          # certainly below 0
    w[-1, -1] = q_in + int(rng.integers(1, 9))  # certainly above Qin
    mul = rng.integers(-top, top + 1, size=out_count)
    mul[0] = -int(rng.integers(1, top + 1))      # a negative multiplier (a negative batch-norm gamma)
    r = int(rng.integers(0, 24))
    bias = rng.integers(-(1 << (r + 6)), (1 << (r + 6)) + 1, size=out_count)
    layer = {"op": op, "name": name, "in_shape": list(in_shape), "out_shape": list(out_shape), "fan_in": fan_in,
             "out_count": out_count, "scale_bits": scale_bits, "R": r, "relu": relu, "in_max": q_in,
             "out_max": (1 << act_bits) - 1 if relu else None, "in_scale": [1, 255], "out_scale_exp": -3,
             **(extra or {})}
    tables = {"weights": w.astype(np.int64), "scale": mul.astype(np.int64), "bias": bias.astype(np.int64)}
    layer["ranges"], layer["widths"] = infer_widths(layer, tables)
    return layer, {f"{name}/{t}": a for t, a in tables.items()}


def random_adder_net(seed: int, conv: bool = True) -> QuantizedNet:
    """conv: adder_conv2d (hidden) -> maxpool -> flatten -> adder_linear (hidden) -> adder_linear (logits);
    otherwise flatten -> adder_linear (hidden) -> adder_linear (logits)."""
    rng = np.random.default_rng(seed)
    act_bits = int(rng.integers(2, 9))
    scale_bits = int(rng.integers(2, 17))
    q_top = (1 << act_bits) - 1
    c, h, w = int(rng.integers(1, 3)), int(rng.integers(4, 7)), int(rng.integers(4, 7))
    layers, arrays = [], {}
    shape = [c, h, w]
    q_in = 255
    if conv:
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        ph, pw = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        o = int(rng.integers(1, 5))
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        layer, tabs = _adder(rng, "conv1", "adder_conv2d", shape, [o, ho, wo], c * kh * kw, o, q_in, True, act_bits,
                             scale_bits, {"kernel": [kh, kw], "stride": [sh, sw], "padding": [ph, pw]})
        layers.append(layer)
        arrays.update(tabs)
        shape, q_in = [o, ho, wo], q_top
        if ho >= 2 and wo >= 2:
            layers.append({"op": "maxpool2d", "name": "pool1", "in_shape": shape, "out_shape": [o, ho // 2, wo // 2],
                           "kernel": 2, "stride": 2})
            shape = [o, ho // 2, wo // 2]
    n = int(np.prod(shape))
    layers.append({"op": "flatten", "name": "flatten", "in_shape": shape, "out_shape": [n]})
    hidden = int(rng.integers(1, 7))
    layer, tabs = _adder(rng, "fc1", "adder_linear", [n], [hidden], n, hidden, q_in, True, act_bits, scale_bits)
    layers.append(layer)
    arrays.update(tabs)
    classes = int(rng.integers(2, 6))
    layer, tabs = _adder(rng, "fc2", "adder_linear", [hidden], [classes], hidden, classes, q_top, False, act_bits,
                         scale_bits)
    layers.append(layer)
    arrays.update(tabs)
    return QuantizedNet(input_shape=(c, h, w), input_scale=(1, 255), layers=layers, arrays=arrays,
                        meta={"source": f"random adder net {seed}"})


def random_codes(net: QuantizedNet, seed: int, n: int = 3) -> np.ndarray:
    """n random input images plus the all-0 and all-255 images."""
    rng = np.random.default_rng(seed + 7)
    shape = tuple(net.input_shape)
    return np.concatenate([rng.integers(0, 256, size=(n, *shape)), np.zeros((1, *shape), np.int64),
                           np.full((1, *shape), 255, np.int64)]).astype(np.int64)
