"""Integer helpers of the datapath (docs/datapath.md, "Rounding and shifts"), for Python ints and
NumPy int arrays alike. NumPy only: the golden model and the backends use them."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# Right shifts by more than this give the same result as by this much for the values we shift
# (all below 2^61), and NumPy's shifts are undefined from 64 on.
_MAX_SHIFT = 62


def rnd(z) -> int:
    """floor(z + 1/2) of a float or Fraction, exactly."""
    if isinstance(z, Fraction):
        return math.floor(z + Fraction(1, 2))
    return math.floor(float(z) + 0.5)


def round_shift(a, n):
    """Divide by 2^n rounding halves up (n > 0), or multiply by 2^-n (n <= 0); ``n`` may be an array."""
    if isinstance(a, (int, np.integer)) and isinstance(n, (int, np.integer)):
        a, n = int(a), int(n)
        if n > 0:
            return (a + (1 << (n - 1))) >> n
        return a << -n
    a = np.asarray(a, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    right = np.minimum(np.maximum(n, 0), _MAX_SHIFT)
    half = np.left_shift(np.int64(1), right) >> 1  # 2^(n-1) for n > 0, else 0
    return np.left_shift((a + half) >> right, np.maximum(-n, 0))


def width(lo: int, hi: int) -> int:
    """Bits of the smallest unsigned (lo >= 0) or two's complement field that holds [lo, hi]."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range [{lo}, {hi}]")
    if lo >= 0:
        return max(1, hi.bit_length())
    return max((-lo - 1).bit_length(), hi.bit_length() if hi >= 0 else 0) + 1
