"""The integer ONNX graph of a .bmq, run by onnxruntime, against the golden model on a whole test split: every output
the graph exposes (each layer's and the logits), compared with np.array_equal; exits 1 on any mismatch.

    python benchmarks/onnx_int.py NET.bmq NET.onnx --data ../shared/data/mnist

(``bmhw export NET.bmq --target onnx-int -o NET.onnx`` writes the graph.) Prints the values compared, the mismatches,
the time of each and the accuracy of the ONNX logits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bmhw import golden
from bmhw.backends.onnx import run
from bmhw.data import load_dataset
from bmhw.ir import load_bmq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bmq", type=Path)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data"
                        / "mnist")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    net, model = load_bmq(args.bmq), run.load(args.onnx, threads=1)
    images, labels = load_dataset("mnist", args.data, "test")
    codes = images.astype(np.int64)
    seconds = {"onnxruntime": 0.0, "golden": 0.0}
    mismatches, compared, correct = 0, 0, 0
    for start in range(0, len(codes), args.batch):
        chunk = codes[start:start + args.batch]
        t = time.perf_counter()
        got = model.run(chunk, inputs_ready=True)
        seconds["onnxruntime"] += time.perf_counter() - t
        t = time.perf_counter()
        want = golden.forward(net, chunk, return_all=True)
        seconds["golden"] += time.perf_counter() - t
        want["logits"] = want[net.layers[-1]["name"]]
        for name in model.output_names:
            if got[name].shape != want[name].shape or not np.array_equal(got[name], want[name]):
                where = np.argwhere(got[name] != want[name])[0] if got[name].shape == want[name].shape else "shape"
                print(f"mismatch: output {name}, image {start + int(where[0]) if where != 'shape' else start}, "
                      f"index {where}", file=sys.stderr)
                mismatches += 1
            compared += got[name].size
        correct += int((got["logits"].argmax(1) == labels[start:start + args.batch]).sum())
    print(f"{len(codes)} images, outputs {', '.join(model.output_names)}: {compared:,} values compared, "
          f"{mismatches} mismatching outputs")
    print(f"onnxruntime {seconds['onnxruntime']:.1f} s, golden model {seconds['golden']:.1f} s, accuracy of the ONNX "
          f"logits {100 * correct / len(codes):.2f}%")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
