"""From a trained classical network (PyTorch convolutions and linear layers) to the integer IR of its
MAC twin (docs/datapath.md, "The classical MAC layer").

The twin has the BM network's activation codes (unsigned, ``act_bits`` bits, power-of-two scales from
the same calibration) and signed ``weight_bits``-bit integer weights with one power-of-two scale per
layer, chosen with the input scale so that the accumulator's scale is a power of two: the
requantization between layers is then a rounding shift, with no multiplier, as in the BM datapath.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.ir import QuantizedNet
from bmhw.quant.quantize import _pow2, _scale_exponent, build_net, to_int64


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return to_int64(values, "weights or biases")


def mac_tables(mod: nn.Module, s_in: Fraction, weight_bits: int) -> tuple[dict, int]:
    """Integer weights and bias of one layer and the accumulator's scale exponent ``e``:
    ``W = rnd(w * s_in / 2^e)`` with the smallest ``e`` that keeps every |W| <= 2^(b-1) - 1, and
    ``B = rnd(b / 2^e)``; the accumulator ``sum_k q_k W[o, k] + B[o]`` then stands for ``2^e`` times it."""
    w = mod.weight.detach().double().reshape(mod.weight.shape[0], -1).numpy()
    top = (1 << (weight_bits - 1)) - 1
    e = _scale_exponent(float(np.abs(w).max()) * float(s_in), top)
    step = float(_pow2(e) / s_in)  # one weight code, in weight units
    weights = np.clip(_round_half_up(w / step), -top, top)
    b = mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(w.shape[0])
    bias = _round_half_up(b / float(_pow2(e)))
    return {"weights": weights, "bias": bias}, e


@torch.no_grad()
def quantize_classical(model: nn.Module, calib_images: np.ndarray, act_bits: int = 8, weight_bits: int = 8,
                       meta: dict | None = None) -> QuantizedNet:
    """Quantize a classical network (the MAC twin of a BM one); ``calib_images``: uint8 images (N, C, H, W)."""
    for name, value, lo, hi in (("act-bits", act_bits, 2, 16), ("weight-bits", weight_bits, 2, 16)):
        if not lo <= value <= hi:
            raise BmhwError(f"--{name} must be between {lo} and {hi}, got {value}")

    def mac_layer(mod, name, s_in, q_in, e_out, relu):
        tables, e_acc = mac_tables(mod, s_in, weight_bits)
        layer = {"op": "mac_conv2d" if isinstance(mod, nn.Conv2d) else "mac_linear", "name": name,
                 "fan_in": int(tables["weights"].shape[1]), "out_count": int(tables["weights"].shape[0]),
                 "weight_bits": weight_bits, "relu": relu, "in_max": q_in,
                 "out_max": (1 << act_bits) - 1 if relu else None, "in_scale": [s_in.numerator, s_in.denominator],
                 "acc_scale_exp": e_acc, "out_scale_exp": e_out}
        return layer, tables

    return build_net(model, calib_images, act_bits, (nn.Conv2d, nn.Linear), mac_layer,
                     {"act_bits": act_bits, "weight_bits": weight_bits}, meta)
