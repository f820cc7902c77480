"""Narrower memories: test accuracy of the integer golden model against its table bits, for each BM example with the
exact tables (F = 10, every log-weight kept), the measured default (F = 4, b = F + 4) and the widths fitted on
training images (the checkpoint's ``log_widths`` record, bmhw calibrate --fit-log-widths), beside the float model
and the MAC twin of the classical LeNet, both measured in the same run.

    python benchmarks/narrow.py --data ../shared/data/mnist

Prints a table; docs/results/narrow.md records a run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bmhw import golden
from bmhw.data import load_dataset
from bmhw.ir.intmath import width
from bmhw.models.checkpoint import load_checkpoint
from bmhw.quant import quantize, quantize_classical
from bmhw.quant.calibration import of_checkpoint
from bmhw.quant import narrow
from bmhw.train.loop import predict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Each BM example and the classical network whose MAC twin it is compared with.
TWINS = {"lenet_bm15_mnist.pt": "lenet_classical_mnist.pt", "lenet_bm15_maxima_mnist.pt": "lenet_classical_mnist.pt",
         "cnn_bm15_mnist.pt": "cnn_classical_mnist.pt"}


def twin_table_bits(net) -> int:
    """The MAC twin's weights and biases at their proven widths."""
    total = 0
    for layer in net.layers:
        for table in ("weights", "bias"):
            values = net.arrays.get(f"{layer['name']}/{table}")
            if values is not None:
                total += values.size * width(int(values.min()), int(values.max()))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                        / "mnist")
    parser.add_argument("--examples", nargs="+", default=list(TWINS), choices=list(TWINS))
    args = parser.parse_args()
    console = Console()
    images, labels = load_dataset("mnist", args.data, "test")

    twins = {}
    for name in sorted(set(TWINS[example] for example in args.examples)):
        classical = load_checkpoint(EXAMPLES / name)
        twin = quantize_classical(classical.model, of_checkpoint(classical.metadata, name))
        twins[name] = twin_table_bits(twin)
        console.print(f"MAC twin of {name}: {float((golden.predict(twin, images) == labels).mean()):.2%} on the test "
                      f"images, {twins[name]:,} table bits (8-bit weights)", highlight=False)

    table = Table(title=f"BM examples: integer accuracy on {len(labels):,} MNIST test images against table bits")
    for column in ("example", "float", "tables", "F per layer", "log-weight bits", "integer", "vs float (points)",
                   "table bits", "vs MAC twin", "s"):
        table.add_column(column, justify="right" if column not in ("example", "tables") else "left")
    for name in args.examples:
        ckpt = load_checkpoint(EXAMPLES / name)
        calibration = of_checkpoint(ckpt.metadata, name)
        float_acc = float((predict(ckpt.model, images) == labels).mean())
        record = narrow.of_checkpoint(ckpt.metadata, name)
        settings = [("exact", 10, None),
                    ("default", narrow.DEFAULT_LOG_FRAC_BITS, narrow.DEFAULT_LOG_FRAC_BITS + narrow.DEFAULT_OCTAVE_BITS)]
        if record is not None:
            settings.append(("fitted", record.log_frac_bits, record.log_weight_bits))
        for label, frac, bits in settings:
            start = time.perf_counter()
            net = quantize(ckpt.model, calibration, log_frac_bits=frac, log_weight_bits=bits)
            acc = float((golden.predict(net, images) == labels).mean())
            used = narrow.table_bits(net)
            layers = net.bm_layers()
            table.add_row(name, f"{float_acc:.2%}", label, ",".join(str(layer["F"]) for layer in layers),
                          ",".join(str(layer["widths"]["W"]) for layer in layers), f"{acc:.2%}",
                          f"{100 * (acc - float_acc):+.2f}", f"{used:,}", f"{used / twins[TWINS[name]]:.2f}x",
                          f"{time.perf_counter() - start:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
