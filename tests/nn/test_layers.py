"""Tests for bmhw.nn.layers: BMLinear and BMConv2d against the neuron formulas, written out per element.

Expected values come from explicit Python loops over rows, outputs and inputs (convolution patches
too, padding and stride included), in float64 with the ``math`` module.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bmhw.nn import LOG_ZERO, BMConv2d, BMLinear
from bmhw.nn.layers import surrogate_gradient
from reference import ref_reduce

REDUCTIONS = ("max", "lse", "smorph", "lmorph")
FLOOR = math.exp(LOG_ZERO)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state, so that results never depend on test order."""
    torch.manual_seed(0)


def ref_bm15(x, v, dx, dw, b, reduce, a):
    """y = exp R(ln(x + dx) + v) - dw sum x - dx sum exp v + b, for one patch x and one output's v."""
    m = ref_reduce([math.log(xk + dx) + vk for xk, vk in zip(x, v)], reduce, a)
    return math.exp(m) - dw * sum(x) - dx * sum(math.exp(vk) for vk in v) + b


def ref_bm4(x, vp, vn, b, reduce, a):
    """Four branches over x+ = max(x, 0), x- = max(-x, 0); ln 0 is the floor LOG_ZERO."""
    lp = [math.log(max(xk, 0.0, FLOOR)) for xk in x]
    ln = [math.log(max(-xk, 0.0, FLOOR)) for xk in x]

    def branch(lx, vv):
        return math.exp(ref_reduce([l + w for l, w in zip(lx, vv)], reduce, a))

    return branch(lp, vp) - branch(lp, vn) - branch(ln, vp) + branch(ln, vn) + b


def ref_rows(layer, patches, reduce, a):
    """Apply the reference neuron to a list of patches; returns rows x outputs (nested lists)."""
    o = layer.out_count
    b = layer.bias.tolist() if layer.bias is not None else [0.0] * o
    if layer.branches == 1.5:
        v = layer.v.detach().reshape(o, -1).tolist()
        dx, dw = float(layer.delta_x), float(layer.delta_w)
        return [[ref_bm15(p, v[j], dx, dw, b[j], reduce, a) for j in range(o)] for p in patches]
    vp = layer.v_pos.detach().reshape(o, -1).tolist()
    vn = layer.v_neg.detach().reshape(o, -1).tolist()
    return [[ref_bm4(p, vp[j], vn[j], b[j], reduce, a) for j in range(o)] for p in patches]


def randomise(layer, seed):
    """Double precision, and log-weights spread so that every branch and every reduction matters."""
    g = torch.Generator().manual_seed(seed)
    layer.double()
    with torch.no_grad():
        if layer.branches == 1.5:
            layer.v.copy_(torch.randn(layer.v.shape, generator=g, dtype=torch.float64) * 0.5)
        else:
            for p in (layer.v_pos, layer.v_neg):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5 - 0.3)
            layer.v_neg.view(-1)[::3] = LOG_ZERO  # some "zero" weights, as formula 2 produces
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=g, dtype=torch.float64))
    return layer


def sample_input(shape, branches, seed):
    g = torch.Generator().manual_seed(seed)
    if branches == 1.5:
        return torch.rand(shape, generator=g, dtype=torch.float64) * 2  # x >= 0
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    x.view(-1)[::5] = 0.0  # exact zeros exercise the ln 0 floor
    return x


def conv_patches(x, kernel, stride, padding):
    """Patches of x (B x C x H x W) in (b, oy, ox) raster order, each flattened as (c, ky, kx)."""
    b_, c_, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    xs = x.tolist()
    patches = []
    for b in range(b_):
        for oy in range(ho):
            for ox in range(wo):
                patch = []
                for c in range(c_):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                            inside = 0 <= iy < h and 0 <= ix < w
                            patch.append(xs[b][c][iy][ix] if inside else 0.0)
                patches.append(patch)
    return patches, ho, wo


