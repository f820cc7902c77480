"""Tests for bmhw.nn.convert: classical layers to BM layers and back.

Expected weights come from ``math.log`` / ``math.exp`` per element; expected outputs from the
classical layer itself, which the conversion must reproduce where the algebra says it is exact.
"""

from __future__ import annotations

import copy
import math
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.nn import LOG_ZERO, BMConv2d, BMLinear, delta_w_for, power_of_two_at_least, to_bm, to_classical


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, so that results never depend on test order."""
    torch.manual_seed(0)


def one_input_linear(w: float, b: float) -> nn.Linear:
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(w)
        layer.bias.fill_(b)
    return layer


def is_power_of_two(x: float) -> bool:
    return x > 0 and math.frexp(x)[0] == 0.5


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        flatten=nn.Flatten(),
        fc=nn.Linear(4 * 5 * 5, 3),
    ))


# --- exactness where the algebra is exact -------------------------------------------------------------

@pytest.mark.parametrize("w", [0.7, -0.6, 1.9, -3.0])  # |w| > 0.5: see test_small_delta_w_is_accepted
def test_one_input_neuron_15_branches_hard_max_exact_on_positive_inputs(w):
    classical = one_input_linear(w, 0.3)
    bm = to_bm(classical, branches=1.5, reduce="max")
    x = torch.tensor([[0.0], [0.5], [1.0], [3.0], [10.0]])
    scale = (x + float(bm.delta_x)) * 2 * float(bm.delta_w)  # size of the terms that cancel
    assert ((bm(x) - classical(x)).abs() <= 1e-6 * scale).all()


@pytest.mark.parametrize("w", [0.7, -0.4, 1.9, -3.0])
def test_one_input_neuron_4_branches_hard_max_exact_on_any_sign(w):
    classical = one_input_linear(w, 0.3)
    bm = to_bm(classical, branches=4, reduce="max")
    x = torch.tensor([[-10.0], [-1.0], [-0.5], [0.0], [0.5], [3.0]])
    assert torch.allclose(bm(x), classical(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_4_branch_hard_max_equals_classical_on_one_hot_inputs(sign):
    torch.manual_seed(1)
    classical = nn.Linear(6, 4, bias=False)
    bm = to_bm(classical, branches=4, reduce="max")
    x = sign * torch.eye(6)
    expected = classical(x)
    assert (expected != 0).all()
    assert torch.allclose(bm(x), expected, rtol=1e-6, atol=0)


def test_4_branch_hard_max_one_hot_with_bias():
    torch.manual_seed(2)
    classical = nn.Linear(5, 3)
    bm = to_bm(classical, branches=4, reduce="max")
    for x in (torch.eye(5), -2.5 * torch.eye(5)):
        assert torch.allclose(bm(x), classical(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_15_branch_lse_alpha_1_equals_classical_on_nonnegative_inputs(kind):
    torch.manual_seed(3)
    if kind == "linear":
        classical, x = nn.Linear(20, 7), torch.rand(5, 20) * 3
    else:
        classical, x = nn.Conv2d(3, 5, 3, stride=2, padding=1), torch.rand(2, 3, 7, 8) * 3
    bm = to_bm(classical, branches=1.5, reduce="lse", alpha=1.0)
    expected = classical(x)
    # Terms of size fan_in * max(x + dx) * 2 dw cancel; float32 leaves ~1e-7 of that.
    fan_in = classical.weight[0].numel()
    scale = fan_in * (float(x.max()) + float(bm.delta_x)) * 2 * float(bm.delta_w)
    assert (bm(x) - expected).abs().max() <= 1e-6 * scale
    # and the hard max, the same weights, is far off: the test tells the two apart
    hard = to_bm(classical, branches=1.5, reduce="max")
    assert (hard(x) - expected).abs().max() > 100 * 1e-6 * scale


# --- the weight maps ----------------------------------------------------------------------------------

def test_15_branch_log_weights_are_ln_w_plus_dw_and_dw_is_power_of_two_above_max_w():
    torch.manual_seed(4)
    classical = nn.Linear(5, 3)
    bm = to_bm(classical, branches=1.5)
    dw = float(bm.delta_w)
    w = classical.weight.tolist()
    max_abs = max(abs(e) for row in w for e in row)
    assert is_power_of_two(dw) and dw > max_abs and dw / 2 < max_abs * (1 + 2**-6)
    expected = [[math.log(e + dw) for e in row] for row in w]
    assert torch.allclose(bm.v.double(), torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)


def test_4_branch_log_weights_follow_formula_2():
    classical = nn.Linear(5, 1, bias=False)
    w = [0.5, -0.25, 0.0, 2.0, -3.0]
    with torch.no_grad():
        classical.weight.copy_(torch.tensor([w]))
    bm = to_bm(classical, branches=4)
    exp_pos = [math.log(e) if e > 0 else LOG_ZERO for e in w]
    exp_neg = [math.log(-e) if e < 0 else LOG_ZERO for e in w]
    assert torch.allclose(bm.v_pos.double(), torch.tensor([exp_pos], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(bm.v_neg.double(), torch.tensor([exp_neg], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("max_abs", [1e-3, 0.3, 0.5, 1.0, 3.7, 100.0, 2.0**-20])
def test_delta_w_is_power_of_two_strictly_above_max_abs_weight(max_abs):
    weight = torch.tensor([[max_abs * 0.25, -max_abs], [0.0, max_abs * 0.5]])
    dw = delta_w_for(weight)
    m = float(weight.abs().max())
    assert is_power_of_two(dw) and dw > m  # strictly: w + dw > 0 for the most negative weight
    assert dw >= m * (1 + 2**-6) and dw / 2 < m * (1 + 2**-6)  # the smallest such power of two


def test_converted_layer_carries_the_delta_w_of_its_weights():
    torch.manual_seed(7)
    classical = nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        classical.weight.mul_(8)  # well above the default initialisation's range
    bm = to_bm(classical, branches=1.5)
    assert float(bm.delta_w) == delta_w_for(classical.weight) and is_power_of_two(float(bm.delta_w))


@pytest.mark.parametrize("how", ["to_bm", "constructor"])
def test_small_delta_w_is_accepted(how):
    torch.manual_seed(8)
    if how == "constructor":
        layer = BMLinear(2, 2, branches=1.5, delta_w=2.0**-10)
        assert float(layer.delta_w) == 2.0**-10
        return
    classical = nn.Linear(2, 2)
    with torch.no_grad():
        classical.weight.mul_(1e-3)  # a layer trained with weight decay: far below the init range
    bm = to_bm(classical, branches=1.5)
    assert torch.allclose(to_classical(bm).weight, classical.weight, atol=1e-8)


@pytest.mark.parametrize("x", [1.0, 0.75, 3.0, 2.0**-30, 1000.0])
def test_power_of_two_at_least_is_smallest_power_above(x):
    p = power_of_two_at_least(x)
    assert is_power_of_two(p) and p >= x and p / 2 < x


@pytest.mark.parametrize("k", [-11, 6, 9, 30])
def test_power_of_two_at_least_just_above_a_power_of_two(k):
    x = 2.0**k * (1 + 2**-52)
    assert power_of_two_at_least(x) >= x


# --- round trip ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("branches", [1.5, 4])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_to_classical_of_to_bm_recovers_the_layer(kind, branches):
    torch.manual_seed(5)
    classical = nn.Linear(7, 3) if kind == "linear" else nn.Conv2d(3, 4, (3, 2), stride=2, padding=(1, 0))
    back = to_classical(to_bm(classical, branches=branches))
    assert type(back) is type(classical)
    if kind == "conv":
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding"):
            assert getattr(back, attr) == getattr(classical, attr), attr
    assert torch.equal(back.bias, classical.bias)
    scale = float(classical.weight.detach().abs().max())
    assert torch.allclose(back.weight, classical.weight, rtol=0, atol=1e-6 * scale)


def test_to_bm_keeps_float64_precision():
    torch.manual_seed(6)
    classical = nn.Linear(5, 3).double()
    bm = to_bm(classical, branches=1.5)
    dw = float(bm.delta_w)
    expected = [[math.log(e + dw) for e in row] for row in classical.weight.tolist()]
    assert bm.v.dtype == torch.float64
    assert torch.allclose(bm.v, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_to_classical_keeps_dtype():
    bm = BMLinear(4, 2).double()
    assert to_classical(bm).weight.dtype == torch.float64


# --- models -------------------------------------------------------------------------------------------

def test_to_bm_converts_every_weight_layer_of_a_model_and_leaves_the_original_untouched():
    model = small_model()
    before = copy.deepcopy(model.state_dict())
    bm = to_bm(model, branches=1.5, reduce="lse", alpha=2.0, learn_alpha=True)
    assert isinstance(bm.features[0], BMConv2d) and isinstance(bm.fc, BMLinear)
    assert isinstance(bm.features[1], nn.ReLU) and isinstance(bm.flatten, nn.Flatten)
    for layer in (bm.features[0], bm.fc):
        assert layer.reduce == "lse" and isinstance(layer.alpha, nn.Parameter)
        assert float(layer.alpha.detach()) == 2.0
    # the original keeps its classical layers and weights, and shares no parameter with the copy
    assert type(model.features[0]) is nn.Conv2d and type(model.fc) is nn.Linear
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        bm.fc.bias.add_(1.0)
    assert torch.equal(model.fc.bias, before["fc.bias"])
    # and the converted model runs, computing the classical function (1.5 branches, LSE at alpha = 1)
    x = torch.rand(2, 1, 5, 5)
    exact = to_bm(model, branches=1.5, reduce="lse", alpha=1.0)
    assert torch.allclose(exact(x), model(x), atol=1e-4)


@pytest.mark.parametrize("names, converted", [({"features.0"}, "conv"), ({"fc"}, "fc"), (set(), None)])
def test_to_bm_layers_argument_restricts_conversion(names, converted):
    model = small_model()
    bm = to_bm(model, branches=4, layers=names)
    assert type(bm.features[0]) is (BMConv2d if converted == "conv" else nn.Conv2d)
    assert type(bm.fc) is (BMLinear if converted == "fc" else nn.Linear)


def test_to_classical_converts_a_model_back():
    model = small_model()
    back = to_classical(to_bm(model, branches=4))
    assert type(back.features[0]) is nn.Conv2d and type(back.fc) is nn.Linear
    x = torch.rand(2, 1, 5, 5)
    assert torch.allclose(back(x), model(x), atol=1e-5)


def test_to_bm_of_a_single_layer_returns_a_new_layer():
    classical = nn.Linear(3, 2)
    bm = to_bm(classical, branches=4)
    assert isinstance(bm, BMLinear) and type(classical) is nn.Linear


# --- errors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, problem", [
    (dict(groups=2), "groups=2"),
    (dict(dilation=2), "dilation"),
    (dict(padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (dict(padding="same"), "padding='same'"),
])
def test_unsupported_conv_raises_bmhw_error_naming_the_problem(kwargs, problem):
    model = nn.Sequential(OrderedDict(stem=nn.Conv2d(4, 4, 3, **kwargs)))
    with pytest.raises(BmhwError, match=re.escape(problem)) as err:
        to_bm(model)
    assert "stem" in str(err.value)
    with pytest.raises(BmhwError, match=re.escape(problem)):
        to_bm(model.stem, branches=4)


def test_to_bm_rejects_other_branch_counts():
    with pytest.raises(BmhwError, match="branches"):
        to_bm(nn.Linear(2, 2), branches=3)
