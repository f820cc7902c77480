"""The AdderNet quantizer (bmhw.quant.adder, docs/datapath.md "The adder layer") on small random networks and
tiny synthetic data: proven widths cover every value the golden model computes, the integer logits follow the
float model, the output is deterministic, and bad input is a one-line error."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
import torch
from torch import nn

from bmhw import golden
from bmhw.errors import BmhwError
from bmhw.ir.intmath import round_shift
from bmhw.ir import dumps, load_bmq, save_bmq
from bmhw.models import LeNet
from bmhw.nn import BMLinear
from bmhw.nn.adder import AdderConv2d, AdderLinear
from bmhw.quant.adder import quantize_adder


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Batch-norm statistics and affine parameters away from the identity, some gammas negative."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(-torch.rand(n, generator=g) * 20 - 5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 50 + 1)
                mod.weight.copy_(torch.randn(n, generator=g))
                mod.weight[0] = -abs(mod.weight[0]) - 0.1
                mod.bias.copy_(torch.randn(n, generator=g))
    return model.eval()


def adder_lenet(seed: int) -> LeNet:
    torch.manual_seed(seed)
    return _randomise_bn(LeNet(neuron="adder"), seed)


def adder_sequential(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(AdderConv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          AdderLinear(3 * 2 * 2, 5, bias=True, bn=False), nn.ReLU(), AdderLinear(5, 4))
    with torch.no_grad():
        model[4].weight.mul_(0.1)
    return _randomise_bn(model, seed)


def images(n: int, seed: int, side: int = 28) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 256, size=(n, 1, side, side)).astype(np.uint8)
    out[: n // 2] = (out[: n // 2] > 180) * 255  # some stroke-like binary images too
    return out


def intermediates(net, layer: dict, codes: np.ndarray) -> dict:
    """D, ABS, ACC, PROD, Y (and YR) of one adder layer, recomputed from the IR tables in int64 (a second,
    loop-free computation: the test checks the proven ranges, not the golden model's own code)."""
    w, mul, b = (net.table(layer, t) for t in ("weights", "scale", "bias"))
    x = golden.patches(codes, layer)
    d = x[:, None, :] - w[None, :, :]
    acc = np.abs(d).sum(axis=2)
    prod = mul[None, :] * acc
    y = b[None, :] - prod
    sig = {"q_in": x, "D": d, "ABS": np.abs(d), "ACC": acc, "PROD": prod, "Y": y}
    # Every partial sum of ACC too (the accumulator's register holds them).
    sig["ACC_partial"] = np.cumsum(np.abs(d), axis=2)
    if layer["relu"]:
        sig["YR"] = round_shift(y, int(layer["R"]))
    return sig


def check_ranges_cover(net, codes: np.ndarray) -> None:
    outs = golden.forward(net, codes, return_all=True)
    h = codes
    for layer in net.layers:
        if layer["op"].startswith("adder"):
            for name, values in intermediates(net, layer, h).items():
                lo, hi = layer["ranges"]["ACC" if name == "ACC_partial" else name]
                lo = 0 if name == "ACC_partial" else lo  # a partial sum lies in [0, ACC_hi] (docs/datapath.md)
                assert values.min() >= lo and values.max() <= hi, (
                    f"layer {layer['name']}: {name} in [{values.min()}, {values.max()}], IR range [{lo}, {hi}]")
            lo, hi = layer["ranges"]["q_out"]
            got = outs[layer["name"]]
            assert got.min() >= lo and got.max() <= hi, layer["name"]
            for t in ("weights", "scale", "bias"):
                name = {"weights": "W", "scale": "MUL", "bias": "B"}[t]
                tab = net.table(layer, t)
                assert [int(tab.min()), int(tab.max())] == layer["ranges"][name]
            assert -(1 << (layer["scale_bits"] - 1)) < net.table(layer, "scale").min()
            assert net.table(layer, "scale").max() < 1 << (layer["scale_bits"] - 1)
        h = outs[layer["name"]]


def extreme_codes(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.zeros((1, *shape)), np.full((1, *shape), 255), rng.integers(0, 256, (6, *shape)),
                           rng.choice([0, 255], size=(4, *shape))]).astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1])
def test_lenet_widths_cover_values(seed):
    net = quantize_adder(adder_lenet(seed), images(24, seed))
    assert [layer["op"] for layer in net.layers if "widths" in layer] == ["adder_conv2d"] * 2 + ["adder_linear"] * 3
    check_ranges_cover(net, extreme_codes((1, 28, 28), seed))


