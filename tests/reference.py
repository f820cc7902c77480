"""The reductions of bmhw.nn.maxplus written literally, the reference of the layer tests."""

from __future__ import annotations
import math


def ref_reduce(ts: list[float], reduce: str, a: float | None) -> float:
    """The reductions of the module docstring, written literally (no stabilising shifts)."""
    if reduce == "max":
        return max(ts)
    if reduce == "lse":
        return math.log(sum(math.exp(a * t) for t in ts)) / a
    if reduce == "smorph":
        return sum(t * math.exp(a * t) for t in ts) / sum(math.exp(a * t) for t in ts)
    if reduce == "lmorph":
        p = [math.exp(t) for t in ts]
        return math.log(sum(q ** (a + 1) for q in p) / sum(q**a for q in p))
    raise AssertionError(reduce)
