"""Several maxima per BM neuron (bmhw.nn.groups, bmhw.nn.layers): the grouped product, the grouped neuron against
its formula written out per element, exact conversion at G = K, checkpoints, CLI and the refusals downstream.

Expected values come from explicit Python loops in float64 over the groups of docs/neurons.md ("Several
maxima"), or from the classical layer itself where the algebra says the BM layer is exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.errors import BmhwError
from bmhw.models import lenet
from bmhw.nn import BMConv2d, BMLinear, to_bm
from bmhw.nn.groups import Maxima, exps_per_image, group_bounds, maxima_per_output, parse_maxima_options
from bmhw.nn.layers import surrogate_gradient
from bmhw.nn.maxplus import maxplus, maxplus_conv, reference_maxplus
from cli_runner import run_main
from reference import ref_reduce

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- groups --------------------------------------------------------------------------------------------------------

def test_group_bounds_are_contiguous_and_per_channel_for_a_convolution():
    assert group_bounds(150, 1) == ()
    assert group_bounds(150, 6) == (0, 25, 50, 75, 100, 125, 150)  # one group per 5x5 input channel
    assert group_bounds(10, 3) == (0, 3, 6, 10)
    assert group_bounds(4, 4) == (0, 1, 2, 3, 4)
    with pytest.raises(ValueError):
        group_bounds(4, 5)


@pytest.mark.parametrize("text, groups, split", [("1", 1, False), ("12", 12, False), ("6s", 6, True), ("K", "K", False),
                                                 ("Ks", "K", True), (3, 3, False)])
def test_maxima_parse(text, groups, split):
    m = Maxima.parse(text)
    assert (m.groups, m.split_sign) == (groups, split)
    assert Maxima.parse(str(m)) == m


@pytest.mark.parametrize("bad", ["0", "-1", "2x", "s", "", "k", 0, True, "1.5"])
def test_maxima_parse_refuses(bad):
    with pytest.raises(BmhwError, match="maxima"):
        Maxima.parse(bad)


def test_maxima_options_per_layer_win_over_the_default():
    names = ["conv1", "conv2", "fc1"]
    assert parse_maxima_options(["fc1=K", "6s"], names) == {"conv1": "6s", "conv2": "6s", "fc1": "K"}
    assert parse_maxima_options(["conv2=3", "conv1=1"], names) == {"conv2": "3"}
    with pytest.raises(BmhwError, match="no weight layer 'fc9'"):
        parse_maxima_options(["fc9=2"], names)


# --- the grouped product -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bounds", [(0, 1, 2, 3, 4, 5, 6, 7), (0, 3, 4, 7), (0, 7)])
def test_grouped_maxplus_matches_per_group_loops(dtype, bounds):
    u = torch.randn(9, 7, dtype=dtype, requires_grad=True)
    v = torch.randn(5, 7, dtype=dtype, requires_grad=True)
    y = maxplus(u, v, "max", None, bounds)
    assert y.shape == (9, len(bounds) - 1, 5)
    for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        expect = [[ref_reduce([uk + vk for uk, vk in zip(ur[a:b], vr[a:b])], "max", None) for vr in v.tolist()]
                  for ur in u.tolist()]
        assert torch.equal(y[:, g], torch.tensor(expect, dtype=dtype))
    # Gradients: to each group's first arg-max, as in the chunked reference.
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (u, v), grad)
    ref = torch.autograd.grad(reference_maxplus(u, v, "max", None, bounds), (u, v), grad)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5)


def test_grouped_maxplus_of_an_all_masked_group_is_finite_and_its_exp_zero():
    u = torch.randn(3, 4, dtype=torch.float64)
    v = torch.tensor([[0.5, 0.2, -1e4, -1e4]], dtype=torch.float64)
    y = maxplus(u, v, "max", None, (0, 2, 4))
    assert torch.isfinite(y).all()
    assert torch.equal(torch.exp(y[:, 1]), torch.zeros(3, 1, dtype=torch.float64))


@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), (1, 1), (0, 0)), ((3, 2), (2, 1), (1, 1))])
def test_grouped_conv_from_the_image_equals_the_unfolded_product(kernel, stride, padding):
    image = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    k = 3 * kernel[0] * kernel[1]
    v = torch.randn(4, k, dtype=torch.float64, requires_grad=True)
    bounds = group_bounds(k, 3)  # one group per input channel
    y = maxplus_conv(image, v, kernel, stride, padding, "max", None, bounds)
    cols = torch.nn.functional.unfold(image, kernel, padding=padding, stride=stride)
    patches = cols.transpose(1, 2).reshape(-1, k)
    ref = reference_maxplus(patches, v, "max", None, bounds)
    assert torch.equal(y, ref)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (image, v), grad)
    want = torch.autograd.grad(ref, (image, v), grad)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


# --- the grouped neuron ----------------------------------------------------------------------------------------------

def ref_grouped(x, v, s, dx, dw, b, bounds, split, reduce, a):
    """docs/neurons.md, written out: for each group (and with the split, each sign within it) exp R(ln(x + dx) + v),
    signed; then the corrections and the bias. ``s``: per-weight signs (split) or the output's sign (not split)."""
    total = 0.0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if split:
            for sign in (1.0, -1.0):
                ts = [math.log(x[k] + dx) + v[k] for k in range(lo, hi) if s[k] == sign]
                if ts:
                    total += sign * math.exp(ref_reduce(ts, reduce, a))
        else:
            total += math.exp(ref_reduce([math.log(x[k] + dx) + v[k] for k in range(lo, hi)], reduce, a))
    if split:
        return total - dx * sum(sk * math.exp(vk) for sk, vk in zip(s, v)) + b
    return s * (total - dw * sum(x) - dx * sum(math.exp(vk) for vk in v)) + b


