"""Re-fit converted 1.5-branch layers on a calibration batch, one layer at a time.

Right after conversion the max term ``exp max_k(ln(x_k + dx) + v_k)`` stands for a whole sum of
products and so falls far short of it; the ``dw * sum x`` correction then dominates and the ReLUs die
(measured: a converted LeNet is at chance). For each output channel ``o`` this module fits, by least
squares on calibration data, the scale ``a_o`` and offset ``c_o`` in

    teacher pre-activation + dw * sum_k x_k  ~=  a_o * E_o(x) + c_o,     E_o = the max term

and folds them into the layer without leaving the neuron's form: ``v_o += ln a_o`` (so
``exp(max(...)) `` is scaled by ``a_o``; no multiplier is added) and the bias absorbs ``c_o``. Layers are
fitted in network order on the inputs the already re-fitted student layers produce, so later layers
learn to undo the error of earlier ones. The target is the teacher's own pre-activation on the
teacher's own input.
"""

from __future__ import annotations

import torch
from torch import nn

from bmhw.nn.layers import _BMNeuron


def _capture(model: nn.Module, layer: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
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


@torch.no_grad()
def refit_layer(layer: _BMNeuron, x_in: torch.Tensor, target: torch.Tensor) -> dict:
    """Fit scale and offset of each output channel of a 1.5-branch layer; returns fit statistics."""
    cols = layer.patches(x_in).double()
    e = layer.max_term(cols.float()).double()
    r = layer.rows(target).double() + float(layer.delta_w) * cols.sum(1, keepdim=True)
    e_mean, r_mean = e.mean(0), r.mean(0)
    cov = ((e - e_mean) * (r - r_mean)).mean(0)
    var = ((e - e_mean) ** 2).mean(0)
    # A channel whose max term does not move with its target keeps scale 1 and gets only an offset.
    scale = torch.where((var > 0) & (cov > 0), cov / var.clamp_min(1e-30), torch.ones_like(var))
    offset = r_mean - scale * e_mean
    v_shape = (-1,) + (1,) * (layer.v.dim() - 1)
    layer.v.add_(scale.log().to(layer.v.dtype).view(v_shape))
    new_sum = torch.exp(layer.v.double().reshape(layer.out_count, -1)).sum(1)
    bias = offset + float(layer.delta_x) * new_sum
    if layer.bias is None:
        layer.bias = nn.Parameter(bias.to(layer.v.dtype))
    else:
        layer.bias.copy_(bias)
    fitted = scale * e + offset
    resid = ((r - fitted) ** 2).mean()
    return {"scale_median": float(scale.median()), "r2": float(1 - resid / ((r - r_mean) ** 2).mean().clamp_min(1e-30))}


@torch.no_grad()
def refit_bm15(student: nn.Module, teacher: nn.Module, x: torch.Tensor, progress=None) -> dict:
    """Re-fit every 1.5-branch layer of ``student`` (converted from ``teacher``) in network order.

    ``student.weight_layers()`` and ``teacher.weight_layers()`` must have the same names.
    Returns per-layer fit statistics.
    """
    student.eval()
    teacher.eval()
    t_layers = teacher.weight_layers()
    stats = {}
    for name, layer in student.weight_layers().items():
        if not (isinstance(layer, _BMNeuron) and layer.branches == 1.5):
            continue
        x_in = _capture(student, layer, x, "input")
        target = _capture(teacher, t_layers[name], x, "output")
        stats[name] = refit_layer(layer, x_in, target)
        if progress is not None:
            progress(name, stats[name])
    return stats
