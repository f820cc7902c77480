"""From a trained AdderNet (``bmhw.nn.AdderConv2d`` / ``AdderLinear``, batch norm folded) to the integer IR of
docs/datapath.md, "The adder layer".

The templates go onto the input code's grid (``W = rnd(w / s_in)``), so the adder PE subtracts codes from
integer templates with no multiplier; the folded batch norm ``y = a * d + c`` becomes one signed
``scale_bits``-bit multiplier per output and an offset, both at the scale ``2^(e_out - R)`` so that the
requantization is a rounding shift by ``R``. Activation codes and their calibration are those of the BM
layers (``bmhw.quant.quantize.build_net``). Exact arithmetic (Fractions) throughout: deterministic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.ir.intmath import rnd
from bmhw.ir import QuantizedNet
from bmhw.nn.adder import AdderConv2d, _AdderNeuron
from bmhw.quant.quantize import build_net

MAX_R = 40  # the cap on the requantization shift R (docs/datapath.md)
SCALE_BITS = (2, 32)  # the accepted range of --scale-bits


def check_scale_bits(scale_bits) -> int:
    lo, hi = SCALE_BITS
    if isinstance(scale_bits, bool) or not isinstance(scale_bits, (int, np.integer)) or not lo <= scale_bits <= hi:
        raise BmhwError(f"--scale-bits must be an integer between {lo} and {hi} (the adder layer's multiplier "
                        f"width, default 16), got {scale_bits!r}")
    return int(scale_bits)


def requant_shift(a_max: Fraction, e_out: int, scale_bits: int) -> int:
    """The largest integer ``R`` with ``a_max * 2^(R - e_out) <= 2^(m-1) - 1``, capped at MAX_R; 0 if ``a_max`` is 0."""
    if a_max == 0:
        return 0
    top = (1 << (scale_bits - 1)) - 1
    ratio = Fraction(top) / a_max  # largest t with 2^t <= ratio
    t = ratio.numerator.bit_length() - ratio.denominator.bit_length()
    while Fraction(2) ** t > ratio:
        t -= 1
    while Fraction(2) ** (t + 1) <= ratio:
        t += 1
    return min(t + e_out, MAX_R)


def adder_tables(mod: _AdderNeuron, s_in: Fraction, e_out: int, scale_bits: int) -> tuple[dict, int]:
    """``weights``, ``scale`` (MUL) and ``bias`` (B) of one adder layer, and its shift ``R``."""
    w = mod.weight.detach().double().reshape(mod.out_count, -1).numpy()
    a, c = (t.detach().double().numpy() for t in mod.folded_affine())
    weights = np.array([[rnd(Fraction(float(v)) / s_in) for v in row] for row in w], dtype=object)
    a_frac = [Fraction(float(v)) for v in a]
    r = requant_shift(max(abs(v) for v in a_frac) * s_in, e_out, scale_bits)
    unit = Fraction(2) ** (r - e_out)
    scale = [rnd(v * s_in * unit) for v in a_frac]
    bias = [rnd(Fraction(float(v)) * unit) for v in c]
    for name, table in (("weights", weights.reshape(-1).tolist()), ("bias", bias)):
        if max(abs(int(v)) for v in table) >= 1 << 62:
            raise BmhwError(f"an adder layer's {name} table does not fit 62 bits: the trained layer has a huge "
                            "weight or offset; retrain it or lower --scale-bits")
    return {"weights": weights.astype(np.int64), "scale": np.array(scale, dtype=np.int64),
            "bias": np.array(bias, dtype=np.int64)}, r


@torch.no_grad()
def quantize_adder(model: nn.Module, calib_images: np.ndarray, act_bits: int = 8, scale_bits: int = 16,
                   meta: dict | None = None) -> QuantizedNet:
    """Quantize an AdderNet (LeNet with ``neuron="adder"`` or an nn.Sequential of adder layers, ReLU,
    MaxPool2d, Flatten); ``calib_images``: uint8 images (N, C, H, W) for the activation scales."""
    if isinstance(act_bits, bool) or not isinstance(act_bits, (int, np.integer)) or not 2 <= act_bits <= 16:
        raise BmhwError(f"--act-bits must be between 2 and 16, got {act_bits!r}")
    scale_bits = check_scale_bits(scale_bits)

    def adder_layer(mod, name, s_in, q_in, e_out, relu):
        tables, r = adder_tables(mod, s_in, e_out, scale_bits)
        layer = {"op": "adder_conv2d" if isinstance(mod, AdderConv2d) else "adder_linear", "name": name,
                 "fan_in": int(tables["weights"].shape[1]), "out_count": int(tables["weights"].shape[0]),
                 "scale_bits": scale_bits, "R": r, "relu": relu, "in_max": q_in,
                 "out_max": (1 << act_bits) - 1 if relu else None, "in_scale": [s_in.numerator, s_in.denominator],
                 "out_scale_exp": e_out}
        return layer, tables

    return build_net(model, calib_images, act_bits, _AdderNeuron, adder_layer,
                     {"act_bits": int(act_bits), "scale_bits": scale_bits}, meta)
