"""Rounding shifts and widths (bmhw.ir.intmath), against their definitions in docs/datapath.md."""

import math
from fractions import Fraction

import numpy as np
import pytest

from bmhw.ir.intmath import rnd, round_shift, width


@pytest.mark.parametrize("a", range(-20, 21))
@pytest.mark.parametrize("n", [-3, -1, 0, 1, 2, 5])
def test_round_shift_is_division_rounding_halves_up(a, n):
    expected = math.floor(Fraction(a, 2**n) + Fraction(1, 2)) if n > 0 else a * 2**-n
    assert round_shift(a, n) == expected
    assert int(round_shift(np.array([a]), np.array([n]))[0]) == expected


def test_round_shift_by_a_huge_amount_gives_zero_for_table_values():
    values = np.array([1, 2**16, 2**30, 2**60])
    assert np.array_equal(round_shift(values, np.array([200, 100, 64, 63])), [0, 0, 0, 0])


def test_rnd_rounds_halves_up():
    assert [rnd(x) for x in (-1.5, -0.5, 0.5, 1.5, 2.4999)] == [-1, 0, 1, 2, 2]
    assert rnd(Fraction(-3, 2)) == -1 and rnd(Fraction(5, 2)) == 3


@pytest.mark.parametrize("lo, hi, bits", [(0, 0, 1), (0, 1, 1), (0, 255, 8), (0, 256, 9), (-1, 0, 1), (-128, 127, 8), (-32, -32, 6), (-1, -1, 1),
                                          (-129, 0, 9), (-1, 128, 9), (5, 7, 3)])
def test_width(lo, hi, bits):
    assert width(lo, hi) == bits
