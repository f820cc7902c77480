"""The smooth reductions as exponential-domain matrix products (bmhw.nn.expdomain), against the chunked
term-by-term reference (bmhw.nn.maxplus.reference_maxplus): values and gradients for dense and
convolutional layers over the whole range of alpha, gradcheck in double, and the recomputation of the
outputs whose sums underflow (in float64, then term by term)."""

import importlib

import pytest
import torch
import torch.nn.functional as F

mp = importlib.import_module("bmhw.nn.maxplus")
from bmhw.nn import expdomain
from bmhw.nn.maxplus import maxplus, maxplus_conv, reference_maxplus

SMOOTH = ["lse", "smorph", "lmorph"]


def rand(*shape, seed, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_(True)


def grads(y, inputs, seed=0):
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.autograd.grad(y, inputs, g.to(y.dtype))


def reference_conv(image, v, reduce, alpha, kernel, stride, padding):
    cols = F.unfold(image, kernel, padding=padding, stride=stride)
    return reference_maxplus(cols.transpose(1, 2).reshape(-1, cols.shape[1]), v, reduce, alpha)


@pytest.mark.parametrize("reduce", SMOOTH)
@pytest.mark.parametrize("alpha", [0.5, 4.0, 64.0, 1e3, 1e6])
def test_dense_equals_the_term_by_term_reference_in_double(reduce, alpha):
    u, v = rand(37, 29, seed=1), rand(19, 29, seed=2)
    a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
    y, ref = maxplus(u, v, reduce, a), reference_maxplus(u, v, reduce, a)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads(y, (u, v)), grads(ref, (u, v))):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reduce", SMOOTH)
@pytest.mark.parametrize("alpha", [0.5, 4.0, 64.0, 1e3, 1e6])
def test_float32_is_as_close_to_the_truth_as_float32_allows(reduce, alpha):
    # The truth is the reference in double; float32 inputs are its inputs rounded.
    u, v = rand(23, 40, seed=3, dtype=torch.float32), rand(11, 40, seed=4, dtype=torch.float32)
    a = torch.tensor(alpha)
    y = maxplus(u, v, reduce, a)
    u64, v64 = u.detach().double().requires_grad_(True), v.detach().double().requires_grad_(True)
    truth = reference_maxplus(u64, v64, reduce, a.double())
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert torch.allclose(y.double(), truth, rtol=1e-6, atol=1e-5)
    for got, want in zip(grads(y, (u, v)), grads(truth, (u64, v64))):
        assert float((got.double() - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("reduce", SMOOTH)
@pytest.mark.parametrize("alpha", [0.5, 4.0, 300.0])
@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), (1, 1), (1, 1)), ((5, 5), (2, 2), (0, 0)),
                                                     ((3, 2), (2, 1), (1, 1)), ((1, 1), (1, 1), (0, 0))])
def test_conv_equals_the_unfolded_reference(reduce, alpha, kernel, stride, padding):
    # Logs of post-ReLU activations shifted by ln dx are >= 0 (the padding's value is 0).
    image = (torch.rand(3, 4, 9, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 5)
    image.requires_grad_(True)
    v = rand(6, 4 * kernel[0] * kernel[1], seed=6)
    a = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
    y = maxplus_conv(image, v, kernel, stride, padding, reduce, a)
    ref = reference_conv(image, v, reduce, a, kernel, stride, padding)
    assert y.shape == ref.shape and torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads(y, (image, v)), grads(ref, (image, v))):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("reduce", SMOOTH)
