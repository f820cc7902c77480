"""Re-fit converted 1.5-branch layers on a calibration batch, one layer at a time.

Right after conversion (``v = ln(w + dw)`` with ``dw >= max|w|``) every shifted weight is close to
``dw``, so the max term ``exp max_k(ln(x_k + dx) + v_k)`` is about ``dw * max_k x_k`` whatever the
weights, while the ``dw * sum x`` correction dominates the output and the ReLUs die (measured: a
converted LeNet is at chance). The re-fit turns each layer into the best 1.5-branch neuron we can
write down in closed form, without leaving the neuron's form:

1. **Positive-part log-weights**: ``v_k = ln max(w_k, eps)``, so the max term looks for the inputs
   with the strongest positive evidence (non-positive weights drop out of the max).
2. **Least squares per output channel** ``o`` on calibration data, against the teacher's
   pre-activation ``y``: ``y ~= a_o E_o + g_o sum_k x_k + c_o`` with ``E_o`` the max term.
3. **One power-of-two dw per layer**: ``dw = 2^round(log2(-median_o g_o))`` (the correction stays a
   shift in hardware), then ``a_o``, ``c_o`` re-solved with that ``dw`` fixed.
4. **Fold**: ``v_o += ln a_o`` (scaling ``exp(max)`` by ``a_o`` without a multiplier) and the bias takes
   ``c_o + dx * sum_k exp(v_ok)``.

Layers are fitted in network order on the inputs that the already re-fitted student layers produce;
the target is the teacher's own pre-activation on the teacher's own input. It is a starting point for
distillation, not a finished network (measured figures in docs/training.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bmhw.nn.layers import _BMNeuron

# Log-weight given to non-positive weights, relative to the largest weight: out of the max in practice.
_EPS_REL = 1e-6
# Smallest dw the fit may choose (a layer whose best input-sum coefficient is not negative).
_MIN_DELTA_W = 2.0**-16


def capture(model: nn.Module, layer: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """Run ``model`` on ``x`` and return the input or the output of ``layer``."""
    seen = {}

    def hook(_module, inputs, output):
        seen["value"] = inputs[0] if what == "input" else output

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    return seen["value"]


def _fit(features: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Per-channel least squares: ``target[:, o] ~= sum_i coef[o, i] * features[i][:, o]``."""
    design = torch.stack([f.expand_as(target) for f in features], dim=-1).transpose(0, 1)  # O x N x F
    return torch.linalg.lstsq(design, target.T.unsqueeze(-1)).solution.squeeze(-1)  # O x F


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    resid = ((pred - target) ** 2).mean(0)
    return float((1 - resid / target.var(0).clamp_min(1e-30)).median())


def power_of_two_delta_w(value: float) -> float:
    """The power of two nearest to ``value`` in log scale, at least 2^-16 (and 2^-16 for ``value <= 0``): a dw
    the hardware applies as a shift."""
    return max(_MIN_DELTA_W, 2.0 ** round(math.log2(value))) if value > 0 else _MIN_DELTA_W


