"""Semantic mutations of the example .bmq of every family (and of the BM LeNet with several maxima), through the
loader, the golden model and the integer ONNX graph (issue: "nothing bad gets in"): prints, per network, how many
mutants were refused in one line and how many were accepted and then computed alike by both, and every failure (a
traceback, a two-line refusal, a mismatch, a signal outside its proven range). Exit 1 on any failure.

    python benchmarks/fuzz_bmq.py --mutations 1000 --seed 2026

The mutations and the property are those of tests/fuzz/bmq_mutations.py (which CI runs with a smaller budget).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
from bmq_mutations import check_mutant, memory_cap, mutants  # noqa: E402

CHECKPOINTS = {"bm15": None, "classical": "lenet_classical_mnist.pt", "adder": "lenet_adder_pkkd_mnist.pt",
               "bise": "lenet_bise_mnist.pt", "bm15_maxima": "lenet_bm15_maxima_mnist.pt"}
# bm15_maxima: the BM LeNet with several maxima per output (grouped layers split by sign), whose mutants also change
# its groups, split_sign and weight_sign.


def example(family: str, folder: Path) -> bytes:
    if CHECKPOINTS[family] is None:
        return (ROOT / "examples" / "lenet_bm15_mnist.bmq").read_bytes()
    path = folder / f"{family}.bmq"
    subprocess.run([sys.executable, "-m", "bmhw.cli", "quantize", str(ROOT / "examples" / CHECKPOINTS[family]),
                    "-o", str(path)], check=True, capture_output=True)
    return path.read_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=1000, help="mutants in all, split over the example networks")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--memory-gib", type=float, default=8.0,
                        help="address space the run may take beyond what it holds at the start (a mutant that asks "
                             "for more fails with MemoryError, named in the list, instead of exhausting the machine)")
    args = parser.parse_args()
    images = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28))
    table = Table(title=f"{args.mutations} semantic .bmq mutations, seed {args.seed}")
    for column in ("family", "mutants", "refused (one line)", "accepted (golden = ONNX)", "failures", "seconds"):
        table.add_column(column, justify="left" if column == "family" else "right")
    failures = []
    with tempfile.TemporaryDirectory() as tmp, memory_cap(args.memory_gib):
        tmp = Path(tmp)
        for n, family in enumerate(CHECKPOINTS):
            count = args.mutations // len(CHECKPOINTS) + (n < args.mutations % len(CHECKPOINTS))
            counts, start, path = {"refused": 0, "accepted": 0, "failed": 0}, time.perf_counter(), tmp / "m.bmq"
            for mutant in mutants(example(family, tmp), args.seed + n, count):
                path.write_bytes(mutant.data)
                try:
                    counts[check_mutant(path, images)] += 1
                except Exception as err:  # noqa: BLE001 - every other outcome is a finding
                    counts["failed"] += 1
                    failures.append(f"{family} ({mutant.what}): {type(err).__name__}: "
                                    f"{str(err)[:200] or 'more memory than --memory-gib allows'}")
            table.add_row(family, str(count), str(counts["refused"]), str(counts["accepted"]), str(counts["failed"]),
                          f"{time.perf_counter() - start:.1f}")
    console = Console(width=200)
    console.print(table)
    for line in failures:
        console.print(line, highlight=False)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
