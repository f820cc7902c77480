"""Training BiSE networks (bmhw.nn.bise): the regularisation towards binarisable weights, the loss with a late
straight-through phase, and the data-driven layer-by-layer binarisation with re-fits (docs/training.md, "BiSE")."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.nn.bise import BiSE, _BiSENeuron, binarize_input
from bmhw.nn.bise_math import EROSION, activable_distances, binarizable, fold, project


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
    from bmhw.train.loop import to_tensor, train_classifier

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

