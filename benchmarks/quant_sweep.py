"""Accuracy of the integer golden model against the float model, over activation widths and
log-domain precisions, and the golden model's speed; the baseline (float PyTorch model) is measured
in the same run.

    python benchmarks/quant_sweep.py --data ../shared/data/mnist --plot docs/results/quant_sweep.png

Prints a table (and writes the PNG plot); docs/results/quant.md records a run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from bmhw import golden
from bmhw.models.checkpoint import load_checkpoint
from bmhw.data import calibration_sample, load_dataset
from bmhw.quant import quantize
from bmhw.train.loop import predict

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=HERE.parent / "examples" / "lenet_bm15_mnist.pt")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--act-bits", type=int, nargs="+", default=[4, 5, 6, 7, 8])
    parser.add_argument("--log-frac-bits", type=int, nargs="+", default=[4, 6, 8, 10])
    parser.add_argument("--calib-images", type=int, default=2000)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG plot here")
    args = parser.parse_args()
    console = Console()

    model = load_checkpoint(args.checkpoint).model
    train_images, _ = load_dataset("mnist", args.data, "train")
    images, labels = load_dataset("mnist", args.data, "test")
    calib = calibration_sample(train_images, args.calib_images)

    start = time.perf_counter()
    float_pred = predict(model, images)
    float_seconds = time.perf_counter() - start
    float_acc = float((float_pred == labels).mean())
    console.print(f"float model: {float_acc:.2%} on {len(labels)} test images, {len(labels) / float_seconds:,.0f} images/s "
                  f"(PyTorch, {torch.get_num_threads()} threads)")

    table = Table(title=f"integer golden model vs float ({float_acc:.2%}), {args.checkpoint.name}")
    for column in ("act bits", "log frac bits F", "accuracy", "vs float (points)", "same class as float",
                   "golden images/s"):
        table.add_column(column, justify="right")
    results = {}
    for act_bits in args.act_bits:
        for f in args.log_frac_bits:
            net = quantize(model, calib, act_bits=act_bits, log_frac_bits=f)
            start = time.perf_counter()
            pred = golden.predict(net, images)
            speed = len(labels) / (time.perf_counter() - start)
            acc = float((pred == labels).mean())
            results[act_bits, f] = acc
            table.add_row(str(act_bits), str(f), f"{acc:.2%}", f"{(acc - float_acc) * 100:+.2f}",
                          f"{(pred == float_pred).mean():.2%}", f"{speed:,.0f}")
    console.print(table)

    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for f in args.log_frac_bits:
            ax.plot(args.act_bits, [100 * results[a, f] for a in args.act_bits], marker="o", label=f"F = {f}")
        ax.axhline(100 * float_acc, color="black", linestyle="--", label="float model")
        ax.set_xlabel("activation bits")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Integer golden model, {args.checkpoint.name}")
        ax.legend()
        fig.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=100, metadata={"Software": None})
        console.print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