# --- values -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("branches", [1.5, 4])
def test_bmlinear_matches_neuron_formula(branches, reduce):
    a = None if reduce == "max" else 2.0
    layer = randomise(BMLinear(5, 3, branches=branches, reduce=reduce, alpha=a), seed=1)
    x = sample_input((2, 2, 5), branches, seed=2)  # extra leading dims pass through
    y = layer(x)
    assert y.shape == (2, 2, 3)
    expected = ref_rows(layer, x.reshape(-1, 5).tolist(), reduce, a)
    assert torch.allclose(y.reshape(-1, 3), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("branches", [1.5, 4])
def test_bmconv2d_matches_neuron_formula_with_padding_and_stride_2(branches, reduce):
    a = None if reduce == "max" else 2.0
    kernel, stride, padding = (3, 2), (2, 2), (1, 1)
    layer = randomise(BMConv2d(2, 3, kernel, stride=stride, padding=padding, branches=branches, reduce=reduce,
                               alpha=a), seed=3)
    x = sample_input((2, 2, 5, 6), branches, seed=4)
    y = layer(x)
    patches, ho, wo = conv_patches(x, kernel, stride, padding)
    assert y.shape == (2, 3, ho, wo)
    rows = ref_rows(layer, patches, reduce, a)
    expected = torch.tensor(rows, dtype=torch.float64).reshape(2, ho, wo, 3).permute(0, 3, 1, 2)
    assert torch.allclose(y, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel, stride, padding, hw", [
    (3, 1, 0, (7, 7)), (3, 2, 1, (7, 8)), ((2, 3), (2, 1), (0, 2), (6, 5)), (5, 3, 2, (9, 11)), (1, 2, 0, (4, 5)),
])
def test_bmconv2d_output_shape_matches_nn_conv2d(kernel, stride, padding, hw):
    x = torch.rand(2, 3, *hw)
    ref = nn.Conv2d(3, 4, kernel, stride=stride, padding=padding)
    bm = BMConv2d(3, 4, kernel, stride=stride, padding=padding)
    assert bm(x).shape == ref(x).shape
    assert bm.output_size(*hw) == tuple(ref(x).shape[2:])


def test_layer_without_bias_matches_formula_with_b_zero():
    layer = BMLinear(4, 2, bias=False).double()
    assert layer.bias is None and "bias" not in dict(layer.named_parameters())
    x = torch.rand(3, 4, dtype=torch.float64)
    expected = ref_rows(layer, x.tolist(), "max", None)
    assert torch.allclose(layer(x), torch.tensor(expected, dtype=torch.float64), rtol=1e-10, atol=1e-10)


