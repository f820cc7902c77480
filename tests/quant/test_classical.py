"""The classical quantizer (bmhw.quant.classical): the MAC twin's integer network against the float one,
within the error bound derived in docs/datapath.md ("The classical MAC layer"), and its command line."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bmhw import golden
from bmhw.errors import BmhwError
from bmhw.ir import dumps, load_bmq
from bmhw.nn import BMLinear
from bmhw.quant import quantize_classical
from conftest import build_sequential
from cli_runner import run_main
from random_nets import random_images

SPEC = {"seed": 3, "in": (2, 9, 8), "convs": [(4, 3, 1, 1, 2), (5, 3, 2, 0, 0)], "linears": [7, 4]}


def classical_net():
    return build_sequential(SPEC, classical=True)


def test_twin_is_deterministic_with_mac_layers_and_full_range_weights():
    images = random_images(16, shape=SPEC["in"])
    net = quantize_classical(classical_net(), images, weight_bits=6)
    assert dumps(net) == dumps(quantize_classical(classical_net(), images, weight_bits=6))
    assert [layer["op"] for layer in net.layers] == ["mac_conv2d", "maxpool2d", "mac_conv2d", "flatten",
                                                      "mac_linear", "mac_linear"]
    assert net.is_mac and not net.bm_layers() and len(net.weight_layers()) == 4
    for layer in net.weight_layers():
        w = net.table(layer, "weights")
        assert np.abs(w).max() <= 31
        # e_acc is the smallest exponent that fits: one step finer and the largest weight would not.
        assert np.abs(w).max() >= 16, layer["name"]


@pytest.mark.parametrize("act_bits, weight_bits", [(8, 8), (5, 4), (8, 12)])
def test_every_layer_is_within_the_documented_bound_of_the_float_layer(act_bits, weight_bits):
    # |Y * 2^e_acc - y| <= sum_k x_k * step / 2 + 2^e_acc / 2 with step = 2^e_acc / s_in the weight code's
    # size; a hidden layer's code is off by at most that / 2^e_out + 1/2 (clamping only shrinks it).
    model = classical_net().double()
    images = random_images(32, shape=SPEC["in"], seed=act_bits)
    net = quantize_classical(model, images, act_bits=act_bits, weight_bits=weight_bits)
    outs = golden.forward(net, images, return_all=True)
    modules = [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    prev, checked = images.astype(np.int64), 0
    for layer in net.layers:
        if layer["op"] not in ("mac_conv2d", "mac_linear"):
            prev = outs[layer["name"]]
            continue
        mod = modules.pop(0)
        s_in = layer["in_scale"][0] / layer["in_scale"][1]
        x = torch.from_numpy(prev.astype(np.float64)) * s_in
        e_acc = 2.0 ** layer["acc_scale_exp"]
        with torch.no_grad():
            y = mod(x)
            if isinstance(mod, nn.Conv2d):
                ones = torch.ones((1, *mod.weight.shape[1:]), dtype=torch.float64)
                x_sum = F.conv2d(x, ones, stride=mod.stride, padding=mod.padding)
            else:
                x_sum = x.sum(dim=1, keepdim=True)
        limit = x_sum * (e_acc / s_in) / 2 + e_acc / 2
        out = torch.from_numpy(outs[layer["name"]].astype(np.float64))
        if layer["relu"]:
            scale = 2.0 ** layer["out_scale_exp"]
            err = (out - (y / scale).clamp(0, layer["out_max"])).abs()
            limit = limit / scale + 0.5
        else:
            err = (out * e_acc - y).abs()
        assert bool((err <= limit * (1 + 1e-9)).all()), f"{layer['name']}: max excess {float((err - limit).max())}"
        prev, checked = outs[layer["name"]], checked + 1
    assert checked == 4


def test_the_example_twin_keeps_the_float_accuracy():
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.resources import examples_dir
    from bmhw.train.loop import predict

    images, labels = load_mnist_sample()
    model = load_checkpoint(examples_dir() / "lenet_classical_mnist.pt").model
    net = quantize_classical(model, images[:200])
    float_acc = (predict(model, images) == labels).mean()
    twin_acc = (golden.predict(net, images) == labels).mean()
    assert twin_acc >= float_acc - 0.01, (twin_acc, float_acc)
    assert (golden.predict(net, images) == predict(model, images)).mean() >= 0.98


@pytest.mark.parametrize("model, fragment", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), BMLinear(2, 2)), "BM layer in a classical network"),
    (nn.Sequential(nn.Conv2d(2, 2, 1, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), "groups 1"),
    (nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.Linear(3, 2)), "not followed by a ReLU"),
])
def test_unsupported_classical_networks_are_refused_by_name(model, fragment):
    with pytest.raises(BmhwError, match=fragment):
        quantize_classical(model, random_images(4, shape=(2, 2, 2)))


@pytest.mark.parametrize("option", [{"weight_bits": 1}, {"weight_bits": 17}, {"act_bits": 1}])
def test_out_of_range_options_are_refused(option):
    with pytest.raises(BmhwError, match="must be between"):
        quantize_classical(classical_net(), random_images(4, shape=SPEC["in"]), **option)


def test_cli_quantizes_a_classical_checkpoint_into_its_mac_twin(tmp_path):
    from bmhw.resources import examples_dir

    twin = tmp_path / "twin.bmq"
    code, out, err = run_main(["quantize", examples_dir() / "lenet_classical_mnist.pt", "-o", twin,
                               "--weight-bits", "6", "--calib-images", "100"])
    assert code == 0, err
    assert "the MAC twin of a classical network (6-bit weights)" in " ".join(out.split())
    net = load_bmq(twin)
    assert net.is_mac and all(layer["weight_bits"] == 6 for layer in net.weight_layers())
    code, out, err = run_main(["eval", twin])
    assert code == 0 and "accuracy:" in out, err
    code, out, err = run_main(["export", twin, "--target", "hls", "-o", tmp_path / "hls"])
    assert code == 2 and "export it with --target verilog" in err and err.count("\n") == 1
    assert not (tmp_path / "hls").exists()