def test_gradcheck_in_double_dense_and_conv_with_alpha(reduce):
    u, v = rand(5, 7, seed=7), rand(4, 7, seed=8)
    a = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, al: maxplus(x, w, reduce, al), (u, v, a))
    image = torch.rand(2, 2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    image.requires_grad_(True)
    w = rand(3, 2 * 9, seed=10)
    assert torch.autograd.gradcheck(lambda x, k, al: maxplus_conv(x, k, (3, 3), (1, 1), (1, 1), reduce, al),
                                    (image, w, a))


def test_a_fixed_alpha_takes_the_in_place_path_with_the_same_gradients():
    image = torch.rand(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    v = rand(4, 27, seed=11)
    fixed = maxplus_conv(image, v, (3, 3), (1, 1), (1, 1), "lse", torch.tensor(3.0, dtype=torch.float64))
    learned = maxplus_conv(image, v, (3, 3), (1, 1), (1, 1), "lse",
                           torch.tensor(3.0, dtype=torch.float64, requires_grad=True))
    assert torch.equal(fixed, learned)
    for got, want in zip(grads(fixed, (image, v)), grads(learned, (image, v))):
        assert torch.equal(got, want)


def _underflowing_rows(dtype):
    # Row 1's largest u (100) meets a small v (-100): its largest term is exp(-100 a) of mu + mv, far below
    # float32's range at alpha 1 and below float64's at alpha 10. Row 0 is ordinary.
    u = torch.tensor([[0.5, 0.0, -0.3], [100.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    v = torch.tensor([[-100.0, 0.0, 0.1], [-100.0, 0.2, 0.0]], dtype=dtype, requires_grad=True)
    return u, v


@pytest.mark.parametrize("reduce", SMOOTH)
@pytest.mark.parametrize("dtype, alpha, retried, direct_rows",
                         [(torch.float32, 1.0, True, 0), (torch.float32, 10.0, True, 1),
                          (torch.float64, 1.0, False, 0), (torch.float64, 10.0, False, 1)])
def test_underflowing_rows_are_recomputed_and_nothing_else(reduce, dtype, alpha, retried, direct_rows,
                                                            monkeypatch):
    calls, passes = [], []
    direct, dense = mp._direct_smooth, expdomain.dense
    monkeypatch.setattr(mp, "_direct_smooth", lambda u, *rest: calls.append(u.shape[0]) or direct(u, *rest))
    monkeypatch.setattr(expdomain, "dense", lambda u, *rest: passes.append((u.dtype, u.shape[0])) or dense(u, *rest))
    u, v = _underflowing_rows(dtype)
    a = torch.tensor(alpha, dtype=dtype)
    y = maxplus(u, v, reduce, a)
    assert passes == [(dtype, 2)] + ([(torch.float64, 1)] if retried else [])  # the retry takes row 1 alone
    assert calls == ([direct_rows] if direct_rows else [])
    u64, v64 = u.detach().double().requires_grad_(True), v.detach().double().requires_grad_(True)
    truth = reference_maxplus(u64, v64, reduce, a.double())
    assert torch.allclose(y.double(), truth, rtol=1e-6, atol=1e-6)
    got, want = grads(y, (u, v)), grads(truth, (u64, v64))
    for g, w in zip(got, want):
        assert torch.isfinite(g).all() and float((g.double() - w).abs().max()) <= 1e-5 * float(w.abs().max())


def test_conv_recomputes_only_the_images_that_underflow(monkeypatch):
    calls = []
    direct = mp._direct_smooth
    monkeypatch.setattr(mp, "_direct_smooth", lambda u, *rest: calls.append(u.shape[0]) or direct(u, *rest))
    image = torch.zeros(3, 1, 4, 4, dtype=torch.float64)
    image[1, 0, 0, 0] = 200.0  # image 1's maximum meets the smallest log-weight in every window but one
    image.requires_grad_(True)
    v = torch.tensor([[0.0, -150.0, -150.0, -150.0]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor(8.0, dtype=torch.float64)
    y = maxplus_conv(image, v, (2, 2), (1, 1), (0, 0), "lse", a)
    assert calls == [9]  # one image's 3 x 3 positions, term by term
    ref = reference_conv(image, v, "lse", a, (2, 2), (1, 1), (0, 0))
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads(y, (image, v)), grads(ref, (image, v))):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)
