"""The multiplier-free families side by side on the real MNIST: accuracy and FPGA cost of the same LeNet.

Each row is one trained checkpoint of the LeNet of docs/models.md. For each, in this run:

* the float accuracy (`bmhw eval CKPT`) and the integer accuracy (`bmhw quantize`, then the golden model of the
  .bmq on the 10,000 test images, `bmhw eval NET.bmq`);
* the generated accelerator (`bmhw export NET.bmq --target verilog --pe PE`) placed and routed on an ECP5-85k
  by nextpnr (`bmhw.cost.pnr.place_and_route`, the function behind `bmhw gates --pnr ecp5`): LUT4s,
  flip-flops, block RAM, DSP blocks, Fmax, the analytical cycles per image (equal to the RTL simulation's)
  and images per second at Fmax.

Results are kept in benchmarks/results/families.json as each row ends, so the rows can be run one at a time
and resumed; docs/results/families.md is rewritten from it after every row.

    python benchmarks/families.py --data ../shared/data/mnist                 # every missing row
    python benchmarks/families.py --data ../shared/data/mnist --rows adder-pkkd
    python benchmarks/families.py --data ../shared/data/mnist --redo         # every row again
    python benchmarks/families.py --render                                    # rewrite the page only

The classical int8 row is the MAC twin of examples/lenet_classical_mnist.pt: the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "families.json"
PAGE = ROOT / "docs" / "results" / "families.md"

# name -> (label, checkpoint relative to the repository, how it was made)
ROWS = {
    "classical": ("classical, int8 weights (MAC twin)", "examples/lenet_classical_mnist.pt",
                  "`bmhw train --model lenet --epochs 15 --shift 2` (examples/README.md)"),
    "bm15": ("BM 1.5-branch, exact max", "examples/lenet_bm15_mnist.pt",
             "mirrored LWKD + surrogate-gradient KD (examples/README.md)"),
    "adder": ("AdderNet, trained directly", "examples/lenet_adder_direct_mnist.pt",
              "`bmhw train --model lenet --neuron adder --epochs 8 --lr 1e-2 --shift 1`"),
    "adder-pkkd": ("AdderNet, PKKD", "examples/lenet_adder_pkkd_mnist.pt",
                   "`bmhw distill --teacher examples/lenet_classical_mnist.pt --method pkkd --epochs 8 --lr 1e-2 "
                   "--teacher-lr 1e-3 --shift 1`"),
    "bise": ("BiSE, binarised (wider LeNet: 16, 32, 256, 128)", "examples/lenet_bise_mnist.pt",
             "`bmhw train --model lenet --neuron bise --epochs 4 --lr 1e-2 --bise-reg 0.3 --bise-refit 2 "
             "--widths 16,32,256,128`"),
}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": {}}


def save_results(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def _bmhw(*args: str) -> str:
    """Run the bmhw CLI (as a user would) and return its output; a failure stops the benchmark."""
    done = subprocess.run([sys.executable, "-m", "bmhw.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise SystemExit(f"bmhw {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _accuracy(output: str) -> float:
    match = re.search(r"accuracy: ([\d.]+)%", output)
    if not match:
        raise SystemExit(f"no accuracy in the output of bmhw eval:\n{output}")
    return float(match.group(1)) / 100


def run_row(name: str, data: Path, pe: int) -> dict:
    from bmhw.backends import verilog
    from bmhw.cost import pnr
    from bmhw.errors import BmhwError
    from bmhw.ir import load_bmq

    label, checkpoint, _ = ROWS[name]
    if not (ROOT / checkpoint).is_file():
        raise SystemExit(f"row {name}: {checkpoint} not found")
    row = {"label": label, "checkpoint": checkpoint, "pe": pe}
    with tempfile.TemporaryDirectory(prefix="bmhw-families-") as tmp:
        bmq = Path(tmp) / f"{name}.bmq"
        start = time.perf_counter()
        row["float_accuracy"] = _accuracy(_bmhw("eval", checkpoint, "--data", str(data)))
        _bmhw("quantize", checkpoint, "--data", str(data), "-o", str(bmq))
        row["int_accuracy"] = _accuracy(_bmhw("eval", str(bmq), "--data", str(data)))
        row["accuracy_seconds"] = round(time.perf_counter() - start, 1)
        print(f"row {name}: float {row['float_accuracy']:.2%}, integer {row['int_accuracy']:.2%}", flush=True)
        net = load_bmq(bmq)
        try:
            project = verilog.export(net, Path(tmp) / "rtl", pe=pe)
            row["cycles"] = verilog.cycle_summary(net, verilog.layer_pes(net, pe, None))["total"]
        except BmhwError as err:  # a family without a Verilog backend yet: accuracy only, and why
            row["hardware"] = str(err)
            print(f"row {name}: no accelerator: {err}", flush=True)
            return row
        result = pnr.place_and_route(project, family="ecp5")
    row.update(luts=result.luts, flip_flops=result.flip_flops, bram=result.bram, dsp=result.dsp,
               fmax_mhz=result.fmax_mhz, pnr_seconds=round(result.seconds, 1),
               images_per_s=result.images_per_s(row["cycles"]))
    print(f"row {name}: {result.luts} LUT4, {result.flip_flops} FF, {result.bram} DP16KD, {result.dsp} DSP, "
          f"{result.fmax_mhz:.1f} MHz, {row['images_per_s']:.0f} images/s", flush=True)
    return row


def _key(name: str, pe: int) -> str:
    """Results of PE 1 are kept under the row's name, others under NAME@PE."""
    return name if pe == 1 else f"{name}@{pe}"


