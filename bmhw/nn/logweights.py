"""The log-weights of BM layers from classical weights (docs/neurons.md): the power-of-two offset dw, formula 2 of
the 4-branch neuron, v = ln(s w + dw) of the 1.5-branch one, v = ln|w| of a sign-split layer."""

from __future__ import annotations

import math

import torch

# ln of an input that is zero (4 branches) and the log-weight of a weight that is zero ("-inf" in
# formula 2). exp(-60) ~ 1e-26 is far below float32 resolution at any activation scale we meet, yet
# finite, so sums stay free of NaN and gradients stay defined.
LOG_ZERO = -60.0


def power_of_two_at_least(x: float) -> float:
    """Smallest power of two >= x (x > 0): the per-layer weight offset dw."""
    if not x > 0 or not math.isfinite(x):
        raise ValueError(f"power_of_two_at_least needs a positive finite number, got {x}")
    # Exact, unlike ceil(log2(x)), which rounds 2^k (1 + 2^-52) down to 2^k.
    mantissa, exponent = math.frexp(x)  # x = mantissa * 2^exponent, 0.5 <= mantissa < 1
    return math.ldexp(1.0, exponent - 1 if mantissa == 0.5 else exponent)


def delta_w_for(weight: torch.Tensor, margin: float = 2.0**-6) -> float:
    """The weight offset dw for a classical weight tensor: a power of two above max|w| (1 + margin),
    so that every shifted weight w + dw is positive and its log finite."""
    return power_of_two_at_least(float(weight.detach().abs().max()) * (1 + margin) or 1.0)


def log_weights_15(weight: torch.Tensor, delta_w: float, sign=1.0) -> torch.Tensor:
    """v = ln(s w + dw), the 1.5-branch log-weights of a classical weight tensor (s: each output's sign, +1 or -1,
    broadcast over the weight's first dimension)."""
    sign = torch.as_tensor(sign, dtype=weight.dtype).reshape((-1,) + (1,) * (weight.dim() - 1))
    shifted = sign * weight.detach() + delta_w
    if (shifted <= 0).any():
        raise ValueError(f"delta_w={delta_w} does not make every weight positive (min w = {float(weight.min())})")
    return shifted.log()


def log_weights_split(weight: torch.Tensor) -> torch.Tensor:
    """v = ln|w| (LOG_ZERO for a zero weight): the log-weights of a sign-split layer, whose sign is s = sign w."""
    return weight.detach().abs().clamp_min(1e-30).log().clamp_min(LOG_ZERO)


def log_weights_4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Formula 2: v+ = ln w where w > 0, v- = ln|w| where w < 0, LOG_ZERO ("-inf") elsewhere."""
    w = weight.detach()
    floor = torch.full_like(w, LOG_ZERO)
    v_pos = torch.where(w > 0, w.clamp_min(1e-30).log(), floor).clamp_min(LOG_ZERO)
    v_neg = torch.where(w < 0, (-w).clamp_min(1e-30).log(), floor).clamp_min(LOG_ZERO)
    return v_pos, v_neg