@torch.no_grad()
def refit_layer(layer: _BMNeuron, x_in: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                signed: bool = False) -> dict:
    """Re-fit a 1.5-branch layer to ``target`` (the teacher's pre-activation for input ``x_in``),
    starting from the classical ``weight``; returns fit statistics (median R^2, chosen dw).

    With ``signed``, each output channel also chooses its sign s: +1 keeps the positive part of its weights in
    the max (the paper's neuron), -1 the negative part (the mirrored neuron, whose max is the strongest
    evidence against it); the sign whose first least-squares fit explains more of the target wins."""
    scale_w = float(weight.abs().max()) or 1.0
    cols = layer.patches(x_in)
    s = cols.sum(1, keepdim=True).double()
    y = layer.rows(target).double()
    ones = torch.ones_like(s)
    candidates = []
    for sign in ((1.0, -1.0) if signed else (1.0,)):
        v = torch.log((sign * weight.detach()).clamp_min(_EPS_REL * scale_w)).to(layer.v)
        layer.v.copy_(v)
        e = layer.max_term(cols).double()
        coef = _fit([e, s, ones], y)
        resid = ((coef[:, 0] * e + coef[:, 1] * s + coef[:, 2] - y) ** 2).mean(0)
        # A sign only counts where its max term enters with that sign (a s > 0).
        candidates.append((v, e, coef, torch.where(coef[:, 0] * sign > 0, -resid, torch.full_like(resid, -math.inf))))
    # Per output channel, the sign whose fit leaves the smallest residual (the first, +1, on a tie).
    vs, es, coefs, scores = (torch.stack(part) for part in zip(*candidates))
    pick = scores.argmax(0)
    channel = torch.arange(len(pick))
    v, e, coef = vs[pick, channel], es[pick, :, channel].T, coefs[pick, channel]
    sign = torch.tensor((1.0, -1.0), dtype=coef.dtype)[pick]
    layer.v.copy_(v)
    layer.sign.copy_(sign.to(layer.sign))
    dw = power_of_two_delta_w(float(-(coef[:, 1] * sign).median()))
    layer.delta_w.fill_(dw)
    return {"r2": _fit_scale_offset(layer, e, s, y), "delta_w": dw, "negative": int((sign < 0).sum())}


def _fit_scale_offset(layer: _BMNeuron, e: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> float:
    """Steps 2 (with dw fixed) and 4: per channel ``sign y + dw s ~= a_o e + c_o``, folded into v and the bias;
    returns the fit's median R^2."""
    dw = float(layer.delta_w)
    sign = layer.sign.double()
    y = y * sign
    coef = _fit([e, torch.ones_like(s)], y + dw * s)
    # A channel whose max term does not grow with its target keeps a = 1 and gets only an offset.
    good = coef[:, 0] > 0
    scale = torch.where(good, coef[:, 0], torch.ones_like(coef[:, 0]))
    offset = torch.where(good, coef[:, 1], (y + dw * s - e).mean(0))
    layer.v.add_(scale.log().to(layer.v.dtype).view((-1,) + (1,) * (layer.v.dim() - 1)))
    bias = sign * (offset + float(layer.delta_x) * torch.exp(layer.v.double().reshape(layer.out_count, -1)).sum(1))
    if layer.bias is None:
        layer.bias = nn.Parameter(bias.to(layer.v.dtype))
    else:
        layer.bias.copy_(bias)
    return _r2(scale * e + offset - dw * s, y)


@torch.no_grad()
def refit_scale_offset(layer: _BMNeuron, x_in: torch.Tensor, target: torch.Tensor) -> dict:
    """Steps 2 and 4 alone, with the layer's own log-weights and dw kept: a 1.5-branch layer whose reduction
    changed (LSE -> MAX) brought back to the scale of its old output ``target`` on inputs ``x_in``."""
    cols = layer.patches(x_in)
    e = layer.max_term(cols).double()
    return {"r2": _fit_scale_offset(layer, e, cols.sum(1, keepdim=True).double(), layer.rows(target).double())}


@torch.no_grad()
def is_grouped(layer) -> bool:
    """Whether a BM layer has several maxima per neuron (or a sign split): the one-max re-fit does not apply."""
    return getattr(layer, "maxima", 1) != 1 or getattr(layer, "split_sign", False)


def refit_bm15(student: nn.Module, teacher: nn.Module, x: torch.Tensor, progress=None, signed: bool = False) -> dict:
    """Re-fit every 1.5-branch layer of ``student`` (converted from ``teacher``) in network order.

    ``student.weight_layers()`` and ``teacher.weight_layers()`` must have the same names.
    Returns per-layer fit statistics.
    """
    student.eval()
    teacher.eval()
    t_layers = teacher.weight_layers()
    stats = {}
    for name, layer in student.weight_layers().items():
        if not (isinstance(layer, _BMNeuron) and layer.branches == 1.5) or is_grouped(layer):
            continue  # a layer with several maxima starts from its conversion (docs/training.md)
        x_in = capture(student, layer, x, "input")
        target = capture(teacher, t_layers[name], x, "output")
        stats[name] = refit_layer(layer, x_in, target, t_layers[name].weight, signed=signed)
        if progress is not None:
            progress(name, stats[name])
    return stats
