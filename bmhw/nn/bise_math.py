"""The exact binarisation of a BiSE neuron (bmhw.nn.bise): signed weights folded into literals, the exact
dilation and erosion conditions, the projection onto the closest operator and the binarised forward, on
weights and biases as arrays or tensors (docs/training.md, "BiSE")."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


DILATION, EROSION = 0, 1


def _params(layer_or_w, b=None):
    if hasattr(layer_or_w, "weight_matrix"):  # a BiSE layer (bmhw.nn.bise)
        with torch.no_grad():
            return (layer_or_w.weight_matrix().double().cpu().numpy(), layer_or_w.bias.detach().double().cpu().numpy())
    w = np.asarray(layer_or_w, dtype=np.float64)
    return w.reshape(w.shape[0], -1), np.asarray(b, dtype=np.float64).reshape(-1)


def fold(w, b):
    """Signed weights -> literals: ``W . x - b = |W| . l - b'`` on binary x, where ``l_k = 1 - x_k`` for a
    negative ``W_k`` (neg) and ``x_k`` otherwise, and ``b' = b - sum_{W_k < 0} W_k``. Returns (|W|, b', neg);
    NumPy or torch (differentiable) alike."""
    if isinstance(w, torch.Tensor):
        return w.abs(), b - w.clamp(max=0).sum(1), w < 0
    return np.abs(w), b - np.minimum(w, 0).sum(1), w < 0


def is_dilation(w, b, s) -> bool:
    """Exact dilation condition for one output: ``min_{S} W >= b`` and ``sum_{not S} W < b`` (S non-empty)."""
    w, s = np.asarray(w, dtype=np.float64), np.asarray(s, dtype=bool)
    return bool(s.any() and w[s].min() >= b and w[~s].sum() < b)


def is_erosion(w, b, s) -> bool:
    """Exact erosion condition for one output: ``sum W - min_{S} W < b <= sum_{S} W`` (S non-empty)."""
    w, s = np.asarray(w, dtype=np.float64), np.asarray(s, dtype=bool)
    return bool(s.any() and w.sum() - w[s].min() < b <= w[s].sum())


def _top_sets(w: np.ndarray):
    """The nested top sets {k : W_k >= t} for each distinct value t of w, largest first (deterministic)."""
    for t in np.unique(w)[::-1]:
        yield w >= t


def binarizable(layer, b=None) -> list:
    """Per output: ``("dilation" | "erosion", S)`` (S a bool mask over the fan-in) when the layer (or the
    O x K weights ``layer`` with biases ``b``) is exactly that operator on binary inputs, else None. A
    one-element S is both; it is reported as a dilation."""
    w, bias, _ = fold(*_params(layer, b))
    out = []
    for o in range(w.shape[0]):
        found = None
        for s in _top_sets(w[o]):
            if is_dilation(w[o], bias[o], s):
                found = ("dilation", s)
                break
            if is_erosion(w[o], bias[o], s):
                found = ("erosion", s)
                break
        out.append(found)
    return out


def activable_distances(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Violation of the activability conditions of every (operator, nested top set): an O x 2 x K tensor,
    ``[o, op, n-1]`` for S = the n largest weights of output o (torch, differentiable).

    Each condition is a half-space in (W, b); a term is the Euclidean distance of (W, b) to that half-space
    when it is violated (0 otherwise), and the entry is the root of the sum of their squares, a lower bound
    on the distance to the (closed) activable polytope, zero exactly on it:

    * dilation: ``W_(n) >= b`` (the n-th largest weight; the tightest of the |S| constraints) and
      ``sum_{not S} W <= b``;
    * erosion: ``sum W - W_(n) <= b`` and ``b <= sum_{S} W``.
    """
    ws, _ = torch.sort(w, dim=1, descending=True)
    k = ws.shape[1]
    csum = torch.cumsum(ws, 1)  # sum over S_n
    total = csum[:, -1:]
    bb = b.reshape(-1, 1)
    n = torch.arange(1, k + 1, dtype=w.dtype, device=w.device)
    out_count = k - n  # |not S|
    d1 = F.relu(bb - ws) / math.sqrt(2.0)
    d2 = F.relu(total - csum - bb) / torch.sqrt(out_count + 1.0)
    e1 = F.relu(total - ws - bb) / math.sqrt(k)  # (sum W - W_(n)) has k-1 weight terms plus b
    e2 = F.relu(bb - csum) / torch.sqrt(n + 1.0)
    dil = torch.sqrt(d1 ** 2 + d2 ** 2 + 1e-30)
    ero = torch.sqrt(e1 ** 2 + e2 ** 2 + 1e-30)
    return torch.stack([dil, ero], 1)


