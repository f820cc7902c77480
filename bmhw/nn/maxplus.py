"""The max-plus product at the heart of every BM layer, and its smooth relatives.

``maxplus(u, v, reduce, alpha)`` computes, for every row ``n`` of ``u`` (shape N x K) and every row
``o`` of ``v`` (shape O x K)::

    y[n, o] = R_k ( u[n, k] + v[o, k] )

where ``R`` is the hard maximum or one of its continuous approximations with temperature ``alpha``
(see docs/neurons.md):

* ``"max"``    max_k t_k
* ``"lse"``    (1/a) ln sum_k exp(a t_k)
* ``"smorph"`` sum_k t_k exp(a t_k) / sum_k exp(a t_k)
* ``"lmorph"`` ln( sum_k p_k^(a+1) / sum_k p_k^a ) with p_k = exp(t_k) > 0, i.e. L-morph applied to
  the (positive) products in the linear domain and returned in the log domain, like the others, so
  that the layer's ``exp`` turns it back into a product-sized value.

Memory: the full N x O x K tensor of sums is never kept. On the CPU, the hard max runs in the fused C++
kernels of ``bmhw.nn.kernels`` (compiled on first use; each output reduced in registers, the backward a
scatter to one arg-max per output). The smooth reductions with a positive scalar alpha are matrix
products in the exponential domain (``bmhw.nn.expdomain``: a GEMM, or a convolution reading the image),
differentiated by autograd (plain PyTorch; tested on the CPU); the outputs whose sums underflow there (large alpha) are
recomputed term by term. Term by term means the fused LSE kernel (forward, and a backward recomputing the
softmax weights) or, elsewhere, for S-morph and L-morph, and without a compiler, the chunked PyTorch path:
row chunks of at most ``CHUNK_ELEMENTS`` elements, keeping only what backward needs (the arg-max indices
for the hard max, the inputs for the smooth reductions, whose backward recomputes each chunk). All paths
give the same values to rounding; ties in the hard max go to the first (smallest) k.
"""

from __future__ import annotations

import torch

from bmhw.nn import expdomain, kernels

REDUCTIONS = ("max", "lse", "smorph", "lmorph")

# Elements of the N x O x K sum tensor materialised at once (16 MiB of float32).
CHUNK_ELEMENTS = 1 << 22


