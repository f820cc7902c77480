"""Speed and memory of BM layers (hard max and LSE) against F.conv2d / F.linear on the same shapes.

For the LeNet and ResNet-22 layer shapes at batch 128 (by default), it times the forward pass and the
forward + backward pass of a 1.5-branch BM layer with the hard max and with LSE (alpha 4), and of the
classical layer, in the same process, and measures each one's peak memory in a fresh process (the rise of
the peak resident set over the process's resident set with the inputs in place). It prints a table of times
and of ratios to the classical layer. A second table times the hard max with several maxima per neuron
(bmhw.nn.groups) on the LeNet shapes: per input channel, and per channel split by weight sign.

    python benchmarks/bm_kernels.py                 # all shapes, batch 128
    python benchmarks/bm_kernels.py --only lenet    # LeNet shapes only (and the grouped rows)
    BMHW_KERNELS=0 python benchmarks/bm_kernels.py  # the PyTorch fallback, for comparison

Results and the command: docs/training.md ("Speed of the BM layers").
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

# (name, kind, in channels or features, out, kernel, stride, padding, input side)
SHAPES = [
    ("lenet conv1", "conv", 1, 6, 5, 1, 0, 28),
    ("lenet conv2", "conv", 6, 16, 5, 1, 0, 12),
    ("lenet conv 16->32 (toolchain.md)", "conv", 16, 32, 5, 1, 0, 12),
    ("lenet fc1", "linear", 256, 120, 0, 0, 0, 0),
    ("resnet22 stage 1 conv", "conv", 16, 16, 3, 1, 1, 32),
    ("resnet22 stage 2 conv", "conv", 64, 64, 3, 1, 1, 16),
    ("resnet22 stage 3 conv", "conv", 256, 256, 3, 1, 1, 8),
    ("resnet22 fc", "linear", 256, 10, 0, 0, 0, 0),
]
VARIANTS = ("classical", "bm max", "bm lse")
# (shape, maxima of the grouped rows): per input channel ("N"), per channel and weight sign ("Ns"), per input ("K").
GROUPED = [
    ("lenet conv1", "1s"),
    ("lenet conv2", "6"),
    ("lenet conv2", "6s"),
    ("lenet fc1", "16s"),
    ("lenet fc2 (120->84)", "12s"),
    ("lenet fc3 (84->10)", "Ks"),
]
EXTRA_SHAPES = [("lenet fc2 (120->84)", "linear", 120, 84, 0, 0, 0, 0), ("lenet fc3 (84->10)", "linear", 84, 10, 0, 0, 0, 0)]


def make(shape, variant, batch):
    """The layer and input of one measurement; ``variant``: classical, bm max, bm lse or "bm max MAXIMA"."""
    from bmhw.nn import BMConv2d, BMLinear

    _, kind, cin, cout, k, stride, pad, side = shape
    torch.manual_seed(0)
    x = torch.rand(batch, cin, side, side) if kind == "conv" else torch.rand(batch, cin)
    x.requires_grad_(True)
    if variant == "classical":
        layer = torch.nn.Conv2d(cin, cout, k, stride, pad) if kind == "conv" else torch.nn.Linear(cin, cout)
    else:
        reduce, alpha = ("lse", 4.0) if variant == "bm lse" else ("max", None)
        maxima = variant.split()[-1] if variant.startswith("bm max ") else 1
        layer = (BMConv2d(cin, cout, k, stride, pad, reduce=reduce, alpha=alpha, maxima=maxima) if kind == "conv"
                 else BMLinear(cin, cout, reduce=reduce, alpha=alpha, maxima=maxima))
    return layer, x


def step(layer, x, backward: bool):
    if backward:
        layer(x).sum().backward()
    else:
        with torch.no_grad():
            layer(x)


def timed(layer, x, backward: bool, min_seconds: float) -> float:
    step(layer, x, backward)  # warm-up (and the kernels' first load)
    runs, start = 0, time.perf_counter()
    while True:
        step(layer, x, backward)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and runs >= 3:
            return elapsed / runs * 1e3


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def _peak_fresh(args, queue):
    shape, variant, batch = args
    from bmhw.nn import kernels

    kernels.extension()
    layer, x = make(shape, variant, batch)
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set (VmHWM) to the current one
    base = _status_kib("VmRSS")
    step(layer, x, True)
    queue.put((_status_kib("VmHWM") - base) / 1024)


def peak_mib(shape, variant, batch) -> float:
    """Peak resident-set rise of one forward + backward over the process with its inputs in place, in a
    fresh process (Linux: /proc/self/clear_refs resets the peak, VmHWM reads it), in MiB. The process gets
    a fixed malloc mmap threshold, so that every large buffer goes back to the system when it is freed and
    the peak is that of the live tensors, not of what glibc's adaptive threshold would keep in its heap."""
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "131072"  # read by the spawned process's C library at start
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_fresh, args=((shape, variant, batch), queue))
    proc.start()
    value = queue.get()
    proc.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--only", choices=("lenet", "resnet22"), default=None)
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum timing per measurement (default 1)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    args = parser.parse_args()
    from bmhw.nn import kernels

    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(f"BM layers: {kernels.status()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
                  f"batch {args.batch}")
    shapes = [s for s in SHAPES if args.only is None or s[0].startswith(args.only)]
    table = Table(title="time in ms (fwd / fwd+bwd) and ratio to the classical layer; peak memory of fwd+bwd")
    for column in ("layer", "classical", "BM max", "BM lse", "max / cl. (fwd+bwd)", "lse / cl. (fwd+bwd)",
                   "peak MiB cl. / max / lse"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for shape in shapes:
        times = {}
        for variant in VARIANTS:
            layer, x = make(shape, variant, args.batch)
            times[variant] = (timed(layer, x, False, args.seconds), timed(layer, x, True, args.seconds))
        peaks = "-" if args.no_memory else " / ".join(f"{peak_mib(shape, v, args.batch):.0f}" for v in VARIANTS)
        cl = times["classical"][1]
        table.add_row(shape[0], *(f"{f:.1f} / {b:.1f}" for f, b in times.values()),
                      f"{times['bm max'][1] / cl:.1f}", f"{times['bm lse'][1] / cl:.1f}", peaks)
        console.print(f"measured {shape[0]}", highlight=False)
    console.print(table)
    if args.only in (None, "lenet"):
        console.print(grouped_table(args))


def grouped_table(args) -> Table:
    """The hard max with several maxima per neuron against the classical layer and the one-max BM layer."""
    by_name = {s[0]: s for s in SHAPES + EXTRA_SHAPES}
    table = Table(title="several maxima per neuron, hard max: time in ms (fwd / fwd+bwd), ratio to the classical "
                  "layer; peak memory of fwd+bwd")
    for column in ("layer", "maxima", "classical", "BM max, G = 1", "BM max, grouped", "grouped / cl. (fwd+bwd)",
                   "peak MiB cl. / G = 1 / grouped"):
        table.add_column(column, justify="left" if column in ("layer", "maxima") else "right")
    for name, maxima in GROUPED:
        shape = by_name[name]
        variants = ("classical", "bm max", f"bm max {maxima}")
        times = []
        for variant in variants:
            layer, x = make(shape, variant, args.batch)
            times.append((timed(layer, x, False, args.seconds), timed(layer, x, True, args.seconds)))
        peaks = "-" if args.no_memory else " / ".join(f"{peak_mib(shape, v, args.batch):.0f}" for v in variants)
        table.add_row(name, maxima, *(f"{f:.1f} / {b:.1f}" for f, b in times), f"{times[2][1] / times[0][1]:.1f}",
                      peaks)
    return table


if __name__ == "__main__":
    main()