@pytest.mark.parametrize("reduce, alpha", [("max", None), ("lse", 3.0), ("smorph", 2.0), ("lmorph", 2.0)])
@pytest.mark.parametrize("maxima", ["3", "3s", "K", "1s"])
def test_linear_layer_with_groups_follows_the_formula(reduce, alpha, maxima):
    layer = BMLinear(7, 4, reduce=reduce, alpha=alpha, maxima=maxima).double()
    with torch.no_grad():
        layer.v.uniform_(-2.0, 0.5)
        layer.bias.uniform_(-1, 1)
        if not layer.split_sign:
            layer.sign.copy_(torch.tensor([1.0, -1.0, 1.0, -1.0]))
    x = torch.rand(5, 7, dtype=torch.float64) * 2
    with torch.no_grad():
        y = layer(x)
    bounds = layer.bounds or (0, 7)
    v = layer.v.detach().tolist()
    for n in range(5):
        for o in range(4):
            s = layer.sign[o].tolist()
            expect = ref_grouped(x[n].tolist(), v[o], s, float(layer.delta_x), float(layer.delta_w),
                                 float(layer.bias[o].detach()), bounds, layer.split_sign, reduce, alpha)
            assert abs(float(y[n, o]) - expect) <= 1e-9 * max(1.0, abs(expect)), (n, o)


@pytest.mark.parametrize("maxima", ["2", "2s"])
def test_conv_layer_with_groups_follows_the_formula(maxima):
    layer = BMConv2d(2, 3, 3, stride=2, padding=1, maxima=maxima).double()
    with torch.no_grad():
        layer.v.uniform_(-2.0, 0.5)
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
    patches = layer.patches(x)
    rows = layer.rows(y)
    v = layer.v.detach().reshape(3, -1).tolist()
    signs = layer.sign.reshape(3, -1).tolist() if layer.split_sign else layer.sign.tolist()
    for n in range(patches.shape[0]):
        for o in range(3):
            expect = ref_grouped(patches[n].tolist(), v[o], signs[o], float(layer.delta_x), float(layer.delta_w),
                                 float(layer.bias[o].detach()), layer.bounds, layer.split_sign, "max", None)
            assert abs(float(rows[n, o]) - expect) <= 1e-9 * max(1.0, abs(expect))


