"""The quantizer (bmhw.quant) and the golden model's agreement with the float model, per layer."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from bmhw import golden
from bmhw.errors import BmhwError
from bmhw.ir import dumps
from bmhw.models import lenet
from bmhw.nn import BMConv2d, BMLinear, to_bm
from bmhw.quant import quantize
from bmhw.ir.widths import MAX_WIDTH
from random_nets import random_images, random_net


def test_quantize_is_deterministic():
    net_a = quantize(random_net(), random_images(32))
    net_b = quantize(random_net(), random_images(32))
    assert dumps(net_a) == dumps(net_b)


def test_ir_layers_and_widths():
    net = quantize(random_net(), random_images(32))
    assert [layer["op"] for layer in net.layers] == ["bm_conv2d", "maxpool2d", "bm_conv2d", "flatten", "bm_linear",
                                                      "bm_linear"]
    assert [layer["relu"] for layer in net.bm_layers()] == [True, True, True, False]
    for layer in net.bm_layers():
        assert all(1 <= bits <= MAX_WIDTH for bits in layer["widths"].values())


def bound(layer, e_star, s):
    f, p, g, h = (layer[k] for k in ("F", "P", "G", "H"))
    return (e_star * ((1 + 2.0 ** -(p + 1)) * 2 ** (2.0**-f) - 1) + 3 * 2.0 ** -(g + 1)
            + s * 2.0 ** -(g + h + 1))


@pytest.mark.parametrize("f, act_bits, signed", [(4, 4, False), (8, 8, False), (10, 6, False), (8, 8, True)])
def test_every_layer_is_within_the_documented_bound_of_the_float_layer(f, act_bits, signed):
    model = random_net(seed=f)
    if signed:  # mirrored outputs: the bound holds for s (E - C) as for E - C
        with torch.no_grad():
            for m in model:
                if isinstance(m, (BMConv2d, BMLinear)):
                    m.sign.copy_(torch.tensor([(-1.0) ** o for o in range(m.out_count)]))
    images = random_images(64, seed=f)
    net = quantize(model, images, act_bits=act_bits, log_frac_bits=f)
    outs = golden.forward(net, images, return_all=True)
    bm_modules = [m for m in model if isinstance(m, (BMConv2d, BMLinear))]
    prev = images.astype(np.int64)
    checked = 0
    for layer in net.layers:
        if layer["op"] not in ("bm_conv2d", "bm_linear"):
            prev = outs[layer["name"]]
            continue
        mod = bm_modules.pop(0).double()
        s_in = layer["in_scale"][0] / layer["in_scale"][1]
        x = torch.from_numpy(prev.astype(np.float64)) * s_in
        with torch.no_grad():
            cols = mod.patches(x)
            e_star = mod.max_term(cols)  # N x O, float64
            y = mod.rows(mod(x))
            s = torch.from_numpy(golden.patches(prev, layer).sum(axis=1).astype(np.float64))[:, None]
        beta = bound(layer, e_star, s)
        out = torch.from_numpy(outs[layer["name"]].astype(np.float64))
        out_rows = mod.rows(out) if layer["op"] == "bm_conv2d" else out
        if layer["relu"]:
            scale = 2.0 ** layer["out_scale_exp"]
            target = y.clamp(0, layer["out_max"] * scale)
            err = (out_rows * scale - target).abs()
            limit = beta + scale / 2
        else:
            err = (out_rows * 2.0 ** -layer["G"] - y).abs()
            limit = beta
        assert bool((err <= limit * (1 + 1e-9)).all()), f"{layer['name']}: max excess {float((err - limit).max())}"
        prev = outs[layer["name"]]
        checked += 1
    assert checked == 4


def test_quantized_lenet_agrees_with_float_on_most_images():
    torch.manual_seed(0)
    model = lenet("bm15").eval()
    images = random_images(64, shape=(1, 28, 28))
    net = quantize(model, images)
    with torch.no_grad():
        float_pred = model(torch.from_numpy(images).double().div(255).float()).argmax(1).numpy()
    assert (golden.predict(net, images) == float_pred).mean() >= 0.9


@pytest.mark.parametrize("model, fragment", [
    (nn.Sequential(nn.Conv2d(1, 2, 3)), "classical Conv2d"),
    (nn.Sequential(BMLinear(4, 2, branches=4)), "4-branch"),
    (nn.Sequential(BMLinear(4, 2, reduce="lse", alpha=2.0)), "reduce='lse'"),
    (nn.Sequential(BMLinear(4, 3), BMLinear(3, 2)), "not followed by a ReLU"),
    (nn.Sequential(nn.Sigmoid(), BMLinear(4, 2)), "Sigmoid"),
])
def test_unsupported_networks_are_refused_by_name(model, fragment):
    with pytest.raises(BmhwError, match=fragment.replace("(", r"\(")):
        quantize(model, random_images(4, shape=(1, 2, 2)))


def test_an_overflowing_configuration_names_signal_and_width():
    with pytest.raises(BmhwError, match=r"signal \w+ needs \d+ bits") as err:
        quantize(random_net(), random_images(8), exp_frac_bits=60, guard_bits=40)
    assert "\n" not in str(err.value) and str(MAX_WIDTH) in str(err.value)


@pytest.mark.parametrize("option", [dict(act_bits=1), dict(log_frac_bits=-1), dict(exp_frac_bits=0)])
def test_out_of_range_options_are_refused(option):
    with pytest.raises(BmhwError, match="must be between"):
        quantize(random_net(), random_images(4), **option)


def test_quantize_leaves_the_model_untouched():
    model = random_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantize(model, random_images(8))
    assert all(torch.equal(v, model.state_dict()[k]) and v.dtype == model.state_dict()[k].dtype
               for k, v in before.items())


def test_converted_classical_lenet_quantizes():
    torch.manual_seed(1)
    net = quantize(to_bm(lenet("classical"), branches=1.5), random_images(16, shape=(1, 28, 28)))
    assert net.num_classes == 10 and math.isfinite(sum(layer["G"] for layer in net.bm_layers()))


def test_scale_comes_from_what_the_next_layer_sees_after_pooling():
    # A 3x3 output pooled by 2 drops its last row and column: their values must not set the scale.
    conv = BMConv2d(1, 1, 1)
    with torch.no_grad():
        conv.v.fill_(math.log(2 * float(conv.delta_w)))  # y = dw * x: increasing in the pixel
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), BMLinear(1, 2)).eval()
    images = np.full((4, 1, 3, 3), 20, dtype=np.uint8)
    images[:, 0, 2, 2] = 255  # the brightest pixel sits in the cropped corner
    net = quantize(model, images, act_bits=4, log_frac_bits=4)
    peak, e = float(conv.delta_w) * 20 / 255, net.layers[0]["out_scale_exp"]
    assert 2.0**e * 15 >= peak > 2.0 ** (e - 1) * 15
