"""bmhw demo: the bundled examples on the built-in sample, then through HLS C-simulation and RTL simulation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.table import Table

from bmhw.models.checkpoint import load_checkpoint
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.train.loop import evaluate
from bmhw.cli.common import console


# The demo's RTL simulation: PEs per BM layer and images (a short run; bmhw sim does the long ones).
DEMO_RTL_PE = 4


DEMO_RTL_IMAGES = 20


def cmd_demo(args) -> int:
    from bmhw import golden
    from bmhw.ir import load_bmq
    from bmhw.resources import examples_dir

    folder = Path(args.examples or examples_dir())
    images, labels = load_dataset("mnist", None, "test")
    table = Table(title=f"bmhw demo: the example networks on the built-in MNIST sample ({len(images)} test images)")
    table.add_column("network", no_wrap=True)
    table.add_column("neurons")
    table.add_column("accuracy here", justify="right")
    table.add_column("recorded on the full test set", justify="right")
    for name in ("lenet_classical_mnist.pt", "lenet_bm15_mnist.pt"):
        ckpt = load_checkpoint(folder / name)
        kinds = sorted({s["neuron"] + ("" if s["neuron"] == "classical" else f", {s['reduce']}")
                        for s in ckpt.config["layers"].values()})
        recorded = ckpt.metadata.get("accuracy")
        table.add_row(name, "; ".join(kinds), f"{evaluate(ckpt.model, images, labels):.2%}",
                      "-" if recorded is None else f"{recorded:.2%}")
    net = load_bmq(folder / "lenet_bm15_mnist.bmq")
    bits = net.bm_layers()[0]["widths"]["q_out"]
    accuracy = float((golden.predict(net, images) == labels).mean())
    table.add_row("lenet_bm15_mnist.bmq", f"integer golden model, {bits}-bit codes", f"{accuracy:.2%}", "-")
    console.print(table)
    _demo_hardware(net, images)
    console.print("next: bmhw export examples/lenet_bm15_mnist.bmq --target hls -o build/hls && bmhw csim build/hls")
    console.print("      bmhw export examples/lenet_bm15_mnist.bmq --target verilog -o build/rtl && bmhw sim build/rtl")
    return 0


def _demo_hardware(net, images) -> None:
    """The hardware flow on the same sample: Vitis HLS C++ generated and C-simulated with g++, then Verilog
    simulated by Verilator under the cocotb bench (every layer buffer compared), both against the golden model."""
    import tempfile

    from bmhw.backends import hls
    from bmhw.backends.hls import csim

    with tempfile.TemporaryDirectory(prefix="bmhw-demo-") as tmp:
        project = Path(tmp) / "hls"
        start = time.perf_counter()
        hls.export(net, project)
        console.print(f"exported lenet_bm15_mnist.bmq as a Vitis HLS project ({time.perf_counter() - start:.1f} s); "
                      "C-simulating it with g++ against the golden model ...")
        start = time.perf_counter()
        result = csim.csim(project, images)
        if not result.passed:
            raise BmhwError(f"C-simulation disagrees with the golden model: {result.mismatches} mismatches in "
                            f"{result.images} images")
        print(f"csim: {result.images} images, 0 mismatches, bit-exact against the golden model "
              f"({time.perf_counter() - start:.1f} s)")

        from bmhw.backends import verilog

        from bmhw.backends.verilog import rtlsim

        project, pe = Path(tmp) / "rtl", DEMO_RTL_PE
        start = time.perf_counter()
        verilog.export(net, project, pe=pe)
        expected = verilog.cycle_summary(net, verilog.layer_pes(net, pe))["total"]
        console.print(f"exported it as Verilog ({pe} PEs per layer); building it with Verilator and simulating "
                      f"{DEMO_RTL_IMAGES} images under cocotb against the golden model ...")
        result = rtlsim.run(project, images[:DEMO_RTL_IMAGES])
        if not result.passed:
            raise BmhwError(f"the RTL disagrees with the golden model: {(result.mismatch or {}).get('message')}")
        print(f"rtl sim: {result.images} images, 0 mismatches in every layer, bit-exact against the golden model; "
              f"{int(np.mean(result.cycles))} cycles per image (analytical {expected}) "
              f"({time.perf_counter() - start:.1f} s)")