def _classical_pair(kind):
    if kind == "linear":
        layer = nn.Linear(12, 5).double()
        x = torch.rand(6, 12, dtype=torch.float64)
    else:
        layer = nn.Conv2d(3, 4, 3, stride=1, padding=1).double()
        x = torch.rand(2, 3, 6, 5, dtype=torch.float64)
    with torch.no_grad():
        layer.weight[0].view(-1)[0] = 0.0  # a zero weight: ln 0 floors to LOG_ZERO
    return layer, x


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("maxima", ["K", "Ks"])
def test_conversion_at_one_group_per_input_is_exact(kind, maxima):
    """G = K: each group's max is its one product, so the layer is the classical one up to float rounding."""
    layer, x = _classical_pair(kind)
    bm = to_bm(layer, maxima=maxima).double()
    assert bm.maxima == layer.weight[0].numel()
    assert torch.allclose(bm(x), layer(x), rtol=1e-9, atol=1e-9)
    assert torch.allclose(bm.classical_weight(), layer.weight, rtol=1e-12, atol=1e-25)


@pytest.mark.parametrize("maxima", ["1", "2", "3s"])
def test_lse_at_alpha_one_is_exact_for_any_groups(maxima):
    """exp LSE_1 over a group is that group's sum of products: every grouping of an LSE-1 layer is exact."""
    layer, x = _classical_pair("conv")
    bm = to_bm(layer, reduce="lse", alpha=1.0, maxima=maxima).double()
    assert torch.allclose(bm(x), layer(x), rtol=1e-9, atol=1e-9)


def test_sign_split_layer_has_no_offset_and_a_sign_per_weight():
    layer, _ = _classical_pair("linear")
    bm = to_bm(layer, maxima="2s")
    assert float(bm.delta_w) == 0.0 and bm.sign.shape == bm.v.shape
    assert torch.equal(bm.sign, torch.where(layer.weight < 0, -1.0, 1.0).float())
    with pytest.raises(ValueError, match="delta_w"):
        BMLinear(4, 2, maxima="2s", delta_w=1.0)
    with pytest.raises(ValueError, match="1.5-branch"):
        BMLinear(4, 2, branches=4, maxima="2s")


def test_four_branch_layer_with_groups_is_exact_at_lse_one_and_counts_four_exps_per_group():
    layer, x = _classical_pair("linear")
    bm = to_bm(layer, branches=4, reduce="lse", alpha=1.0, maxima=3).double()
    assert torch.allclose(bm(x), layer(x), rtol=1e-9, atol=1e-9)
    assert maxima_per_output(bm) == [12] * 5


def test_surrogate_gradient_with_groups_keeps_the_exact_forward():
    """Forward: the exact max, bit for bit. Backward, per (group, sign) maximum: d s exp(R)/dv[o, k] =
    s exp(max) softmax_k(alpha terms) over that maximum's terms, written out here; plus -dx s e^v per row."""
    alpha = 3.0
    layer = BMLinear(8, 3, maxima="2s").double()
    with torch.no_grad():
        layer.v.uniform_(-2.0, 0.5)
    x = torch.rand(2, 8, dtype=torch.float64) + 0.1
    plain = layer(x)
    with surrogate_gradient(alpha):
        y = layer(x)
    assert torch.equal(y, plain)
    y.sum().backward()
    v, s, dx = layer.v.detach(), layer.sign, float(layer.delta_x)
    from_max = layer.v.grad + 2 * dx * s * torch.exp(v)
    expected = torch.zeros_like(v)
    for n in range(2):
        for o in range(3):
            for lo, hi in ((0, 4), (4, 8)):
                for sign in (1.0, -1.0):
                    ks = [k for k in range(lo, hi) if s[o, k] == sign]
                    if not ks:
                        continue
                    terms = {k: math.log(x[n, k].item() + dx) + v[o, k].item() for k in ks}
                    top = max(terms.values())
                    weights = {k: math.exp(alpha * (t - top)) for k, t in terms.items()}
                    for k in ks:
                        expected[o, k] += sign * math.exp(top) * weights[k] / sum(weights.values())
    assert torch.allclose(from_max, expected, rtol=1e-9, atol=1e-12)
    assert (from_max.abs() > 1e-9).sum() > 2 * 3 * 2  # more than one weight per (group, sign) maximum learns


