"""Random small networks and images for the tests of the quantizers and backends (docs/datapath.md)."""

from __future__ import annotations
import numpy as np
from bmhw import ir as bmhw_ir
import torch
from torch import nn
from bmhw.nn import BMConv2d, BMLinear
from bmhw.models import create


def adder_ranges(w, mul, bias, q_max: int, relu: bool, r: int) -> dict:
    """The proven ranges of an adder layer, written from docs/datapath.md ("The adder layer", "Widths")."""
    from bmhw.ir.intmath import round_shift

    w, mul, bias = (np.asarray(t, dtype=object) for t in (w, mul, bias))
    far = np.maximum(abs(w), abs(q_max - w))  # the largest |q - W| over q in [0, q_max]
    near = np.maximum(0, np.maximum(-w, w - q_max))  # the distance from W to [0, q_max]
    acc_lo, acc_hi = near.sum(axis=1), far.sum(axis=1)
    prod = [sorted((int(m) * int(lo), int(m) * int(hi))) for m, lo, hi in zip(mul, acc_lo, acc_hi)]
    y = [(int(b) - p[1], int(b) - p[0]) for b, p in zip(bias, prod)]
    out = {"q_in": [0, q_max], "W": [int(w.min()), int(w.max())], "D": [-int(w.max()), q_max - int(w.min())],
           "ABS": [0, int(far.max())], "ACC": [int(acc_lo.min()), int(acc_hi.max())],
           "MUL": [int(mul.min()), int(mul.max())], "PROD": [min(p[0] for p in prod), max(p[1] for p in prod)],
           "B": [int(bias.min()), int(bias.max())], "Y": [min(v[0] for v in y), max(v[1] for v in y)]}
    if relu:
        out["YR"] = [int(round_shift(out["Y"][0], r)), int(round_shift(out["Y"][1], r))]
    return out


