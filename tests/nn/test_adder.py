"""Tests for bmhw.nn.adder: AdderLinear and AdderConv2d against the per-element formula, and AdderNet's gradient
rules against hand-computed values.

The backward pass deliberately differs from the true derivative of ``-sum |x - w|`` (full-precision weight
gradient, HardTanh input gradient, adaptive learning-rate scaling), so ``torch.autograd.gradcheck`` does not
apply: expected gradients are written out here, from explicit loops in float64 and from numbers worked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import bmhw.nn.adder as adder
from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.errors import BmhwError
from bmhw.models import build, create, describe, lenet, make_spec
from bmhw.nn import AdderConv2d, AdderLinear, set_eta, to_adder
from bmhw.nn.adder import adaptive_scale, neg_l1


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def ref_distance(x: list, w: list) -> float:
    return -sum(abs(xk - wk) for xk, wk in zip(x, w))


def conv_patches_ref(image: torch.Tensor, kh, kw, stride, pad):
    """Patches of a C x H x W image as lists (channel-major, then kernel row, column), zero padded, raster order."""
    c, h, w = image.shape
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = []
    for i in range(ho):
        for j in range(wo):
            patch = []
            for ch in range(c):
                for di in range(kh):
                    for dj in range(kw):
                        r, s = i * stride + di - pad, j * stride + dj - pad
                        patch.append(float(image[ch, r, s]) if 0 <= r < h and 0 <= s < w else 0.0)
            out.append(((i, j), patch))
    return out


# --------------------------------------------------------------------------------------------
# forward


def test_linear_is_the_negative_l1_distance_per_element():
    layer = AdderLinear(5, 3, bias=True, bn=False).double()
    x = torch.rand(4, 5, dtype=torch.float64) * 3 - 1
    y = layer(x).detach()
    w, b = layer.weight.tolist(), layer.bias.tolist()
    for n in range(4):
        for o in range(3):
            assert math.isclose(float(y[n, o]), ref_distance(x[n].tolist(), w[o]) + b[o], rel_tol=1e-12, abs_tol=1e-12)


def test_a_hand_computed_linear_output():
    layer = AdderLinear(2, 1, bn=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
    # -(|3 - 1| + |0.5 + 2|) = -4.5
    assert float(layer(torch.tensor([[3.0, 0.5]])).detach()) == -4.5


@pytest.mark.parametrize("stride, pad", [(1, 0), (2, 1), (1, 2)])
def test_conv_is_the_negative_l1_distance_per_patch(stride, pad):
    layer = AdderConv2d(2, 3, 3, stride=stride, padding=pad, bn=False).double()
    x = torch.rand(2, 2, 5, 6, dtype=torch.float64)
    y = layer(x).detach()
    w = layer.weight.reshape(3, -1).tolist()
    for b in range(2):
        for (i, j), patch in conv_patches_ref(x[b], 3, 3, stride, pad):
            for o in range(3):
                assert math.isclose(float(y[b, o, i, j]), ref_distance(patch, w[o]), rel_tol=1e-12)
    assert y.shape[2:] == layer.output_size(5, 6)


def test_batch_norm_folds_into_a_per_channel_scale_and_offset():
    layer = AdderConv2d(1, 4, 3, padding=1).double()
    with torch.no_grad():
        layer.bn.running_mean.copy_(torch.tensor([-5.0, -3.0, -1.0, -8.0]))
        layer.bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
        layer.bn.weight.copy_(torch.tensor([1.0, 2.0, -0.5, 3.0]))
        layer.bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    layer.eval()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    a, c = layer.folded_affine()
    d = layer.distance(layer.patches(x)).reshape(2, 4, 4, 4).permute(0, 3, 1, 2)
    expected = a.reshape(1, -1, 1, 1) * d + c.reshape(1, -1, 1, 1)
    assert torch.allclose(layer(x), expected, atol=1e-12)
    assert math.isclose(float(a[1]), 2.0 / math.sqrt(0.25 + 1e-5), rel_tol=1e-12)
    assert math.isclose(float(c[1]), 3.0 * float(a[1]) - 0.2, rel_tol=1e-7)  # -0.2 came in as float32


def test_a_bias_before_batch_norm_is_refused():
    with pytest.raises(ValueError, match="no bias"):
        AdderLinear(3, 2, bias=True, bn=True)


# --------------------------------------------------------------------------------------------
# gradient rules


def test_hand_computed_gradients_of_a_tiny_layer():
    # x = [[0.5, 3]], w = [[1, 0], [0, 1]], upstream gradient g = [[1, 2]].
    x = torch.tensor([[0.5, 3.0]], requires_grad=True)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    y = neg_l1(x, w)
    assert y.tolist() == [[-3.5, -2.5]]  # -(0.5 + 3), -(0.5 + 2)
    y.backward(torch.tensor([[1.0, 2.0]]))
    # weights, full precision g (x - w): row 0: 1 * (0.5 - 1, 3 - 0) = (-0.5, 3); row 1: 2 * (0.5, 2) = (1, 4)
    assert w.grad.tolist() == [[-0.5, 3.0], [1.0, 4.0]]
    # inputs, HardTanh(w - x): k=0: 1 * clip(0.5) + 2 * clip(-0.5) = -0.5; k=1: 1 * clip(-3) + 2 * clip(-2) = -3
    assert x.grad.tolist() == [[-0.5, -3.0]]


@pytest.mark.parametrize("chunk", [1 << 22, 7])
def test_gradients_match_the_rules_element_by_element(chunk, monkeypatch):
    monkeypatch.setattr(adder, "CHUNK_ELEMENTS", chunk)  # 7: one row per chunk, both code paths
    x = torch.rand(6, 4, dtype=torch.float64) * 3 - 1.5
    x[1] = x[1].clamp(-0.2, 0.2)  # a row whose differences all lie within [-1, 1]: the matrix-product path
    w = torch.rand(3, 4, dtype=torch.float64) * 0.4 - 0.2
    g = torch.randn(6, 3, dtype=torch.float64)
    x.requires_grad_(True)
    w.requires_grad_(True)
    neg_l1(x, w).backward(g)
    grad_x, grad_w, x, w = x.grad, w.grad, x.detach(), w.detach()
    for o in range(3):
        for k in range(4):
            expected = sum(float(g[n, o]) * (float(x[n, k]) - float(w[o, k])) for n in range(6))
            assert math.isclose(float(grad_w[o, k]), expected, rel_tol=1e-12, abs_tol=1e-12)
    for n in range(6):
        for k in range(4):
            expected = sum(float(g[n, o]) * max(-1.0, min(1.0, float(w[o, k]) - float(x[n, k]))) for o in range(3))
            assert math.isclose(float(grad_x[n, k]), expected, rel_tol=1e-12, abs_tol=1e-12)


def test_conv_gradients_reach_the_image_through_the_patches():
    layer = AdderConv2d(1, 2, 2, stride=1, padding=1, bn=False, eta=None).double()
    x = (torch.rand(1, 1, 3, 3, dtype=torch.float64) * 3).requires_grad_(True)
    g = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    layer(x).backward(g)
    w = layer.weight.reshape(2, -1).tolist()
    grad_x = [[0.0] * 3 for _ in range(3)]
    grad_w = [[0.0] * 4 for _ in range(2)]
    for (i, j), patch in conv_patches_ref(x[0].detach(), 2, 2, 1, 1):
        for o in range(2):
            for k in range(4):
                r, s = i + k // 2 - 1, j + k % 2 - 1
                grad_w[o][k] += float(g[0, o, i, j]) * (patch[k] - w[o][k])
                if 0 <= r < 3 and 0 <= s < 3:
                    grad_x[r][s] += float(g[0, o, i, j]) * max(-1.0, min(1.0, w[o][k] - patch[k]))
    assert np.allclose(x.grad[0, 0].numpy(), grad_x, atol=1e-12)
    assert np.allclose(layer.weight.grad.reshape(2, -1).numpy(), grad_w, atol=1e-12)


def test_adaptive_learning_rate_scaling_by_hand():
    # ||(3, 4)|| = 5, k = 2: alpha = 0.1 sqrt(2) / 5.
    scaled = adaptive_scale(torch.tensor([[3.0, 4.0]], dtype=torch.float64), 0.1)
    assert torch.allclose(scaled, torch.tensor([[3.0, 4.0]], dtype=torch.float64) * 0.1 * math.sqrt(2) / 5)
    assert math.isclose(float(scaled.norm()), 0.1 * math.sqrt(2), rel_tol=1e-12)
    zero = torch.zeros(2, 2)
    assert torch.equal(adaptive_scale(zero, 0.1), zero)
    assert torch.equal(adaptive_scale(torch.tensor([1.0, 2.0]), None), torch.tensor([1.0, 2.0]))


def test_the_layer_scales_its_weight_gradient_and_only_that():
    # The tiny layer above with eta = 0.5: weight gradient (-0.5, 3; 1, 4), norm sqrt(26.25), k = 4.
    layer = AdderLinear(2, 2, bn=False, eta=0.5)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[0.5, 3.0]], requires_grad=True)
    layer(x).backward(torch.tensor([[1.0, 2.0]]))
    alpha = 0.5 * math.sqrt(4) / math.sqrt(0.25 + 9 + 1 + 16)
    assert torch.allclose(layer.weight.grad, torch.tensor([[-0.5, 3.0], [1.0, 4.0]]) * alpha)
    assert x.grad.tolist() == [[-0.5, -3.0]]  # the input gradient is not scaled
    set_eta(layer, None)
    assert layer.eta is None
    with pytest.raises(ValueError, match="eta must be positive"):
        set_eta(layer, 0.0)


# --------------------------------------------------------------------------------------------
# models, specs, checkpoints, conversion


def test_adder_models_by_name_and_spec():
    model = lenet("adder")
    assert all(isinstance(m, (AdderConv2d, AdderLinear)) for m in model.weight_layers().values())
    assert describe(model)["layers"]["conv1"] == {"neuron": "adder", "bias": False}
    assert describe(create("lenet", "adder")) == describe(model)
    assert make_spec("adder") == {"neuron": "adder"}
    assert make_spec("adder", bn=False) == {"neuron": "adder", "bn": False}
    for kwargs in ({"reduce": "lse"}, {"alpha": 2.0}, {"learn_alpha": True}):
        with pytest.raises(BmhwError, match="not to adder"):
            make_spec("adder", **kwargs)
    with pytest.raises(BmhwError, match="adder neurons only"):
        make_spec("bm15", bn=False)
    mixed = lenet("adder", layers={"fc3": {"neuron": "classical"}, "conv1": {"neuron": "adder", "bn": False}})
    assert isinstance(mixed.fc3, nn.Linear) and mixed.conv1.bn is None
    assert describe(build(describe(mixed))) == describe(mixed)


def test_checkpoint_round_trip_keeps_weights_and_batch_norm_statistics(tmp_path):
    model = lenet("adder", widths=(3, 4, 8, 6))
    x = torch.rand(16, 1, 28, 28)
    model.train()
    model(x)  # moves the running statistics
    model.eval()
    path = save_checkpoint(tmp_path / "adder.pt", model, method="test")
    loaded = load_checkpoint(path)
    assert loaded.config["layers"]["fc1"]["neuron"] == "adder"
    assert torch.equal(loaded.model(x), model(x))


def test_to_adder_copies_the_classical_weights_and_drops_the_bias():
    classical = lenet("classical", widths=(3, 4, 8, 6))
    model = to_adder(classical)
    for name, layer in model.weight_layers().items():
        assert isinstance(layer, (AdderConv2d, AdderLinear)) and layer.bias is None and layer.bn is not None
        assert torch.equal(layer.weight, classical.get_submodule(name).weight)
    assert isinstance(classical.conv1, nn.Conv2d)  # the argument is left as it was
    only = to_adder(classical, layers={"conv2"})
    assert isinstance(only.conv2, AdderConv2d) and isinstance(only.conv1, nn.Conv2d)
    assert describe(build(describe(only))) == describe(only)


def test_train_from_the_command_line(tmp_path, mnist_writer):
    from cli_runner import ok

    data = mnist_writer(tmp_path / "data", n_train=128, n_test=64)
    path = tmp_path / "adder.pt"
    ok(["train", "--neuron", "adder", "--data", data, "--epochs", "1", "--batch-size", "32", "--quiet", "-o", path])
    ckpt = load_checkpoint(path)
    assert all(s["neuron"] == "adder" for s in ckpt.config["layers"].values())
    out = ok(["eval", path, "--data", data])
    assert "accuracy:" in out
