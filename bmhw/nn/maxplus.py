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

Memory: the full N x O x K tensor of sums is never kept. The forward pass works on row chunks of at
most ``CHUNK_ELEMENTS`` elements and keeps only what backward needs: the arg-max indices (N x O) for
the hard max, the inputs for the smooth reductions, whose backward recomputes each chunk. A later,
faster kernel can replace the chunk loops without changing this interface.
"""

from __future__ import annotations

import torch

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


def maxplus(u: torch.Tensor, v: torch.Tensor, reduce: str = "max", alpha=None) -> torch.Tensor:
    """``y[n, o] = R_k(u[n, k] + v[o, k])``; see the module docstring."""
    if u.dim() != 2 or v.dim() != 2 or u.shape[1] != v.shape[1]:
        raise ValueError(f"maxplus needs u (N, K) and v (O, K); got {tuple(u.shape)} and {tuple(v.shape)}")
    if reduce == "max":
        return _MaxPlus.apply(u, v)
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if alpha is None:
        raise ValueError(f"reduce={reduce!r} needs a temperature alpha")
    alpha = torch.as_tensor(alpha, dtype=u.dtype, device=u.device)
    return _SmoothPlus.apply(u, v, alpha, reduce)
