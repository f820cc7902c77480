"""BiSE layers (Aouad et al. 2023, "A foundation for exact binarized morphological neural networks").

A BiSE ("binary structuring element") neuron is a convolution with weights and a bias followed by a smooth
threshold (docs/training.md, "BiSE")::

    y_o = sigmoid(p * (sum_k W_ok x_k - b_o)),   W signed,  p = exp(log_scale) > 0

with inputs and outputs in [0, 1]. On binary inputs a negative weight is a positive one on the complemented
input (:func:`fold`: ``W . x - b = |W| . l - b'`` with the literals ``l_k = 1 - x_k`` where ``W_k < 0``), so
everything below is stated on ``(|W|, b')`` and the literals. Thresholded at 1/2 (our convention: the binary
output is 1 iff ``W . x >= b``, i.e. ``y >= 1/2``), on binary inputs it is exactly a binary dilation or
erosion of the literals by a structuring element S (a subset of the fan-in) under these conditions (derived
in docs/training.md), with W read as |W| and b as b':

* dilation by S (output = OR of x over S):  ``min_{k in S} W_k >= b``  and  ``sum_{k not in S} W_k < b``;
* erosion by S (output = AND of x over S):  ``sum_k W_k - min_{k in S} W_k < b <= sum_{k in S} W_k``.

In both cases S is a "top set" ``{k : W_k >= t}`` of the weights, so searching the K nested sets of the
largest weights is exhaustive for exactness; :func:`binarizable`, :func:`project`, the regularisation
:func:`activable_loss` and the binarised forward (:func:`binary_forward`: a count of the true literals
inside S, compared with 1 for a dilation, |S| for an erosion) are all built on that. Training
(:func:`bise_loss_fn`: a straight-through step for the second half) and the data-driven layer-by-layer
binarisation with refitting (:func:`binarize_layerwise`) are what make the binarised LeNet work.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.errors import BmhwError

DILATION, EROSION = 0, 1
OPS = ("dilation", "erosion")
# Input binarisation threshold of a BiSE network (docs/training.md): pixel x in [0, 1] -> 1 iff x >= 1/2.
INPUT_THRESHOLD = 0.5


def binarize_input(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> {0, 1}: 1 iff ``x >= INPUT_THRESHOLD`` (the same float dtype)."""
    return (x >= INPUT_THRESHOLD).to(x.dtype)


