"""Export the example LeNet to Vitis HLS C++ and C-simulate it on the full MNIST test set.

    python benchmarks/hls_csim.py --data ../shared/data/mnist

Times `bmhw export` from the checkpoint (quantization included) and the C-simulation (g++ build and
testbench, every layer compared with the golden model), with the golden model alone on the same images
as the baseline measured in the same run. Prints a table; docs/hls.md records a run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bmhw import golden
from bmhw.backends.hls import csim
from bmhw.data import load_dataset

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=HERE.parent / "examples" / "lenet_bm15_mnist.pt")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    args = parser.parse_args()
    console = Console()
    images, _ = load_dataset("mnist", args.data, "test")
    images = images[:args.images]

    with tempfile.TemporaryDirectory(prefix="bmhw-bench-") as tmp:
        project = Path(tmp) / "hls"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bmhw.cli", "export", str(args.checkpoint), "--target", "hls",
                        "--data", str(args.data), "-o", str(project)], check=True, capture_output=True)
        export_s = time.perf_counter() - start
        net = csim.load_project(project)

        start = time.perf_counter()
        golden.predict(net, images)
        golden_s = time.perf_counter() - start

        start = time.perf_counter()
        csim.write_vectors(project, images)
        vectors_s = time.perf_counter() - start
        start = time.perf_counter()
        binary = csim.build(project)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        result = csim.run(project, binary)
        run_s = time.perf_counter() - start

    table = Table(title=f"HLS export and C-simulation, {args.checkpoint.name}, {len(images)} MNIST test images")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("note")
    table.add_row("bmhw export (.pt: quantize + write)", f"{export_s:.1f}", "a fresh Python process")
    table.add_row("golden vectors (every layer)", f"{vectors_s:.1f}", "")
    table.add_row("g++ build", f"{build_s:.1f}", "")
    table.add_row("testbench run", f"{run_s:.1f}", f"{len(images) / run_s:,.0f} images/s")
    table.add_row("baseline: golden model alone", f"{golden_s:.1f}", f"{len(images) / golden_s:,.0f} images/s")
    console.print(table)
    verdict = "0 mismatches, bit-exact" if result.passed else f"{result.mismatches} MISMATCHES"
    console.print(f"csim: {result.images} images, {verdict}")
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