# --- models, checkpoints, cost ---------------------------------------------------------------------------------------

def test_grouped_lenet_saves_and_loads_with_its_maxima(tmp_path):
    net = to_bm(lenet(), maxima={"conv2": "6s", "fc3": "K"})
    path = save_checkpoint(tmp_path / "g.pt", net)
    ckpt = load_checkpoint(path)
    layers = ckpt.config["layers"]
    assert layers["conv2"]["maxima"] == "6s" and layers["fc3"]["maxima"] == "84" and "maxima" not in layers["fc1"]
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(ckpt.model.eval()(x), net.eval()(x))


def test_old_checkpoints_load_as_one_max_and_give_the_logits_of_before():
    """examples/lenet_bm15_mnist.pt, saved before groups existed: one max per neuron, and on the built-in sample
    the logits bit for bit as the code before several maxima computed them (tests/fixtures, recorded then)."""
    from bmhw.data.sample import load_mnist_sample
    from bmhw.train.loop import to_tensor

    ckpt = load_checkpoint(EXAMPLES / "lenet_bm15_mnist.pt")
    assert all("maxima" not in spec for spec in ckpt.config["layers"].values())
    assert all(layer.maxima == 1 and not layer.split_sign for layer in ckpt.model.weight_layers().values())
    images, _ = load_mnist_sample()
    with torch.no_grad():
        logits = ckpt.model.eval()(to_tensor(images)).numpy()
    assert np.array_equal(logits, np.load(Path(__file__).resolve().parents[1] / "fixtures" / "bm15_example_logits.npy"))


def test_exps_per_image_of_the_lenet():
    """Output positions x maxima per output: conv1 24x24x6, conv2 8x8x16, fc 120, 84, 10 outputs."""
    x = torch.zeros(1, 1, 28, 28)
    one = exps_per_image(to_bm(lenet()), x)
    assert one == {"conv1": 3456, "conv2": 1024, "fc1": 120, "fc2": 84, "fc3": 10}
    grouped = exps_per_image(to_bm(lenet(), maxima={"conv1": "1", "conv2": "6", "fc1": "16", "fc2": "K", "fc3": "K"}), x)
    assert grouped == {"conv1": 3456, "conv2": 6 * 1024, "fc1": 16 * 120, "fc2": 120 * 84, "fc3": 84 * 10}
    # Split: a (group, sign) pair without a weight of that sign costs nothing.
    layer = to_bm(nn.Linear(4, 2), maxima="2s")
    with torch.no_grad():
        layer.sign.copy_(torch.tensor([[1.0, 1.0, 1.0, -1.0], [-1.0, -1.0, -1.0, -1.0]]))
    assert maxima_per_output(layer) == [3, 2]


# --- command line --------------------------------------------------------------------------------------------------

def test_cli_convert_with_maxima_and_the_float_onnx_refusal(tmp_path):
    teacher = save_checkpoint(tmp_path / "c.pt", lenet())
    out = tmp_path / "g.pt"
    code, _, err = run_main(["convert", teacher, "--maxima", "6s", "--maxima", "fc3=K", "-o", out])
    assert code == 0, err
    layers = load_checkpoint(out).config["layers"]
    assert layers["conv1"]["maxima"] == "6s" and layers["fc3"]["maxima"] == "84"
    code, printed, err = run_main(["eval", out, "--limit", "20"])
    expected = sum(exps_per_image(load_checkpoint(out).model, torch.zeros(1, 1, 28, 28)).values())
    assert code == 0 and f"exps per image: {expected:,} (conv1 " in printed, err
    code, printed, _ = run_main(["eval", teacher, "--limit", "20"])
    assert code == 0 and "exps per image" not in printed
    # The float ONNX export has no operator for grouped maxima (the integer datapath carries them: tests/quant).
    code, _, err = run_main(["export", out, "--target", "onnx", "-o", tmp_path / "g.onnx"])
    assert code == 2 and err.count("\n") == 1 and "maxima per neuron" in err, err
    assert not (tmp_path / "g.onnx").exists()


