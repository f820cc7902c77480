"""The per-channel re-fit of 1.5-branch layers (bmhw.train.calibrate)."""

import math

import torch
from torch import nn

from bmhw.train.calibrate import refit_bm15, refit_layer
from bmhw.models import lenet
from bmhw.nn import BMConv2d, BMLinear, to_bm


def max_term_by_hand(x, weight, dx, a):
    """a_o * max_k (x_k + dx) * max(w_ok, eps): the positive-part max term, by explicit loops."""
    eps = 1e-6 * float(weight.abs().max())
    rows = []
    for xn in x.tolist():
        rows.append([a[o] * max((xk + dx) * max(w, eps) for xk, w in zip(xn, wo))
                     for o, wo in enumerate(weight.tolist())])
    return torch.tensor(rows, dtype=torch.float64)


def test_refit_recovers_an_exactly_representable_target():
    # A target that a 1.5-branch neuron can represent exactly: a_o * (positive-part max term)
    # - dw * sum x + c_o with dw a power of two. The least-squares fit must find it.
    torch.manual_seed(0)
    weight = torch.randn(3, 6, dtype=torch.float64)
    x = torch.rand(400, 6, dtype=torch.float64)
    a, c, dw = [2.0, 0.5, 7.0], [0.3, -1.0, 2.5], 0.25
    layer = to_bm(nn.Linear(6, 3).double(), branches=1.5)
    target = (max_term_by_hand(x, weight, float(layer.delta_x), a) - dw * x.sum(1, keepdim=True)
              + torch.tensor(c, dtype=torch.float64))
    stats = refit_layer(layer, x, target, weight)
    assert stats["delta_w"] == dw and float(layer.delta_w) == dw
    assert stats["r2"] > 0.999999
    with torch.no_grad():
        assert torch.allclose(layer(x), target, rtol=0, atol=1e-8)


def test_refit_keeps_the_neuron_form_and_chooses_a_power_of_two():
    torch.manual_seed(1)
    classical = nn.Conv2d(2, 4, 3, padding=1)
    layer = to_bm(classical, branches=1.5)
    x = torch.rand(16, 2, 6, 6)
    with torch.no_grad():
        target = classical(x)
    stats = refit_layer(layer, x, target, classical.weight)
    dw = float(layer.delta_w)
    assert dw == stats["delta_w"] and dw > 0 and math.log2(dw) == round(math.log2(dw))
    assert isinstance(layer, BMConv2d) and layer.reduce == "max"
    assert torch.isfinite(layer.v).all() and torch.isfinite(layer.bias).all()


def test_refit_beats_plain_conversion_on_every_layer():
    torch.manual_seed(2)
    teacher = lenet("classical").eval()
    x = torch.rand(64, 1, 28, 28)
    plain = to_bm(teacher, branches=1.5)
    fitted = to_bm(teacher, branches=1.5)
    refit_bm15(fitted, teacher, x)
    with torch.no_grad():
        for k, name in enumerate(teacher.WEIGHT_LAYERS):
            x_in = teacher.layer_input(name, teacher.forward_range(x, 0, k))
            target = getattr(teacher, name)(x_in)
            err_plain = float(((getattr(plain, name)(x_in) - target) ** 2).mean())
            err_fitted = float(((getattr(fitted, name)(x_in) - target) ** 2).mean())
            assert err_fitted < err_plain, name


def test_refit_gives_a_bias_free_layer_a_bias():
    torch.manual_seed(3)
    classical = nn.Linear(5, 2, bias=False)
    layer = to_bm(classical, branches=1.5)
    assert layer.bias is None
    x = torch.rand(50, 5)
    refit_layer(layer, x, classical(x).detach() + 3.0, classical.weight)
    assert isinstance(layer, BMLinear) and layer.bias is not None and layer.bias.requires_grad


def test_a_signed_refit_recovers_a_target_with_mirrored_channels():
    # Channel 0 is the paper's neuron on the positive part of w; channels 1 and 2 are mirrored: the max runs
    # over the negative part (-w)+ and the whole term is subtracted. The signed fit must find each sign.
    torch.manual_seed(4)
    weight = torch.randn(3, 6, dtype=torch.float64)
    x = torch.rand(400, 6, dtype=torch.float64)
    layer = to_bm(nn.Linear(6, 3).double(), branches=1.5)
    dx, dw = float(layer.delta_x), 0.125
    plus = max_term_by_hand(x, weight, dx, [1.5, 1.0, 1.0])
    minus = max_term_by_hand(x, -weight, dx, [1.0, 0.7, 3.0])
    core = torch.stack([plus[:, 0], -minus[:, 1], -minus[:, 2]], 1)
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
    target = core - sign * dw * x.sum(1, keepdim=True) + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    unsigned = refit_layer(to_bm(nn.Linear(6, 3).double(), branches=1.5), x, target, weight)
    stats = refit_layer(layer, x, target, weight, signed=True)
    assert torch.equal(layer.sign, sign.to(layer.sign)) and stats["negative"] == 2
    assert stats["delta_w"] == dw and stats["r2"] > 0.999999 > unsigned["r2"]
    with torch.no_grad():
        assert torch.allclose(layer(x), target, rtol=0, atol=1e-8)
