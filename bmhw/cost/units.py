"""The analytical cost of arithmetic units at their bit widths (docs/gates.md, "Units").

Logic is counted in *gates*: two-input cells (AND, NAND, OR, NOR, XOR, XNOR) and 2:1 multiplexers, the
cells Yosys maps to with ``abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX``, so that the model and a synthesis can
be compared directly. Flip-flops and table (ROM / RAM) bits are counted on their own; ``gate_equivalents``
sums the three with the documented weights. Energy uses the 45 nm figures of Horowitz (ISSCC 2014).
NumPy-free and torch-free: plain integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A full adder is two XORs (sum), two ANDs and an OR (carry); a half adder one XOR and one AND.
FULL_ADDER = 5
HALF_ADDER = 2
# Gate equivalents of the other two resources (docs/gates.md): a D flip-flop is two latches, about 5
# two-input gates in typical standard-cell libraries (4.5-6 NAND2 equivalents); a ROM bit synthesized as
# logic costs about 0.17 gates (Yosys on the LeNet tables: 0.13 to 0.23, docs/gates.md).
GATES_PER_FLIP_FLOP = 5.0
GATES_PER_ROM_BIT = 0.17
# Horowitz, ISSCC 2014, 45 nm: 8-bit add 0.03 pJ, 32-bit add 0.1 pJ (about linear in the width);
# 8-bit multiply 0.2 pJ, 32-bit 3.1 pJ (about linear in the number of partial-product bits, n * m).
ADD_PJ_PER_BIT = 0.03 / 8
MUL_PJ_PER_BIT2 = 0.2 / 64


@dataclass
class Cost:
    """Gates, flip-flops and table bits of a piece of hardware, with the units that make it up."""

    gates: float = 0.0
    flip_flops: int = 0
    rom_bits: int = 0
    units: dict = field(default_factory=dict)  # unit name -> count, for the report

    def __add__(self, other: Cost) -> Cost:
        units = dict(self.units)
        for name, count in other.units.items():
            units[name] = units.get(name, 0) + count
        return Cost(self.gates + other.gates, self.flip_flops + other.flip_flops, self.rom_bits + other.rom_bits,
                    units)

    def __mul__(self, times: int) -> Cost:
        return Cost(self.gates * times, self.flip_flops * times, self.rom_bits * times,
                    {name: count * times for name, count in self.units.items()})

    __rmul__ = __mul__

    @property
    def logic_equivalents(self) -> float:
        """Gates and flip-flops, without the tables."""
        return self.gates + GATES_PER_FLIP_FLOP * self.flip_flops

    @property
    def gate_equivalents(self) -> float:
        return self.gates + GATES_PER_FLIP_FLOP * self.flip_flops + GATES_PER_ROM_BIT * self.rom_bits


def _unit(name: str, gates: float = 0.0, flip_flops: int = 0, rom_bits: int = 0) -> Cost:
    return Cost(gates, flip_flops, rom_bits, {name: 1})


def _check(*widths: int) -> None:
    for n in widths:
        if int(n) < 1:
            raise ValueError(f"a unit needs a width of at least 1 bit, got {n}")


def adder(n: int) -> Cost:
    """n-bit ripple-carry adder (or subtractor: the same with inverted inputs and carry-in 1): a half adder
    at the least significant bit, full adders above it."""
    _check(n)
    return _unit(f"adder {n}b", HALF_ADDER + FULL_ADDER * (n - 1))


def incrementer(n: int) -> Cost:
    """n-bit counter step, a + c with a one-bit c (a popcount accumulator): a half-adder chain."""
    _check(n)
    return _unit(f"incrementer {n}b", HALF_ADDER * n)


def comparator(n: int) -> Cost:
    """a > b on n bits: a carry chain of one XOR and one multiplexer per bit (the borrow of a - b)."""
    _check(n)
    return _unit(f"comparator {n}b", 2 * n)


def mux(n: int) -> Cost:
    """n-bit 2:1 multiplexer."""
    _check(n)
    return _unit(f"mux {n}b", n)


def multiplier(n: int, m: int) -> Cost:
    """n x m array multiplier: n * m AND gates for the partial products, m - 1 rows of n-bit adders."""
    _check(n, m)
    return _unit(f"multiplier {n}x{m}b", n * m + (m - 1) * adder(n).gates)


def absolute(n: int) -> Cost:
    """|a| of an n-bit two's complement value: XOR with the sign, then add the sign (a half-adder chain)."""
    _check(n)
    return _unit(f"abs {n}b", n + HALF_ADDER * n)


def shifter(n: int, max_shift: int) -> Cost:
    """A barrel shifter of n bits by 0 .. max_shift: one row of n multiplexers per bit of the amount."""
    _check(n)
    stages = max(0, int(max_shift)).bit_length()
    return _unit(f"shifter {n}b/{stages}", n * stages)


def register(n: int) -> Cost:
    _check(n)
    return _unit(f"register {n}b", flip_flops=n)


def rom(entries: int, width: int) -> Cost:
    _check(entries, width)
    return _unit(f"rom {entries}x{width}b", rom_bits=entries * width)


def add_energy_pj(n: int) -> float:
    return ADD_PJ_PER_BIT * n


def mul_energy_pj(n: int, m: int) -> float:
    return MUL_PJ_PER_BIT2 * n * m