def _table(rows: dict, pe: int) -> list[str]:
    lines = ["| family | how it was trained | float | integer (golden) | PE | LUT4 | FF | DP16KD | DSP | Fmax (MHz) "
             "| cycles / image | images / s |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, (label, _, how) in ROWS.items():
        r = rows.get(_key(name, pe))
        if r is None:
            lines.append(f"| {label} | {how} | not measured | | | | | | | | | |")
        elif "luts" not in r:
            lines.append(f"| {label} | {how} | {r['float_accuracy']:.2%} | {r['int_accuracy']:.2%} | no accelerator "
                         "yet (see below) | | | | | | | |")
        else:
            lines.append(f"| {label} | {how} | {r['float_accuracy']:.2%} | {r['int_accuracy']:.2%} | {r['pe']} | "
                         f"{r['luts']:,} | {r['flip_flops']:,} | {r['bram']} | {r['dsp']} | {r['fmax_mhz']:.1f} | "
                         f"{r['cycles']:,} | {r['images_per_s']:,.0f} |")
    base = rows.get(_key("classical", pe))
    if base:
        lines += ["", f"Against the classical int8 baseline of the same run at PE {pe} (LUT4 ratio, images/s ratio):", ""]
        for name, (label, _, _) in ROWS.items():
            r = rows.get(_key(name, pe))
            if r and "luts" in r and name != "classical":
                lines.append(f"* {label}: {r['luts'] / base['luts']:.2f} x the LUT4s, "
                             f"{r['images_per_s'] / base['images_per_s']:.2f} x the images/s, "
                             f"{100 * (r['int_accuracy'] - base['int_accuracy']):+.2f} points of integer accuracy.")
    return lines


def render(results: dict) -> str:
    rows = results["rows"]
    lines = ["# The multiplier-free families on MNIST: accuracy and FPGA cost", "",
             "Written by `python benchmarks/families.py --data ../shared/data/mnist [--pe 16]` (do not edit by hand; the "
             "numbers are in benchmarks/results/families.json). Every row is the LeNet of docs/models.md trained on "
             "the 60,000 MNIST training images and scored on the 10,000 test images; its accelerator is the one "
             "`bmhw export --target verilog` generates (the same top, buffers, control and `--pe` parallelism for "
             "every family), placed and routed on an ECP5-85k (CABGA381) by nextpnr with DSP blocks allowed. Images "
             "per second are at nextpnr's Fmax with the analytical cycle count, which the RTL simulation matches "
             "(`bmhw sim`). `--pe 16` puts min(16, outputs) PEs in each layer. Measured on the 2-core development "
             "machine.", ""]
    for pe in sorted({r["pe"] for r in rows.values()}):
        lines += [f"## {pe} PE{'s' if pe > 1 else ''} per layer", "", *_table(rows, pe), ""]
    notes = ROOT / "benchmarks" / "results" / "families_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="MNIST folder (../shared/data/mnist)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="rows to (re)run (default: every missing one)")
    parser.add_argument("--redo", action="store_true", help="run the rows again even where results exist")
    parser.add_argument("--pe", type=int, default=1, help="PEs per layer of the accelerators (default: 1)")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/results/families.md")
    args = parser.parse_args()
    results = load_results()
    if not args.render:
        if args.data is None:
            parser.error("--data is required to measure (or pass --render)")
        names = args.rows or [n for n in ROWS if args.redo or _key(n, args.pe) not in results["rows"]]
        for name in names:
            row = run_row(name, args.data, args.pe)
            results = load_results()
            results["rows"][_key(name, args.pe)] = row
            save_results(results)
            PAGE.write_text(render(results))
    PAGE.write_text(render(results))
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