# --- argument validation ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(branches=3), "branches"),
    (dict(branches=2), "branches"),
    (dict(reduce="bogus"), "reduce"),
    (dict(reduce="max", alpha=2.0), "alpha"),
    (dict(reduce="max", learn_alpha=True), "alpha"),
    (dict(reduce="lse", alpha=0.0), "alpha"),
    (dict(reduce="lse", alpha=-1.0), "alpha"),
])
@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_invalid_arguments_raise_value_error(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        if cls == "linear":
            BMLinear(3, 2, **kwargs)
        else:
            BMConv2d(1, 2, 3, **kwargs)


# --- gradients ----------------------------------------------------------------------------------------

def test_hard_max_15_gradient_reaches_one_weight_per_output():
    layer = randomise(BMLinear(6, 4, branches=1.5, reduce="max"), seed=5)
    x = torch.rand(1, 6, dtype=torch.float64) + 0.1
    layer(x).sum().backward()
    v = layer.v.detach()
    dx = float(layer.delta_x)
    # Remove the analytic gradient of -dx * sum exp(v), which reaches every weight.
    from_max = layer.v.grad + dx * torch.exp(v)
    for o in range(4):
        terms = [math.log(x[0, k].item() + dx) + v[o, k].item() for k in range(6)]
        k_star = max(range(6), key=terms.__getitem__)
        nonzero = [k for k in range(6) if abs(from_max[o, k].item()) > 1e-12]
        assert nonzero == [k_star]
        assert from_max[o, k_star].item() == pytest.approx(math.exp(terms[k_star]), rel=1e-12)


def test_hard_max_4_gradient_reaches_one_weight_per_branch_per_output():
    layer = randomise(BMLinear(8, 3, branches=4, reduce="max"), seed=6)
    with torch.no_grad():  # ordinary (not LOG_ZERO) log-weights everywhere
        layer.v_neg.copy_(torch.randn(3, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.5)
    x = torch.tensor([[0.5, -1.2, 2.0, -0.3, 1.1, -2.2, 0.7, -0.9]], dtype=torch.float64)
    layer(x).sum().backward()
    pos = [k for k in range(8) if x[0, k] > 0]
    neg = [k for k in range(8) if x[0, k] < 0]
    for param in (layer.v_pos, layer.v_neg):
        w = param.detach()
        for o in range(3):
            # one arg-max among the positive inputs (branch with x+), one among the negative (x-)
            best_pos = max(pos, key=lambda k: math.log(x[0, k].item()) + w[o, k].item())
            best_neg = max(neg, key=lambda k: math.log(-x[0, k].item()) + w[o, k].item())
            nonzero = [k for k in range(8) if param.grad[o, k] != 0]
            assert nonzero == sorted([best_pos, best_neg])


def test_surrogate_gradient_keeps_the_max_forward_and_takes_the_softmax_backward():
    """Forward: the exact max, bit for bit. Backward: d exp(R)/dv[o, k] = exp(max) * softmax_k(alpha * terms),
    computed here by hand from the terms, instead of the one arg-max."""
    alpha = 3.0
    layer = randomise(BMLinear(6, 4, branches=1.5, reduce="max"), seed=5)
    x = torch.rand(2, 6, dtype=torch.float64) + 0.1
    plain = layer(x)
    with surrogate_gradient(alpha):
        y = layer(x)
    assert torch.equal(y, plain)
    y.sum().backward()
    v, dx = layer.v.detach(), float(layer.delta_x)
    from_max = layer.v.grad + 2 * dx * torch.exp(v)  # two rows: -dx * sum exp(v) reaches every weight twice
    expected = torch.zeros_like(v)
    for n in range(2):
        for o in range(4):
            terms = [math.log(x[n, k].item() + dx) + v[o, k].item() for k in range(6)]
            top = max(terms)
            weights = [math.exp(alpha * (t - top)) for t in terms]
            for k in range(6):
                expected[o, k] += math.exp(top) * weights[k] / sum(weights)
    assert torch.allclose(from_max, expected, rtol=1e-10, atol=1e-12)
    assert (from_max.abs() > 1e-9).sum() > 4  # more than one weight per output learns


def test_surrogate_gradient_block_restores_the_layers_and_rejects_a_bad_temperature():
    layer = BMConv2d(2, 3, 3, branches=1.5, reduce="max")
    with surrogate_gradient(8.0):
        assert layer.surrogate_alpha == 8.0
        with surrogate_gradient(None):  # None leaves the setting of an outer block
            assert layer.surrogate_alpha == 8.0
    assert layer.surrogate_alpha is None
    with pytest.raises(ValueError, match="positive"):
        with surrogate_gradient(0.0):
            pass


def test_surrogate_gradient_on_a_convolution_matches_the_unfolded_dense_layer():
    conv = randomise(BMConv2d(2, 3, 3, padding=1, branches=1.5, reduce="max"), seed=9)
    dense = BMLinear(18, 3, branches=1.5, reduce="max").double()
    with torch.no_grad():
        dense.v.copy_(conv.v.reshape(3, -1))
        dense.bias.copy_(conv.bias)
        dense.delta_w.copy_(conv.delta_w)
        dense.delta_x.copy_(conv.delta_x)
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    with surrogate_gradient(4.0):
        conv(x).sum().backward()
        dense(conv.patches(x)).sum().backward()
    assert torch.allclose(conv.v.grad.reshape(3, -1), dense.v.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("branches", [1.5, 4])
def test_lse_gradient_reaches_every_weight(branches):
    layer = randomise(BMLinear(6, 4, branches=branches, reduce="lse", alpha=1.0), seed=8)
    x = torch.tensor([[0.5, 1.5, 0.2, 2.0, 0.9, 1.1]], dtype=torch.float64)
    if branches == 4:
        x = x * torch.tensor([1, -1, 1, -1, 1, -1], dtype=torch.float64)
    layer(x).sum().backward()
    if branches == 1.5:
        from_max = layer.v.grad + float(layer.delta_x) * torch.exp(layer.v.detach())
        assert (from_max.abs() > 1e-6).all()
    else:
        assert (layer.v_pos.grad != 0).all() and (layer.v_neg.grad != 0).all()


@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_learn_alpha_true_makes_alpha_a_parameter_with_gradient(cls):
    layer = (BMLinear(4, 3, reduce="lse", alpha=3.0, learn_alpha=True) if cls == "linear"
             else BMConv2d(2, 3, 3, padding=1, reduce="smorph", alpha=3.0, learn_alpha=True))
    assert isinstance(layer.alpha, nn.Parameter)
    assert "alpha" in dict(layer.named_parameters())
    assert "alpha" in layer.state_dict() and float(layer.state_dict()["alpha"]) == 3.0
    x = torch.rand(2, 4) if cls == "linear" else torch.rand(2, 2, 4, 4)
    layer(x).pow(2).sum().backward()
    assert layer.alpha.grad is not None and torch.isfinite(layer.alpha.grad) and layer.alpha.grad != 0


@pytest.mark.parametrize("cls", ["linear", "conv"])
def test_learn_alpha_false_keeps_alpha_a_buffer_in_state_dict(cls):
    layer = (BMLinear(4, 3, reduce="lmorph", alpha=5.0) if cls == "linear"
             else BMConv2d(2, 3, 3, reduce="lse", alpha=5.0))
    assert not isinstance(layer.alpha, nn.Parameter)
    assert "alpha" not in dict(layer.named_parameters())
    assert "alpha" in dict(layer.named_buffers())
    assert float(layer.state_dict()["alpha"]) == 5.0
    x = torch.rand(2, 4) if cls == "linear" else torch.rand(2, 2, 4, 4)
    layer(x).sum().backward()
    assert layer.alpha.grad is None


def test_hard_max_layer_has_no_alpha():
    layer = BMLinear(4, 3, reduce="max")
    assert layer.alpha is None and "alpha" not in layer.state_dict()


def test_default_alpha_is_one_for_smooth_reductions():
    assert float(BMLinear(4, 3, reduce="lse").alpha) == 1.0


@pytest.mark.parametrize("branches", [1.5, 4])
@pytest.mark.parametrize("reduce", ["max", "lse", "smorph", "lmorph"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_layer_gradcheck_in_double_for_every_branch_type_and_reduction(branches, reduce, kind):
    # The layers as users call them (fused kernels, exponential-domain products, image-side logarithm):
    # gradients of input, log-weights, bias and a learned alpha against finite differences.
    torch.manual_seed(0)
    alpha = None if reduce == "max" else 1.5
    if kind == "linear":
        layer = BMLinear(7, 4, branches=branches, reduce=reduce, alpha=alpha, learn_alpha=alpha is not None)
        x = torch.rand(3, 7, dtype=torch.float64) + 0.1
    else:
        layer = BMConv2d(2, 3, 3, padding=1, stride=2, branches=branches, reduce=reduce, alpha=alpha,
                         learn_alpha=alpha is not None)
        x = torch.rand(2, 2, 5, 5, dtype=torch.float64) + 0.1
    if branches == 4:
        x = x - 0.6  # both signs: both halves of the four branches carry gradient
    layer = layer.double()
    names = [name for name, _ in layer.named_parameters()]
    x.requires_grad_(True)

    def run(inp, *values):
        return torch.func.functional_call(layer, dict(zip(names, values)), (inp,))

    values = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    assert torch.autograd.gradcheck(run, (x, *values), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_mirrored_outputs_negate_the_neuron_but_not_the_bias(reduce, kind):
    # y_o = s_o (exp R(ln(x + dx) + v) - dw sum x - dx sum exp v) + b_o, checked per element.
    a = None if reduce == "max" else 2.0
    if kind == "linear":
        layer = randomise(BMLinear(5, 3, reduce=reduce, alpha=a), seed=5)
        x = sample_input((4, 5), 1.5, seed=6)
        patches, shape = x.tolist(), (4, 3)
    else:
        layer = randomise(BMConv2d(2, 3, 3, padding=1, reduce=reduce, alpha=a), seed=7)
        x = sample_input((2, 2, 4, 4), 1.5, seed=8)
        patches, ho, wo = conv_patches(x, (3, 3), (1, 1), (1, 1))
    with torch.no_grad():
        layer.sign.copy_(torch.tensor([1.0, -1.0, -1.0]))
    assert layer.signed
    y = layer(x)
    o = layer.out_count
    v = layer.v.detach().reshape(o, -1).tolist()
    dx, dw, b, s = float(layer.delta_x), float(layer.delta_w), layer.bias.tolist(), layer.sign.tolist()
    rows = [[s[j] * (ref_bm15(p, v[j], dx, dw, 0.0, reduce, a)) + b[j] for j in range(o)] for p in patches]
    expected = torch.tensor(rows, dtype=torch.float64)
    got = y if kind == "linear" else y.permute(0, 2, 3, 1).reshape(-1, o)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_a_mirrored_conversion_at_lse_alpha_one_is_exact():
    # With s = -1 the log-weights are ln(dw - w): exp LSE_1 sums (x + dx)(dw - w) and the identity
    # sum w x = -[sum (x + dx)(dw - w) - dw sum x - dx sum (dw - w)] still holds.
    from bmhw.nn.logweights import log_weights_15

    torch.manual_seed(3)
    classical = nn.Linear(7, 4).double()
    layer = BMLinear(7, 4, reduce="lse", alpha=1.0).double()
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    dw = 2.0
    with torch.no_grad():
        layer.delta_w.fill_(dw)
        layer.sign.copy_(sign)
        layer.v.copy_(log_weights_15(classical.weight, dw, sign))
        layer.bias.copy_(classical.bias)
    x = torch.rand(5, 7, dtype=torch.float64)
    assert torch.allclose(layer(x), classical(x), rtol=1e-12, atol=1e-12)
    assert torch.allclose(layer.classical_weight(), classical.weight, rtol=1e-12, atol=1e-12)


def test_checkpoints_without_a_sign_load_as_all_positive():
    layer = BMLinear(4, 2)
    state = {k: v for k, v in layer.state_dict().items() if k != "sign"}
    fresh = BMLinear(4, 2)
    with torch.no_grad():
        fresh.sign.fill_(-1.0)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.sign, torch.ones(2)) and not fresh.signed