def random_adder_net(seed=3, in_shape=(2, 7, 6), convs=((3, 3, 2, 1, 0), (4, 1, 1, 0, 2)), linears=(5, 3),
                     act_bits=5, scale_bits=10, template_span=None, extreme=False):
    """A random adder network built directly as IR (convs: (out, k, stride, pad, pool); ReLU after every
    weight layer but the last). ``extreme``: templates and scales at the ends of their ranges."""
    from bmhw import ir
    from bmhw.ir.intmath import width

    rng = np.random.default_rng(seed)
    layers, arrays = [], {}
    c, h, wd = in_shape
    q_max, q_w, in_scale = 255, 8, [1, 255]
    n_weight, index = len(convs) + len(linears), 0

    def weight_layer(op, name, k, o, in_sh, out_sh, extra):
        nonlocal q_max, q_w, in_scale, index
        index += 1
        relu = index < n_weight
        span = template_span or (q_max + q_max // 2)
        w = rng.integers(-span // 3, span, size=(o, k))
        mul = rng.integers(-(1 << (scale_bits - 1)) + 1, 1 << (scale_bits - 1), size=o)
        bias = rng.integers(-(1 << 18), 1 << 18, size=o)
        if extreme:
            w[0, :], w[-1, :] = -span // 3, span  # both ends of the template range
            mul[0], mul[-1] = (1 << (scale_bits - 1)) - 1, -(1 << (scale_bits - 1)) + 1
        r = int(rng.integers(6, 12))
        ranges = adder_ranges(w, mul, bias, q_max, relu, r)
        ranges["q_out"] = [0, (1 << act_bits) - 1] if relu else ranges["Y"]
        widths = {key: width(*v) for key, v in ranges.items()}
        layer = {"op": op, "name": name, "in_shape": list(in_sh), "out_shape": list(out_sh), "fan_in": k,
                 "out_count": o, "scale_bits": scale_bits, "R": r, "relu": relu, "in_max": q_max,
                 "out_max": (1 << act_bits) - 1 if relu else None, "in_scale": in_scale, "out_scale_exp": -3,
                 "ranges": ranges, "widths": widths, **extra}
        layers.append(layer)
        arrays.update({f"{name}/weights": w.astype(np.int64), f"{name}/scale": mul.astype(np.int64),
                       f"{name}/bias": bias.astype(np.int64)})
        q_max, q_w, in_scale = (1 << act_bits) - 1, act_bits, [1, 8]

    for i, (out, k, stride, pad, pool) in enumerate(convs):
        oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
        weight_layer("adder_conv2d", f"conv{i + 1}", c * k * k, out, (c, h, wd), (out, oh, ow),
                     {"kernel": [k, k], "stride": [stride, stride], "padding": [pad, pad]})
        c, h, wd = out, oh, ow
        if pool:
            layers.append({"op": "maxpool2d", "name": f"pool{i + 1}", "in_shape": [c, h, wd],
                           "out_shape": [c, h // pool, wd // pool], "kernel": pool, "stride": pool})
            h, wd = h // pool, wd // pool
    layers.append({"op": "flatten", "name": "flatten", "in_shape": [c, h, wd], "out_shape": [c * h * wd]})
    features = c * h * wd
    for i, out in enumerate(linears):
        weight_layer("adder_linear", f"fc{i + 1}", features, out, (features,), (out,), {})
        features = out
    return ir.QuantizedNet(input_shape=tuple(in_shape), input_scale=(1, 255), layers=layers, arrays=arrays,
                           meta={"source": "random adder network (tests)"})


def random_bise_net(seed=3, in_shape=(1, 7, 6), convs=((3, 3, 1, 1, 2), (4, 3, 2, 1, 0)), linears=(5, 3),
                    threshold=128, density=0.5):
    """A random binarised BiSE network built directly as IR: ``binarize``, then convs (out, k, stride, pad,
    pool), flatten and linears, the last one the scores layer. Random structuring elements (at least one
    input each; some full rows, some single inputs), complemented inputs and dilations / erosions."""
    from bmhw import ir
    from bmhw.ir.intmath import width

    rng = np.random.default_rng(seed)
    layers = [{"op": "binarize", "name": "binarize", "in_shape": list(in_shape), "out_shape": list(in_shape),
               "threshold": threshold}]
    arrays = {}
    c, h, wd = in_shape
    n_weight = len(convs) + len(linears)

    def bise_layer(op, name, k, o, in_sh, out_sh, extra):
        scores = sum(layer["op"] in bmhw_ir.BISE_OPS for layer in layers) == n_weight - 1
        se = (rng.random((o, k)) < density).astype(np.int64)
        se[0, :] = 1  # a full structuring element
        if o > 1:
            se[1, :] = 0
            se[1, int(rng.integers(0, k))] = 1  # a single input
        for row in range(o):
            if not se[row].any():
                se[row, int(rng.integers(0, k))] = 1
        neg = ((rng.random((o, k)) < 0.4) & (se == 1)).astype(np.int64)
        op_table = rng.integers(0, 2, size=o).astype(np.int64)
        c_max = int(se.sum(axis=1).max())
        ranges = {"x": [0, 1], "C": [0, c_max], "q_out": [0, c_max] if scores else [0, 1]}
        layers.append({"op": op, "name": name, "in_shape": list(in_sh), "out_shape": list(out_sh), "fan_in": k,
                       "out_count": o, "scores": scores, "ranges": ranges,
                       "widths": {key: width(*v) for key, v in ranges.items()}, **extra})
        arrays.update({f"{name}/se": se, f"{name}/op": op_table, f"{name}/neg": neg})

    for i, (out, k, stride, pad, pool) in enumerate(convs):
        oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
        bise_layer("bise_conv2d", f"conv{i + 1}", c * k * k, out, (c, h, wd), (out, oh, ow),
                   {"kernel": [k, k], "stride": [stride, stride], "padding": [pad, pad]})
        c, h, wd = out, oh, ow
        if pool:
            layers.append({"op": "maxpool2d", "name": f"pool{i + 1}", "in_shape": [c, h, wd],
                           "out_shape": [c, h // pool, wd // pool], "kernel": pool, "stride": pool})
            h, wd = h // pool, wd // pool
    layers.append({"op": "flatten", "name": "flatten", "in_shape": [c, h, wd], "out_shape": [c * h * wd]})
    features = c * h * wd
    for i, out in enumerate(linears):
        bise_layer("bise_linear", f"fc{i + 1}", features, out, (features,), (out,), {})
        features = out
    net = ir.QuantizedNet(input_shape=tuple(in_shape), input_scale=(1, 255), layers=layers, arrays=arrays,
                          meta={"source": "random BiSE network (tests)"})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:  # through the loader's checks
        path = Path(folder) / "bise.bmq"
        path.write_bytes(ir.dumps(net))
        return ir.load_bmq(path)


def random_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(BMConv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), BMConv2d(3, 4, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), BMLinear(4 * 2 * 2, 6), nn.ReLU(), BMLinear(6, 3)).eval()


def random_images(n, shape=(1, 10, 10), seed=1):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype(np.uint8)


def random_bise_lenet(seed: int, widths=(4, 6, 12, 8), input_size=16):
    torch.manual_seed(seed)
    model = create("lenet", "bise", widths=widths, input_size=input_size)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.weight_layers().values():
            m.weight.normal_(0, 1.5, generator=g)
            k = m.weight_matrix().shape[1]
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) * k * 0.6)
    return model


def random_bise_images(seed: int, n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # bytes around the threshold too, so the binarisation's edge (127 / 128) is exercised
    img = rng.integers(0, 256, size=(n, 1, size, size), dtype=np.uint8)
    img[:, :, 0, :4] = [126, 127, 128, 129]
    return img