def _softplus_inv(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class _BiSENeuron(nn.Module):
    """Shared parameters of BiSE and BiSELinear: ``weight`` (raw; W = softplus(weight)), ``bias``,
    ``log_scale`` (p = exp(log_scale)), and, after :meth:`binarize`, the binarised operators."""

    def _init_params(self, out_features: int, weight_shape: tuple, fan_in: int) -> None:
        self.fan_in = fan_in
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.log_scale = nn.Parameter(torch.zeros(()))
        # Binarised operators (not in the state dict: recomputed from the weights by binarize()).
        self.binary = False
        self.se = None  # (O, K) bool
        self.op = None  # (O,) int64: 0 dilation, 1 erosion
        self.neg = None  # (O, K) bool: the input enters complemented (its weight is negative)
        # Straight-through training (bise_loss_fn): forward the projected operator, backward the sigmoid.
        self.hard = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Signed W ~ U(-1, 1), b = half the total weight (the pre-activation is centred at inputs of 1/2),
        # p = 4 / sqrt(K).
        k = self.fan_in
        with torch.no_grad():
            w = torch.rand(self.weight.shape) * 2 - 1
            self.weight.copy_(w)
            self.bias.copy_(0.5 * w.reshape(w.shape[0], -1).sum(1))
            self.log_scale.fill_(math.log(4.0 / math.sqrt(k)))

    def neuron_spec(self) -> dict:
        return {"neuron": "bise"}

    def signed_weight(self) -> torch.Tensor:
        """The signed weights W (the parameter itself), shaped like ``weight``."""
        return self.weight

    def weight_matrix(self) -> torch.Tensor:
        """W as an O x K matrix (K in the patch order: channel, kernel row, kernel column)."""
        return self.signed_weight().reshape(self.weight.shape[0], -1)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def binarize(self) -> None:
        """Project onto morphological operators (:func:`project`) and run the binarised forward from now on."""
        op, se, neg = project(self)
        self.set_binary(op, se, neg)

    def set_binary(self, op, se, neg=None) -> None:
        o = self.weight.shape[0]
        self.op = torch.as_tensor(np.asarray(op), dtype=torch.int64)
        self.se = torch.as_tensor(np.asarray(se), dtype=torch.bool).reshape(o, self.fan_in)
        self.neg = (torch.zeros_like(self.se) if neg is None
                    else torch.as_tensor(np.asarray(neg), dtype=torch.bool).reshape(o, self.fan_in))
        self.binary = True

    def unbinarize(self) -> None:
        self.binary = False
        self.se = self.op = self.neg = None

    def _pre(self, x: torch.Tensor) -> torch.Tensor:  # W . x - b, per output
        raise NotImplementedError

    def _linear_map(self, x: torch.Tensor, w: torch.Tensor, bias) -> torch.Tensor:  # O x K matrix w
        raise NotImplementedError

    def _count_of(self, x: torch.Tensor, se: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Number of true literals inside S per output: ``sum_{k in S} (neg_k ? 1 - x_k : x_k)``, computed as
        ``(S and not neg) . x - (S and neg) . x + |S and neg|`` (zero padding reads 0, its complement 1)."""
        sf, nf = se.to(x.dtype), (se & neg).to(x.dtype)
        return self._linear_map(x, sf - 2 * nf, nf.sum(1))

    def _count(self, x: torch.Tensor) -> torch.Tensor:
        return self._count_of(x, self.se, self.neg)

    def _bshape(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.reshape((1, -1) + (1,) * (like.dim() - 2))

    def thresholds(self) -> torch.Tensor:
        """Integer threshold of each binarised output: 1 for a dilation, |S| for an erosion."""
        size = self.se.sum(1)
        return torch.where(self.op == EROSION, size, torch.ones_like(size))

    def _hard_operators(self):
        """The current projection as torch tensors (no gradient): op (O,), se (O, K), neg (O, K)."""
        with torch.no_grad():
            op, se, neg = project_tensor(self.weight_matrix().detach(), self.bias.detach())
        return op, se, neg

    @staticmethod
    def _threshold_of(op, se):
        size = se.sum(1)
        return torch.where(op == EROSION, size, torch.ones_like(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """sigmoid(p (W . x - b)) in [0, 1]; binarised: the OR / AND over the literals in S, in {0, 1}.
        In ``hard`` (straight-through) mode: the value of the current projection, the gradient of the sigmoid."""
        if self.binary:
            count = self._count(x)
            return (count >= self._bshape(self.thresholds(), count).to(count.dtype)).to(x.dtype)
        pre = self._pre(x)
        soft = torch.sigmoid(self.scale() * pre)
        if self.hard == "step":  # straight-through threshold: (W . x >= b) forward, the sigmoid backward
            return soft + ((pre >= 0).to(x.dtype) - soft).detach()
        if self.hard:
            op, se, neg = self._hard_operators()
            count = self._count_of(x.detach(), se, neg)
            hard = (count >= self._bshape(self._threshold_of(op, se), count).to(count.dtype)).to(x.dtype)
            return soft + (hard - soft).detach()
        return soft

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of a last layer: p (W . x - b) (the logits before the threshold); binarised: the
        number of true literals inside each output's S (docs/training.md). ``hard``: the counts forward, the
        logits' gradient backward."""
        if self.binary:
            return self._count(x)
        logits = self.scale() * self._pre(x)
        if self.hard and self.hard != "step":
            _, se, neg = self._hard_operators()
            count = self._count_of(x.detach(), se, neg)
            return logits + (count - logits).detach()
        return logits


class BiSE(_BiSENeuron):
    """BiSE convolution (``nn.Conv2d``'s signature; the bias is always there). Zero padding is binary 0."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__()
        if not bias:
            raise BmhwError("a BiSE layer always has its bias (the threshold): leave bias=True")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        self.padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
        self._init_params(out_channels, (out_channels, in_channels) + ks, in_channels * ks[0] * ks[1])

    def _pre(self, x):
        return F.conv2d(x, self.signed_weight(), -self.bias, self.stride, self.padding)

    def _linear_map(self, x, w, bias):
        return F.conv2d(x, w.reshape(self.weight.shape), bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, binary={self.binary}")


class BiSELinear(_BiSENeuron):
    """BiSE dense layer (``nn.Linear``'s signature; the bias is always there)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        if not bias:
            raise BmhwError("a BiSE layer always has its bias (the threshold): leave bias=True")
        self.in_features, self.out_features = in_features, out_features
        self._init_params(out_features, (out_features, in_features), in_features)

    def _pre(self, x):
        return F.linear(x, self.signed_weight(), -self.bias)

    def _linear_map(self, x, w, bias):
        return F.linear(x, w, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, binary={self.binary}"


def _params(layer_or_w, b=None):
    if isinstance(layer_or_w, _BiSENeuron):
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


def activable_loss(layer: _BiSENeuron) -> torch.Tensor:
    """Regularisation of one BiSE layer: the mean over outputs of the smallest activable distance
    (:func:`activable_distances`) over both operators and the K nested sets; 0 on binarisable parameters
    (up to 1e-15 from the square root's guard), positive otherwise. Scale-free: divided by the mean W."""
    a, bb, _ = fold(layer.weight_matrix(), layer.bias)
    d = activable_distances(a, bb).flatten(1).min(1).values
    return (d / a.detach().mean(1).clamp_min(1e-12)).mean()


def bise_layers(model: nn.Module) -> dict:
    return {name: m for name, m in model.named_modules() if isinstance(m, _BiSENeuron)}


def regularization(model: nn.Module) -> torch.Tensor:
    """Sum of :func:`activable_loss` over the model's BiSE layers."""
    layers = list(bise_layers(model).values())
    if not layers:
        return torch.zeros(())
    return sum(activable_loss(m) for m in layers)


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


def binarize_model(model: nn.Module) -> dict:
    """Binarise every BiSE layer of ``model`` in place; returns {name: number of outputs that were exactly
    binarisable before projection}."""
    exact = {}
    for name, m in bise_layers(model).items():
        exact[name] = sum(r is not None for r in binarizable(m))
        m.binarize()
    return exact


def unbinarize_model(model: nn.Module) -> None:
    for m in bise_layers(model).values():
        m.unbinarize()


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


# Fraction of the training steps after which bise_loss_fn switches every BiSE layer to a straight-through
# forward (docs/training.md, "BiSE"; 1 = never), and which: "step" (the threshold W . x >= b; measured best)
# or True (the current projection).
HARD_FROM = 0.5
HARD_MODE = "step"


def set_hard(model: nn.Module, hard) -> None:
    """Straight-through mode of every BiSE layer: False (float), True (the projection) or "step" (the
    threshold ``W . x >= b``; a last layer keeps its logits)."""
    for m in bise_layers(model).values():
        m.hard = hard


def bise_loss_fn(reg: float, total_steps: int | None = None, hard_from: float = HARD_FROM, hard_mode=HARD_MODE):
    """A ``loss_fn(model, x, y)`` for bmhw.train.train_classifier: cross-entropy + lambda * :func:`regularization`.

    With ``total_steps`` the weight ramps up quadratically, ``lambda = reg * (step / total_steps)^2`` (0 at the
    first step, ``reg`` at the last), and from step ``hard_from * total_steps`` on, every BiSE layer runs
    ``hard = hard_mode`` (straight-through: forward the threshold ``W . x >= b`` ("step") or the binarised
    operator it projects to now (True), backward the sigmoid's), so that the hidden activations are binary
    before the binarisation; after the last step the layers return to the float forward. Without
    ``total_steps``: ``lambda = reg``, never hard."""
    step = [0]

    def loss_fn(model, x, y):
        if total_steps is not None:
            set_hard(model, hard_mode if step[0] >= hard_from * total_steps else False)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        lam = reg if total_steps is None else reg * min(1.0, step[0] / max(1, total_steps)) ** 2
        step[0] += 1
        if lam > 0:
            loss = loss + lam * regularization(model)
        if total_steps is not None and step[0] >= total_steps:
            set_hard(model, False)
        return loss, logits

    return loss_fn


# ---------------------------------------------------------------------------------------------------------
# Data-driven projection and layer-by-layer binarisation with refitting (docs/training.md, "BiSE").


def layer_patches(layer: _BiSENeuron, x: torch.Tensor) -> torch.Tensor:
    """The fan-in vectors a layer sees: (M, K), one row per output position (conv) or per sample (dense)."""
    if isinstance(layer, BiSE):
        cols = F.unfold(x, layer.kernel_size, padding=layer.padding, stride=layer.stride)  # N x K x L
        return cols.transpose(1, 2).reshape(-1, layer.fan_in)
    return x.reshape(x.shape[0], -1)


def data_project(layer: _BiSENeuron, x: torch.Tensor, max_rows: int = 20000, scores: bool = False):
    """The operator of each output that agrees most with the float neuron on data: ``(op, se, neg)``.

    ``x``: binary inputs of the layer (a batch). The target of output o is its float neuron thresholded,
    ``W . x >= b``; the candidates are both operators over the K nested top sets of ``|W|`` (literals of
    polarity ``W_k < 0``, as in :func:`project`); the one with the most agreements over the (at most
    ``max_rows``, evenly strided) fan-in vectors wins (ties: the smaller set, dilation first). With
    ``scores`` (a last layer) the neurons' fan-ins are not thresholded: see :func:`fit_scores`."""
    with torch.no_grad():
        p = layer_patches(layer, x.double())
        if p.shape[0] > max_rows:
            p = p[torch.linspace(0, p.shape[0] - 1, max_rows).long()]
        w, b = layer.weight_matrix().detach().double(), layer.bias.detach().double()
        a, _, neg = fold(w, b)
        target = (p @ w.T - b) >= 0  # M x O
        pb = p > 0.5
        o_count, k = a.shape
        op = torch.zeros(o_count, dtype=torch.int64)
        se = torch.zeros(o_count, k, dtype=torch.bool)
        idx = torch.arange(k + 1, dtype=torch.int64)
        for o in range(o_count):
            order = torch.sort(a[o], descending=True, stable=True).indices
            lit = pb[:, order] ^ neg[o, order]  # M x K, literals sorted by |W|
            f1 = torch.where(lit.any(1), lit.int().argmax(1), torch.full((lit.shape[0],), k))  # first true
            nl = ~lit
            f0 = torch.where(nl.any(1), nl.int().argmax(1), torch.full((lit.shape[0],), k))  # first false
            t = target[:, o]
            sgn = torch.where(t, 1, -1).to(torch.int64)
            h1 = torch.zeros(k + 1, dtype=torch.int64).index_add_(0, f1, sgn)
            h0 = torch.zeros(k + 1, dtype=torch.int64).index_add_(0, f0, sgn)
            base = int((~t).sum())
            n = idx[1:]
            agree_dil = base + torch.cumsum(h1, 0)[:-1]  # dilation by the top n: 1 iff f1 < n
            agree_ero = base + int(sgn.sum()) - torch.cumsum(h0, 0)[:-1]  # erosion: 1 iff f0 >= n
            flat = torch.stack([agree_dil, agree_ero], 1).reshape(-1)  # index (n - 1) * 2 + op
            best = int(torch.argmax(flat))  # first maximum
            op[o] = best % 2
            se[o, order[:int(n[best // 2])]] = True
        return op, se, neg


def set_operators(layer: _BiSENeuron, op, se, neg, scale: float = 20.0) -> None:
    """Overwrite a layer's parameters with the canonical exactly binarisable ones of (op, se, neg):
    ``|W| = 1`` on S (negative where ``neg``), 0 outside; ``b' = 1/2`` (dilation) or ``|S| - 1/2`` (erosion),
    i.e. ``b = b' - |S and neg|``; ``p = scale``. :func:`project` returns (op, se, neg) again (up to the
    polarity outside S, which does not matter, and a one-element erosion, which is its dilation)."""
    se = torch.as_tensor(se, dtype=torch.bool)
    neg = torch.as_tensor(neg, dtype=torch.bool) & se
    op = torch.as_tensor(op, dtype=torch.int64)
    w = se.double() - 2 * neg.double()
    size = se.sum(1).double()
    bprime = torch.where(op == EROSION, size - 0.5, torch.full_like(size, 0.5))
    with torch.no_grad():
        layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))
        layer.bias.copy_((bprime - neg.sum(1).double()).to(layer.bias.dtype))
        layer.log_scale.fill_(math.log(scale))


def fit_scores(layer: _BiSENeuron, x: torch.Tensor, labels: torch.Tensor, rounds: int = 2):
    """Last layer: class scores = number of true literals among the top n_c of |W_c| (polarity W < 0), with
    each class's n_c chosen to maximise the training accuracy of the counts (one shared n first, then
    ``rounds`` of coordinate ascent over the classes). Returns (op = dilations, se, neg)."""
    with torch.no_grad():
        p = layer_patches(layer, x.double()) > 0.5
        w = layer.weight_matrix().detach().double()
        a, _, neg = fold(w, layer.bias.detach().double())
        o_count, k = a.shape
        order = torch.sort(a, dim=1, descending=True, stable=True).indices
        # cum[o][m, n] = number of true literals among the top n of class o, n = 0..K
        cum = []
        for o in range(o_count):
            lit = (p[:, order[o]] ^ neg[o, order[o]]).to(torch.int32)
            cum.append(torch.cat([torch.zeros(lit.shape[0], 1, dtype=torch.int32), torch.cumsum(lit, 1)], 1))

        def acc(ns):
            s = torch.stack([cum[o][:, ns[o]] for o in range(o_count)], 1)
            return int((s.argmax(1) == labels).sum())

        best_n = max(range(1, k + 1), key=lambda n: (acc([n] * o_count), -n))
        ns = [best_n] * o_count
        for _ in range(rounds):
            for o in range(o_count):
                cand = list(range(1, k + 1))
                scores = []
                for n in cand:
                    ns[o] = n
                    scores.append(acc(ns))
                ns[o] = cand[int(np.argmax(scores))]
        se = torch.zeros(o_count, k, dtype=torch.bool)
        for o in range(o_count):
            se[o, order[o, :ns[o]]] = True
        return torch.zeros(o_count, dtype=torch.int64), se, neg


def binarize_layerwise(model: nn.Module, images, labels, refit_epochs: int = 1, lr: float = 3e-3,
                       batch: int = 10000, seed: int = 0, quiet: bool = True, log=None,
                       refit_hard_from: float = HARD_FROM) -> None:
    """Binarise a trained BiSE LeNet layer by layer, in place: each layer in turn takes its data-driven
    operators (:func:`data_project` on the binary outputs of the already binarised layers, for the first
    ``batch`` training images; :func:`fit_scores` for the last layer), written back as canonical exactly
    binarisable parameters (:func:`set_operators`) and frozen; then the float layers after it are refitted
    for ``refit_epochs`` epochs (Adam, one-cycle, cross-entropy) on their new binary inputs. At the end every
    layer is frozen-free again and exactly binarisable, so :func:`project` (and ``bmhw quantize``) reproduce
    the chosen operators."""
    from bmhw.train import to_tensor, train_classifier

    layers = bise_layers(model)
    names = list(model.WEIGHT_LAYERS)
    x_all = to_tensor(images[:batch])
    y_all = torch.from_numpy(np.asarray(labels[:batch], dtype=np.int64))
    model.eval()
    for i, name in enumerate(names):
        layer = layers[name]
        with torch.no_grad():
            h = model.forward_range(x_all, 0, i) if i else x_all
            if name == "conv1":
                h = binarize_input(h)
            h = model.layer_input(name, h)
        if i == len(names) - 1:
            op, se, neg = fit_scores(layer, h, y_all)
        else:
            op, se, neg = data_project(layer, h)
        set_operators(layer, op, se, neg)
        layer.set_binary(*project(layer))
        for prm in layer.parameters():
            prm.requires_grad_(False)
        result = None
        if i < len(names) - 1 and refit_epochs > 0:
            steps = refit_epochs * -(-len(images) // 128)
            result = train_classifier(model, images, labels, epochs=refit_epochs, lr=lr, seed=seed + i, quiet=quiet,
                                      loss_fn=bise_loss_fn(0.0, steps, refit_hard_from))
        if log is not None:
            log(name, op, se, result)
    for layer in layers.values():
        layer.unbinarize()
        for prm in layer.parameters():
            prm.requires_grad_(True)
