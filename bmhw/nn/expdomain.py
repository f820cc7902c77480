"""The smooth max-plus products (LSE, S-morph, L-morph) as matrix products in the exponential domain.

Each smooth reduction of ``t_k = u_k + v_k`` is made of sums ``sum_k exp(a t_k) * f(t_k)``, and
``exp(a (u_k + v_k)) = exp(a u_k) exp(a v_k)``: a sum of products, so a GEMM (a dense layer) or a
convolution (a convolutional layer, which then reads its patches from the image). With the shifts
``mu = max_k u_k`` (per row, or per image for a convolution) and ``mv = max_k v_k`` (per output), every
factor is at most 1 and nothing overflows at any alpha::

    S  = sum_k exp(a (u_k - mu)) exp(a (v_k - mv))
    LSE      = mu + mv + ln(S) / a
    S-morph  = mu + mv + sum_k ((u_k - mu) + (v_k - mv)) exp(...) exp(...) / S
    L-morph  = mu + mv + ln S(a + 1) - ln S(a)

PyTorch's autograd differentiates these exactly (the shifts are constants: every reduction is
shift-invariant), so forward and backward cost a few BLAS / oneDNN products plus element-wise work, on
any device (tested on the CPU only).

What can go wrong is underflow: when the largest term ``exp(a (t_max - mu - mv))`` falls toward the
smallest normal number (large alpha, or a row whose largest ``u`` meets a small ``v``), the products lose
their relative precision. Every output whose ``S`` is below ``fan_in * tiny * 2**26`` (where the error of
flushed terms stays below 2^-26 of S) is therefore recomputed: in float64 when the input is float32, and
otherwise by the direct path (the fused C++ kernel or the chunked PyTorch reference), whole rows (dense) or
whole images (convolution) at a time. Values are those of the direct path to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMOOTH = ("lse", "smorph", "lmorph")


def _floor(dtype: torch.dtype, fan_in: int) -> float:
    """Smallest S trusted: flushed or subnormal terms then cost at most 2^-26 of it, relatively."""
    return fan_in * torch.finfo(dtype).tiny * 2.0**26


def _shifted_sums(prod, shifted_u, dv, reduce, alpha, floor):
    """R - mu - mv from the shifted logs u - mu <= 0 (``shifted_u()`` makes a fresh tensor of them) and
    dv = v - mv <= 0, and the mask of the outputs whose sums are too small to trust; ``prod(a, b)`` is the
    layer's sum of products over k."""
    if reduce == "lse" and not alpha.requires_grad:
        # The common case, and the largest tensors: one buffer for the shifted logs and their exp.
        eu = shifted_u().mul_(alpha).exp_()
        s = prod(eu, torch.exp(alpha * dv))
        del eu
    else:
        du = shifted_u()
        eu, ev = torch.exp(alpha * du), torch.exp(alpha * dv)
        s = prod(eu, ev)
    if reduce == "lmorph":
        s1 = prod(torch.exp((alpha + 1) * du), torch.exp((alpha + 1) * dv))
        bad = ((s < floor) | (s1 < floor)).detach()
        # The untrusted outputs are replaced; 1 keeps their log (and its gradient) finite meanwhile.
        return torch.log(s1.masked_fill(bad, 1)) - torch.log(s.masked_fill(bad, 1)), bad
    bad = (s < floor).detach()
    s = s.masked_fill(bad, 1)
    if reduce == "lse":
        return torch.log(s) / alpha, bad
    return (prod(du * eu, ev) + prod(eu, dv * ev)) / s, bad


def dense(u: torch.Tensor, v: torch.Tensor, reduce: str, alpha: torch.Tensor, direct) -> torch.Tensor:
    """``y[n, o] = R_k(u[n, k] + v[o, k])`` for a smooth R and a scalar alpha; ``direct(u, v, reduce, alpha)``
    computes the rows whose sums underflow."""
    mu = u.detach().amax(1, keepdim=True)
    mv = v.detach().amax(1, keepdim=True)
    r, bad = _shifted_sums(lambda a, b: a @ b.t(), lambda: u - mu, v - mv, reduce, alpha,
                           _floor(u.dtype, u.shape[1]))
    y = mu + mv.t() + r
    rows = bad.any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return y
    if u.dtype == torch.float32:
        fixed = dense(u[rows].double(), v.double(), reduce, alpha.double(), direct).float()
    else:
        fixed = direct(u[rows], v, reduce, alpha)
    return y.index_put((rows,), fixed)


def conv(image: torch.Tensor, v: torch.Tensor, reduce: str, alpha: torch.Tensor, kernel, stride, padding,
         direct) -> torch.Tensor:
    """The same product for every patch of ``image`` (B, C, H, W; zero outside, as in a zero-padded
    convolution of the shifted logs) with ``v`` (O, C*kh*kw), as B*Ho*Wo x O rows in BMConv2d.patches order
    (batch-major, then output position). Each image is shifted by its own maximum."""
    return _conv_image(image, v, reduce, alpha, kernel, stride, padding, direct).permute(0, 2, 3, 1).reshape(
        -1, v.shape[0])


def _conv_image(image, v, reduce, alpha, kernel, stride, padding, direct) -> torch.Tensor:
    """:func:`conv` as a B x O x Ho x Wo image."""
    o, (kh, kw), (ph, pw) = v.shape[0], kernel, padding
    mu = image.detach().amax((1, 2, 3), keepdim=True)
    if ph or pw:
        mu = mu.clamp_min(0)  # the padding's log is 0
    mv = v.detach().amax(1, keepdim=True)
    shape = (o, image.shape[1], kh, kw)
    # Padded explicitly: the padding's exp is exp(-a mu), not the 0 a padded convolution would insert.
    r, bad = _shifted_sums(lambda a, b: F.conv2d(a, b.reshape(shape), stride=stride),
                           lambda: F.pad(image, (pw, pw, ph, ph)).sub_(mu),
                           v - mv, reduce, alpha, _floor(image.dtype, v.shape[1]))
    y = mu + mv.reshape(1, o, 1, 1) + r
    images = bad.flatten(1).any(1).nonzero().squeeze(1)
    if images.numel() == 0:
        return y
    if image.dtype == torch.float32:
        fixed = _conv_image(image[images].double(), v.double(), reduce, alpha.double(), kernel, stride, padding,
                            direct).float()
    else:
        cols = F.unfold(image[images], kernel, padding=padding, stride=stride)  # the direct path unfolds
        rows = direct(cols.transpose(1, 2).reshape(-1, cols.shape[1]), v, reduce, alpha)
        fixed = rows.reshape(images.numel(), *y.shape[2:], o).permute(0, 3, 1, 2)
    return y.index_put((images,), fixed)