@pytest.mark.parametrize("maxima, message", [(["fc9=2"], "no weight layer"), (["conv1=26"], "only 25 inputs"),
                                             (["2x"], "number of maxima"), (["0"], "positive integer")])
def test_cli_convert_refuses_bad_maxima(tmp_path, maxima, message):
    teacher = save_checkpoint(tmp_path / "c.pt", lenet())
    argv = ["convert", teacher, "-o", tmp_path / "g.pt"]
    for m in maxima:
        argv += ["--maxima", m]
    code, _, err = run_main(argv)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "g.pt").exists()


def test_cli_maxima_needs_a_bm_neuron(tmp_path, synth_mnist):
    code, _, err = run_main(["train", "--data", synth_mnist, "--neuron", "adder", "--maxima", "2", "--epochs", "1",
                             "-o", tmp_path / "a.pt", "--quiet"])
    assert code == 2 and "BM neurons" in err


def test_cli_train_and_distill_with_maxima(tmp_path, synth_mnist):
    out = tmp_path / "t.pt"
    code, _, err = run_main(["train", "--data", synth_mnist, "--neuron", "bm15", "--maxima", "conv2=6s", "--epochs", "1",
                             "--limit", "64", "--batch-size", "32", "-o", out, "--quiet"])
    assert code == 0, err
    assert load_checkpoint(out).config["layers"]["conv2"]["maxima"] == "6s"
    teacher = save_checkpoint(tmp_path / "c.pt", lenet())
    out = tmp_path / "d.pt"
    code, _, err = run_main(["distill", "--teacher", teacher, "--method", "kd", "--data", synth_mnist, "--epochs", "0.5",
                             "--limit", "64", "--batch-size", "32", "--maxima", "2s", "--maxima", "fc3=K", "-o", out,
                             "--quiet"])
    assert code == 0, err
    layers = load_checkpoint(out).config["layers"]
    assert layers["conv1"]["maxima"] == layers["conv2"]["maxima"] == "2s"
    assert layers["fc3"]["maxima"] == "84"
    out = tmp_path / "l.pt"
    code, _, err = run_main(["distill", "--teacher", teacher, "--method", "lwkd", "--data", synth_mnist,
                             "--epochs-per-layer", "0.2", "--limit", "64", "--batch-size", "32", "--maxima", "fc1=4s",
                             "-o", out, "--quiet"])
    assert code == 0, err
    assert load_checkpoint(out).config["layers"]["fc1"]["maxima"] == "4s"


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("maxima", ["3", "3s", "1s"])
def test_fused_exp_sum_path_equals_the_autograd_path(kind, maxima):
    """The grouped hard max's fused exps and sum (bmhw.nn.maxplus.group_exp_sum) give the values and gradients of
    the plain path (maxima per group, then exp and sum under autograd)."""
    if kind == "linear":
        layer = BMLinear(9, 4, maxima=maxima).double()
        x = torch.rand(6, 9, dtype=torch.float64, requires_grad=True)
    else:
        layer = BMConv2d(3, 4, 3, stride=2, padding=1, maxima=maxima).double()
        x = torch.rand(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        layer.v.uniform_(-2.0, 0.5)
    results = []
    for fast in (True, False):
        layer._fast_groups = (lambda: fast)  # the instance attribute shadows the method
        layer.zero_grad()
        x.grad = None
        y = layer(x)
        grad = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        y.backward(grad)
        results.append((y.detach(), x.grad.clone(), layer.v.grad.clone()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
