"""Verify the Verilog LeNet on the full MNIST test set with Verilator + cocotb, bit-exactly.

    python benchmarks/rtl_sim.py --data ../shared/data/mnist            # all 10,000 test images
    python benchmarks/rtl_sim.py --images 200 --pe 1                     # a quick look at one PE per layer

Exports the example LeNet (.bmq) as Verilog (by default with every output channel of a layer in parallel,
--pe 1000, capped per layer), builds it once, and simulates the images in --workers processes side by
side, each comparing every result and every layer buffer with the golden model. Reports wall time,
simulated images per second, cycles per image measured by the accelerator's own counter against the
analytical count, and the hardware throughput at the clock. Baseline measured in the same run: the
golden model alone on the same images. docs/verilog.md records a run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bmhw import golden
from bmhw.backends import verilog
from bmhw.backends.verilog import rtlsim
from bmhw.data import load_dataset
from bmhw.ir import load_bmq

HERE = Path(__file__).resolve().parent


def simulate(project: str, images: np.ndarray, offset: int) -> dict:
    result = rtlsim.run(project, images, build_first=False)
    mismatch = result.mismatch
    if mismatch:
        mismatch = dict(mismatch, image=mismatch["image"] + offset)
    return {"images": result.images, "layer_images": result.layer_images, "mismatch": mismatch,
            "cycles": result.cycles, "times": result.times, "wall_s": result.wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=HERE.parent / "examples" / "lenet_bm15_mnist.bmq")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--pe", type=int, default=1000, help="PEs per BM layer, capped at its outputs and fan-in")
    parser.add_argument("--workers", type=int, default=2, help="simulations side by side (default: 2)")
    parser.add_argument("--clock", type=float, default=5.0, help="clock period in ns for the throughput (default 5)")
    args = parser.parse_args()
    console = Console()
    net = load_bmq(args.model)
    images, _ = load_dataset("mnist", args.data, "test")
    images = images[:args.images]
    pes = verilog.layer_pes(net, args.pe)
    expected = verilog.cycle_summary(net, pes, args.clock)["total"]

    start = time.perf_counter()
    golden_logits = golden.forward(net, images)
    golden_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="bmhw-rtl-bench-") as tmp:
        project = Path(tmp) / "rtl"
        start = time.perf_counter()
        verilog.export(net, project, pe=args.pe, clock_ns=args.clock)
        rtlsim.build(project)
        build_s = time.perf_counter() - start
        console.print(f"exported and built in {build_s:.1f} s; simulating {len(images)} images in {args.workers} "
                      f"processes (PEs per layer: {[p for p in pes if p]}) ...")
        chunks = np.array_split(np.arange(len(images)), args.workers)
        start = time.perf_counter()
        with ProcessPoolExecutor(args.workers) as pool:
            parts = list(pool.map(simulate, [str(project)] * len(chunks), [images[c] for c in chunks],
                                  [int(c[0]) if len(c) else 0 for c in chunks]))
        sim_s = time.perf_counter() - start

    checked = sum(p["images"] for p in parts)
    layer_images = sum(p["layer_images"] for p in parts)
    mismatches = [p["mismatch"] for p in parts if p["mismatch"]]
    cycles = np.concatenate([p["cycles"] for p in parts])
    intervals = np.concatenate([np.diff(p["times"]) for p in parts if len(p["times"]) > 1])
    table = Table(title=f"RTL simulation of {args.model.name} on {len(images)} MNIST test images")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("images checked bit-exactly (results and arg-max)", f"{checked}")
    table.add_row("... with every layer buffer compared too", f"{layer_images}")
    table.add_row("mismatches", f"{len(mismatches)}" + (f": {mismatches[0]['message']}" if mismatches else ""))
    table.add_row("cycles per image, measured", f"{cycles.min()} - {cycles.max()} (mean {cycles.mean():.0f})")
    table.add_row("cycles per image, analytical", f"{expected} ({(cycles.mean() - expected) / expected:+.2%})")
    if len(intervals):
        table.add_row(f"hardware throughput at {args.clock:g} ns",
                      f"{1e9 / (intervals.mean() * args.clock):.0f} images/s ({intervals.mean():.0f} cycles apart)")
    table.add_row("export + Verilator build", f"{build_s:.1f} s")
    table.add_row(f"simulation ({args.workers} processes)", f"{sim_s:.1f} s = {len(images) / sim_s:.1f} images/s")
    table.add_row("baseline: golden model (NumPy, 1 process)",
                  f"{golden_s:.1f} s = {len(images) / golden_s:.0f} images/s")
    console.print(table)
    console.print(f"golden logits checked: {golden_logits.shape[0]} images")
    if mismatches or checked != len(images):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