def project_tensor(w: torch.Tensor, b: torch.Tensor):
    """:func:`project` on torch tensors (O x K signed weights, O biases; computed in float64): returns
    (op (O,) int64, se (O, K) bool, neg (O, K) bool)."""
    a, bb, neg = fold(w.double(), b.double())
    o_count, k = a.shape
    d = activable_distances(a, bb)  # O x 2 x K
    ws, order = torch.sort(a, dim=1, descending=True, stable=True)
    csum = torch.cumsum(ws, 1)
    total = csum[:, -1:]
    bcol = bb.reshape(-1, 1)
    # exact (strict) conditions on the n largest, where they form a top set {k : |W_k| >= t}
    top = torch.ones_like(ws, dtype=torch.bool)
    top[:, :-1] = ws[:, :-1] > ws[:, 1:]
    dil = (ws >= bcol) & (total - csum < bcol) & top
    ero = (total - ws < bcol) & (bcol <= csum) & top
    d = torch.where(torch.stack([dil, ero], 1), torch.full_like(d, -1.0), d)
    flat = d.transpose(1, 2).reshape(o_count, -1)  # index (n - 1) * 2 + op
    best = torch.argmin(flat, dim=1)  # first minimum: the smallest set, dilation first
    op = best % 2
    n = best // 2 + 1
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(k, device=a.device).expand(o_count, k).contiguous())
    se = rank < n.reshape(-1, 1)
    return op.to(torch.int64), se, neg


def project(layer, b=None):
    """The closest morphological operator of each output, on the literals: ``(op, se, neg)`` as NumPy arrays,
    op (O,) int64 with 0 = dilation, 1 = erosion, se (O, K) bool, neg (O, K) bool (``W_k < 0``: the input
    enters complemented). On the folded parameters (:func:`fold`), exactly binarisable outputs keep their
    exact operator (the first of :func:`binarizable`'s search order: the smallest top set, dilation first);
    the others take the (operator, S) that minimises :func:`activable_distances` over both operators and
    the K nested top sets (ties: the smaller set, dilation first). Deterministic (float64)."""
    w, bias = _params(layer, b)
    op, se, neg = project_tensor(torch.from_numpy(w), torch.from_numpy(bias))
    return op.numpy(), se.numpy(), neg.numpy()


def binary_forward(x: np.ndarray, op, se, neg=None) -> np.ndarray:
    """Reference binarised dense layer in NumPy: x (N, K) of 0/1 -> (N, O) of 0/1: OR over the literals in S
    (dilation), AND over them (erosion); literal k of output o is ``not x_k`` where ``neg[o, k]``, else x_k."""
    x = np.asarray(x).astype(bool)
    se = np.asarray(se, dtype=bool)
    neg = np.zeros_like(se) if neg is None else np.asarray(neg, dtype=bool)
    out = np.empty((x.shape[0], se.shape[0]), dtype=np.int64)
    for o in range(se.shape[0]):
        sel = (x ^ neg[o])[:, se[o]]
        out[:, o] = sel.all(1) if op[o] == EROSION else sel.any(1)
    return out