@pytest.mark.parametrize("seed", range(4))
def test_sequential_widths_cover_values(seed):
    net = quantize_adder(adder_sequential(seed), images(16, seed, side=8), act_bits=4 + seed, scale_bits=8 + 2 * seed)
    check_ranges_cover(net, extreme_codes((1, 8, 8), seed))
    # Hidden codes reach both ends of the input range of the next layer: also feed 0 / Qin to every layer.
    for layer in net.layers:
        if layer["op"].startswith("adder"):
            shape = tuple(layer["in_shape"])
            q = int(layer["in_max"])
            codes = np.stack([np.zeros(shape, np.int64), np.full(shape, q, np.int64)])
            x = codes if layer["op"] == "adder_conv2d" else codes.reshape(2, -1)
            for name, values in intermediates(net, layer, x).items():
                lo, hi = layer["ranges"]["ACC" if name == "ACC_partial" else name]
                lo = 0 if name == "ACC_partial" else lo
                assert lo <= values.min() and values.max() <= hi, (layer["name"], name)


# Tolerance (documented here and in the report): on these random, untrained networks the integer logits,
# scaled back by 2^(e_out - R), are within 6 % of the largest float logit magnitude (plus one output step) of
# the float64 model, and the predicted classes agree on at least 90 % of the images.
LOGIT_TOLERANCE = 0.06
ARGMAX_AGREEMENT = 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_integer_logits_follow_float(seed):
    model = adder_lenet(seed)
    calib = images(64, seed)
    net = quantize_adder(model, calib)
    test = images(40, seed + 100)
    with torch.no_grad():
        ref = model.double()(torch.from_numpy(test).double() / 255).numpy()
    last = net.layers[-1]
    got = golden.forward(net, test.astype(np.int64)).astype(np.float64) * 2.0 ** (last["out_scale_exp"] - last["R"])
    err = np.abs(got - ref).max()
    assert err <= LOGIT_TOLERANCE * np.abs(ref).max() + 2.0 ** last["out_scale_exp"], (err, np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() >= ARGMAX_AGREEMENT


def test_deterministic(tmp_path):
    model = adder_lenet(5)
    a = dumps(quantize_adder(model, images(20, 5)))
    b = dumps(quantize_adder(adder_lenet(5), images(20, 5)))
    assert a == b
    save_bmq(quantize_adder(model, images(20, 5)), tmp_path / "x.bmq")
    assert (tmp_path / "x.bmq").read_bytes() == a
    net = load_bmq(tmp_path / "x.bmq")
    assert net.is_adder and not net.is_mac and not net.bm_layers()


def test_scale_bits_bound_multiplier():
    model = adder_lenet(2)
    for m in (4, 16, 24):
        net = quantize_adder(model, images(8, 2), scale_bits=m)
        for layer in net.weight_layers():
            mul = net.table(layer, "scale")
            assert np.abs(mul).max() <= (1 << (m - 1)) - 1 and layer["R"] <= 40
            # R is the largest: one more bit would overflow m bits for the largest |a| (within rounding).
            assert np.abs(mul).max() * 2 > (1 << (m - 1)) - 1 - 2 or layer["R"] == 40


def test_mixed_network_refused():
    torch.manual_seed(0)
    mixed = nn.Sequential(nn.Flatten(), AdderLinear(16, 4), nn.ReLU(), BMLinear(4, 3)).eval()
    with pytest.raises(BmhwError, match=r"layer .* in an AdderNet network.*one\s+family"):
        quantize_adder(mixed, images(4, 0, side=4))
    classical = nn.Sequential(nn.Flatten(), AdderLinear(16, 4), nn.ReLU(), nn.Linear(4, 3)).eval()
    with pytest.raises(BmhwError, match=r"Linear layer in an AdderNet network"):
        quantize_adder(classical, images(4, 0, side=4))


@pytest.mark.parametrize("bad", [0, 1, 33, -5, 2.5, True])
def test_bad_scale_bits(bad):
    with pytest.raises(BmhwError, match=r"^--scale-bits must be an integer between 2 and 32"):
        quantize_adder(adder_sequential(0), images(4, 0, side=8), scale_bits=bad)


def test_mixed_file_refused(tmp_path):
    """A .bmq that mixes adder and MAC layers is refused on loading, with a one-line message."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from adder_nets import random_adder_net

    net = random_adder_net(0, False)
    net.layers[-1]["op"] = "mac_linear"
    net.arrays["fc2/weights"] = net.arrays["fc2/weights"]
    save_bmq(net, tmp_path / "mixed.bmq")
    with pytest.raises(BmhwError, match=r"mixes AdderNet and classical MAC layers"):
        load_bmq(tmp_path / "mixed.bmq")