def _row_chunks(n_rows: int, n_out: int, fan_in: int):
    step = max(1, CHUNK_ELEMENTS // max(1, n_out * fan_in))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def smooth_reduce(t: torch.Tensor, reduce: str, alpha: torch.Tensor) -> torch.Tensor:
    """Reduce the last dimension of ``t`` with a continuous approximation of the max."""
    if reduce == "lse":
        return torch.logsumexp(alpha * t, dim=-1) / alpha
    if reduce == "smorph":
        return (torch.softmax(alpha * t, dim=-1) * t).sum(-1)
    if reduce == "lmorph":
        return torch.logsumexp((alpha + 1) * t, dim=-1) - torch.logsumexp(alpha * t, dim=-1)
    raise ValueError(f"unknown smooth reduction {reduce!r}")


class _MaxPlus(torch.autograd.Function):
    """Hard max-plus product; the gradient goes to the first arg-max of each output only."""

    @staticmethod
    def forward(ctx, u, v):
        n, k = u.shape
        o = v.shape[0]
        y = u.new_empty(n, o)
        idx = torch.empty(n, o, dtype=torch.long, device=u.device)
        for rows in _row_chunks(n, o, k):
            # torch.max returns the first maximal index on ties: a deterministic tie rule.
            y[rows], idx[rows] = (u[rows, None, :] + v[None, :, :]).max(dim=-1)
        ctx.save_for_backward(idx)
        ctx.shapes = (n, o, k)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (idx,) = ctx.saved_tensors
        n, o, k = ctx.shapes
        grad_y = grad_y.contiguous()
        grad_u = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_u = grad_y.new_zeros(n, k).scatter_add_(1, idx, grad_y)
        if ctx.needs_input_grad[1]:
            flat = (idx + torch.arange(o, device=idx.device)[None, :] * k).reshape(-1)
            grad_v = grad_y.new_zeros(o * k).scatter_add_(0, flat, grad_y.reshape(-1)).view(o, k)
        return grad_u, grad_v


class _SmoothPlus(torch.autograd.Function):
    """LSE / S-morph / L-morph max-plus product; backward recomputes each chunk."""

    @staticmethod
    def forward(ctx, u, v, alpha, reduce):
        n, k = u.shape
        o = v.shape[0]
        y = u.new_empty(n, o)
        for rows in _row_chunks(n, o, k):
            y[rows] = smooth_reduce(u[rows, None, :] + v[None, :, :], reduce, alpha)
        ctx.save_for_backward(u, v, alpha)
        ctx.reduce = reduce
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, v, alpha = ctx.saved_tensors
        n, k = u.shape
        o = v.shape[0]
        grad_u = torch.zeros_like(u)
        grad_v = torch.zeros_like(v)
        grad_alpha = torch.zeros_like(alpha)
        for rows in _row_chunks(n, o, k):
            with torch.enable_grad():
                u_c = u[rows].detach().requires_grad_(True)
                v_c = v.detach().requires_grad_(True)
                a_c = alpha.detach().requires_grad_(True)
                y_c = smooth_reduce(u_c[:, None, :] + v_c[None, :, :], ctx.reduce, a_c)
                g_u, g_v, g_a = torch.autograd.grad(y_c, (u_c, v_c, a_c), grad_y[rows])
            grad_u[rows] = g_u
            grad_v += g_v
            grad_alpha += g_a
        return grad_u, grad_v, grad_alpha, None


def _scatter_grads(ctx, grad, idx, scale=None):
    """The hard max's backward in the kernels: each maximum's gradient (``grad``, times ``scale`` of its input row
    and output where given) to its saved arg-max, in the rows of u (or the image's pixels, for a convolution:
    ``ctx.geometry``) and in v. Returns (grad of u or the image, grad of v), None where not needed."""
    ext = kernels.extension()
    need_source, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if ctx.geometry is None:
        grad_source, grad_v = ext.max_backward(grad, idx, ctx.fan_in, need_source, need_v, ctx.groups, scale)
        return (grad_source if need_source else None), (grad_v if need_v else None)
    grad_source = ext.max_conv_backward_image(grad, idx, ctx.shape, list(ctx.geometry), ctx.groups,
                                              scale) if need_source else None
    grad_v = ext.max_backward(grad, idx, ctx.fan_in, False, True, ctx.groups, scale)[1] if need_v else None
    return grad_source, grad_v


class _MaxPlusFused(torch.autograd.Function):
    """The hard max-plus product in the C++ kernel, per group of k (``bounds``; empty: one group, an N x O
    result); backward scatters to the saved first arg-max."""

    @staticmethod
    def forward(ctx, u, v, bounds):
        y, idx = kernels.extension().max_forward(u, v, list(bounds))
        ctx.save_for_backward(idx)
        ctx.geometry, ctx.fan_in, ctx.groups = None, u.shape[1], max(1, len(bounds) - 1)
        return y.view(u.shape[0], ctx.groups, v.shape[0]) if bounds else y

    @staticmethod
    def backward(ctx, grad_y):
        (idx,) = ctx.saved_tensors
        return (*_scatter_grads(ctx, grad_y.reshape(idx.shape), idx), None)


class _LsePlusFused(torch.autograd.Function):
    """The LSE max-plus product in the C++ kernel (stable at any alpha: shifted by the hard max)."""

    @staticmethod
    def forward(ctx, u, v, alpha):
        y = kernels.extension().lse_forward(u, v, float(alpha))
        ctx.save_for_backward(u, v, alpha, y)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        u, v, alpha, y = ctx.saved_tensors
        grad_u, grad_v, grad_alpha = kernels.extension().lse_backward(grad_y, u, v, y, float(alpha))
        return grad_u, grad_v, grad_alpha.reshape(alpha.shape)


class _MaxConvFused(torch.autograd.Function):
    """The hard max-plus product of a convolution read straight from the image (no unfolded patches)."""

    @staticmethod
    def forward(ctx, image, v, geometry, bounds):
        y, idx = kernels.extension().max_conv_forward(image, v, list(geometry), list(bounds))
        ctx.save_for_backward(idx)
        ctx.geometry, ctx.shape, ctx.fan_in = geometry, list(image.shape), v.shape[1]
        ctx.groups = max(1, len(bounds) - 1)
        return y.view(-1, ctx.groups, v.shape[0]) if bounds else y

    @staticmethod
    def backward(ctx, grad_y):
        (idx,) = ctx.saved_tensors
        return (*_scatter_grads(ctx, grad_y.reshape(idx.shape), idx), None, None)


class _GroupExpSum(torch.autograd.Function):
    """sum_g exp(max_(k in g)(u_k + v_k)) per output, from the grouped hard-max kernel: the exps and the sum over
    the groups in place, without an autograd graph over the N x G x O maxima (the backward is one product with the
    saved exps, then the kernel's scatter). With ``split`` the rows of v are the positive weights' then the negative
    weights' (2O), and the result is the first half's sum minus the second's (N x O)."""

    @staticmethod
    def forward(ctx, source, v, bounds, split, conv_geometry):
        ext = kernels.extension()
        if conv_geometry is None:
            m, idx = ext.max_forward(source, v, list(bounds))
        else:
            m, idx = ext.max_conv_forward(source, v, list(conv_geometry), list(bounds))
        groups, rows = len(bounds) - 1, v.shape[0]
        e = m.view(-1, groups, rows).exp_()
        y = e.sum(1)
        if split:
            y = y[:, :rows // 2] - y[:, rows // 2:]
        ctx.save_for_backward(e, idx)
        ctx.split, ctx.geometry, ctx.shape = split, conv_geometry, list(source.shape)
        ctx.fan_in, ctx.groups = v.shape[1], groups
        return y

    @staticmethod
    def backward(ctx, grad_y):
        e, idx = ctx.saved_tensors
        if ctx.split:
            grad_y = torch.cat([grad_y, -grad_y], 1)
        # Each maximum's gradient is its exp times its output's gradient: the kernels multiply as they scatter.
        return (*_scatter_grads(ctx, e.view(idx.shape), idx, grad_y.contiguous()), None, None, None)


def group_exp_sum(u: torch.Tensor, v: torch.Tensor, bounds, split: bool = False, conv=None):
    """``sum_g exp(max_(k in g)(u[n, k] + v[o, k]))`` (N x O; with ``split``, the first half of v's rows minus the
    second) from the fused kernels, or None where they do not serve these tensors. ``conv``: (kernel, stride,
    padding) when ``u`` is the (log) image of a convolution."""
    if not bounds or not _fused(u, v):
        return None
    geometry = None if conv is None else tuple(x for pair in conv for x in pair)
    return _GroupExpSum.apply(u if conv is None else u.contiguous(), v, tuple(bounds), bool(split), geometry)


def maxplus_conv(image: torch.Tensor, v: torch.Tensor, kernel, stride, padding, reduce: str = "max", alpha=None,
                 bounds=()):
    """The max-plus product of every patch of ``image`` (B, C, H, W; zero outside) with ``v`` (O, C*kh*kw),
    rows in BMConv2d.patches order, without unfolding the patches: the hard max in the fused kernel, the
    smooth reductions as convolutions in the exponential domain. None where neither serves these tensors
    (the caller then unfolds). With group ``bounds`` (see :func:`maxplus`) the result is N x G x O."""
    if reduce == "max":
        if not _fused(image, v):
            return None
        return _MaxConvFused.apply(image.contiguous(), v, (*kernel, *stride, *padding), tuple(bounds))
    if bounds:
        # Smooth reductions per group: a group of whole input channels is a convolution of those channels.
        window = kernel[0] * kernel[1]
        if any(b % window for b in bounds):
            return None
        parts = [maxplus_conv(image[:, a // window:b // window], v[:, a:b], kernel, stride, padding, reduce, alpha)
                 for a, b in zip(bounds[:-1], bounds[1:])]
        return None if any(p is None for p in parts) else torch.stack(parts, 1)
    alpha = _exp_domain_alpha(reduce, alpha, image)
    if alpha is None:
        return None
    return expdomain.conv(image, v, reduce, alpha, kernel, stride, padding, _direct_smooth)


def _exp_domain_alpha(reduce, alpha, like):
    """alpha as a tensor where the exponential-domain products apply (a positive scalar), else None."""
    if reduce not in expdomain.SMOOTH or alpha is None:
        return None
    alpha = torch.as_tensor(alpha, dtype=like.dtype, device=like.device)
    return alpha if alpha.numel() == 1 and bool(alpha > 0) else None


def _direct_smooth(u, v, reduce, alpha):
    """A smooth product term by term: the fused LSE kernel, or the chunked PyTorch path."""
    if reduce == "lse" and _fused(u, v):
        return _LsePlusFused.apply(u, v, alpha)
    return _SmoothPlus.apply(u, v, alpha, reduce)


def _fused(u: torch.Tensor, v: torch.Tensor) -> bool:
    """The C++ kernels serve float32/float64 CPU tensors, where they could be built."""
    return (u.device.type == "cpu" and v.device.type == "cpu" and u.dtype == v.dtype
            and u.dtype in (torch.float32, torch.float64) and kernels.extension() is not None)


def _per_group(product, u, v, bounds, reduce, alpha) -> torch.Tensor:
    """``product`` of each group's columns on its own, stacked as N x G x O."""
    return torch.stack([product(u[:, a:b], v[:, a:b], reduce, alpha) for a, b in zip(bounds[:-1], bounds[1:])], 1)


def check_bounds(bounds, fan_in: int) -> tuple:
    """Group bounds ``0 = b_0 < b_1 < ... < b_G = fan_in`` as a tuple (empty: no groups)."""
    bounds = tuple(int(b) for b in bounds)
    if bounds and (len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != fan_in
                   or any(b <= a for a, b in zip(bounds[:-1], bounds[1:]))):
        raise ValueError(f"group bounds must rise from 0 to the fan-in {fan_in}, got {bounds}")
    return bounds


def maxplus(u: torch.Tensor, v: torch.Tensor, reduce: str = "max", alpha=None, bounds=()) -> torch.Tensor:
    """``y[n, o] = R_k(u[n, k] + v[o, k])``; see the module docstring.

    With group ``bounds`` ``(0, b_1, ..., K)`` each of the G groups ``b_g <= k < b_(g+1)`` is reduced on its
    own, and the result is ``y[n, g, o]`` (N x G x O): several maxima per neuron (docs/neurons.md)."""
    if u.dim() != 2 or v.dim() != 2 or u.shape[1] != v.shape[1]:
        raise ValueError(f"maxplus needs u (N, K) and v (O, K); got {tuple(u.shape)} and {tuple(v.shape)}")
    bounds = check_bounds(bounds, u.shape[1])
    if bounds and not (reduce == "max" and _fused(u, v)):
        return _per_group(maxplus, u, v, bounds, reduce, alpha)
    if reduce == "max":
        return _MaxPlusFused.apply(u, v, bounds) if _fused(u, v) else _MaxPlus.apply(u, v)
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if alpha is None:
        raise ValueError(f"reduce={reduce!r} needs a temperature alpha")
    scalar = _exp_domain_alpha(reduce, alpha, u)
    if scalar is not None:
        return expdomain.dense(u, v, reduce, scalar, _direct_smooth)
    return _SmoothPlus.apply(u, v, torch.as_tensor(alpha, dtype=u.dtype, device=u.device), reduce)


def reference_maxplus(u: torch.Tensor, v: torch.Tensor, reduce: str = "max", alpha=None, bounds=()) -> torch.Tensor:
    """The chunked PyTorch path alone (the reference the fused kernels are tested against)."""
    if bounds:
        return _per_group(reference_maxplus, u, v, bounds, reduce, alpha)
    if reduce == "max":
        return _MaxPlus.apply(u, v)
    alpha = torch.as_tensor(alpha, dtype=u.dtype, device=u.device)
    return _SmoothPlus.apply(u, v, alpha, reduce)
