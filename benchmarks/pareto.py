"""Accuracy against FPGA cost: the Pareto front of the LeNet's neuron families on MNIST.

Each design is one trained checkpoint of the LeNet of docs/models.md, quantized by `bmhw quantize` (its recorded
log-domain widths where it has them) and scored by the integer golden model on the 10,000 test images. Its
accelerator (`bmhw export NET.bmq --target verilog --pe PE`) is placed and routed on an ECP5-85k by nextpnr with
the same seed for every design (`bmhw.cost.pnr.place_and_route`, the function behind `bmhw gates --pnr ecp5`), at
PE 1, 4, 16 and the maximum (every output channel of a layer in parallel). Cycles per image come from the RTL
simulation (Verilator + cocotb, one test image, every layer buffer compared) and must equal the analytical count.

Results are kept in benchmarks/results/pareto.json as each point ends (resumable); docs/results/pareto.md and
docs/results/pareto.png are rewritten from it after every point.

    python benchmarks/pareto.py --data ../shared/data/mnist                         # every missing point
    python benchmarks/pareto.py --data ../shared/data/mnist --designs bm15-maxima --pes 1 16
    python benchmarks/pareto.py --data ../shared/data/mnist --workers 2             # two P&R side by side
    python benchmarks/pareto.py --render                                            # rewrite the page only

The baseline is the MAC twin of examples/lenet_classical_mnist.pt, placed with and without DSP blocks in the same
run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from families import _accuracy, _bmhw  # the same CLI runner and accuracy parser as the families page

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pareto.json"
PAGE = ROOT / "docs" / "results" / "pareto.md"
PLOT = ROOT / "docs" / "results" / "pareto.png"
SEED = 1
MAX_PE = 1000  # capped per layer at its outputs: every output channel in parallel

# name -> (label, checkpoint, DSP blocks allowed)
DESIGNS = {
    "twin": ("MAC twin, int8 (DSP)", "examples/lenet_classical_mnist.pt", True),
    "twin-nodsp": ("MAC twin, int8 (LUTs only)", "examples/lenet_classical_mnist.pt", False),
    "bm15": ("BM 1.5-branch, one max (G = 1)", "examples/lenet_bm15_mnist.pt", True),
    "bm15-maxima": ("BM 1.5-branch, several maxima", "examples/lenet_bm15_maxima_mnist.pt", True),
    "adder-pkkd": ("AdderNet, PKKD", "examples/lenet_adder_pkkd_mnist.pt", True),
    "bise": ("BiSE, binarised (wider LeNet)", "examples/lenet_bise_mnist.pt", True),
}
PES = ("1", "4", "16", "max")


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"designs": {}, "points": {}}


def save_results(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def quantized(name: str, folder: Path) -> Path:
    """The design's .bmq (quantized as `bmhw quantize CKPT` does, with the calibration the checkpoint records)."""
    bmq = folder / f"{name}.bmq"
    if not bmq.exists():
        _bmhw("quantize", DESIGNS[name][1], "-o", str(bmq))
    return bmq


def measure_accuracy(name: str, data: Path, folder: Path) -> dict:
    start = time.perf_counter()
    row = {"int_accuracy": _accuracy(_bmhw("eval", str(quantized(name, folder)), "--data", str(data)))}
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def measure_point(name: str, pe: str, folder: str) -> dict:
    """Export, simulate one image (cycles), place and route one design at one PE setting."""
    import numpy as np

    from bmhw.backends import verilog
    from bmhw.backends.verilog import rtlsim
    from bmhw.cost import pnr
    from bmhw.data import sample
    from bmhw.ir import load_bmq

    folder = Path(folder)
    net = load_bmq(quantized(name, folder))
    pe_n = MAX_PE if pe == "max" else int(pe)
    pes = verilog.layer_pes(net, pe_n)
    with tempfile.TemporaryDirectory(prefix=f"bmhw-pareto-{name}-{pe}-") as tmp:
        project = verilog.export(net, Path(tmp) / "rtl", pe=pe_n)
        analytical = verilog.cycle_summary(net, pes)["total"]
        images, _ = sample.load_mnist_sample()
        sim = rtlsim.run(project, np.asarray(images[:1]))
        if not sim.passed:
            raise SystemExit(f"{name} at PE {pe}: the RTL simulation does not match the golden model: {sim.mismatch}")
        if sim.cycles[0] != analytical:
            raise SystemExit(f"{name} at PE {pe}: {sim.cycles[0]} cycles measured, {analytical} analytical")
        result = pnr.place_and_route(project, seed=SEED, dsp=DESIGNS[name][2])
    return {"pe": pe, "pes": [p for p in pes if p is not None], "cycles": analytical, "cycles_measured": sim.cycles[0],
            "luts": result.luts, "flip_flops": result.flip_flops, "bram": result.bram, "dsp": result.dsp,
            "fmax_mhz": result.fmax_mhz, "images_per_s": result.images_per_s(analytical),
            "pnr_seconds": round(result.seconds, 1)}


def _dominated(p: dict, points: list) -> bool:
    """True where another point is at least as good in every figure (accuracy, LUT4, DSP, DP16KD, images/s) and
    better in one."""
    def key(q):
        return (q["int_accuracy"], -q["luts"], -q["dsp"], -q["bram"], q["images_per_s"])
    mine = key(p)
    for q in points:
        other = key(q)
        if q is not p and all(o >= m for o, m in zip(other, mine)) and other != mine:
            return True
    return False


def _rows(results: dict) -> list:
    rows = []
    for name, (label, _, _) in DESIGNS.items():
        design = results["designs"].get(name)
        for pe in PES:
            point = results["points"].get(f"{name}@{pe}")
            if design and point:
                rows.append({"name": name, "label": label, **design, **point})
    return rows


def render(results: dict) -> str:
    rows = _rows(results)
    lines = ["# Accuracy against FPGA cost: the Pareto front", "",
             "Written by `python benchmarks/pareto.py --data ../shared/data/mnist` (do not edit by hand; the numbers "
             "are in benchmarks/results/pareto.json). Every design is the LeNet of docs/models.md trained on the "
             "60,000 MNIST training images, quantized by `bmhw quantize CKPT` (with the log-domain widths the "
             "checkpoint records, docs/datapath.md \"Narrower memories\") and scored by the integer golden model on "
             "the 10,000 test images. Its accelerator is the one `bmhw export --target verilog --pe PE` generates "
             "(`max`: every output channel of a layer in parallel), placed and routed on an ECP5-85k (CABGA381) by "
             f"nextpnr, seed {SEED}, 100 MHz target. Cycles per image were measured by the RTL simulation "
             "(Verilator + cocotb, one test image, every layer buffer compared with the golden model) and equal the "
             "analytical count for every point; images per second are at nextpnr's Fmax. A point is on the front "
             "(**yes**) when no other point is at least as good in accuracy, LUT4, DSP, DP16KD and images/s and "
             "better in one. Measured on the 2-core development machine.", "",
             "![accuracy and images/s against LUT4s](pareto.png)", ""]
    lines += ["| design | integer accuracy | PE | PEs per layer | LUT4 | FF | DP16KD | DSP | Fmax (MHz) | cycles / image "
              "| images / s | on the front |",
              "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in rows:
        front = "" if _dominated(r, rows) else "**yes**"
        lines.append(f"| {r['label']} | {r['int_accuracy']:.2%} | {r['pe']} | {', '.join(map(str, r['pes']))} | "
                     f"{r['luts']:,} | {r['flip_flops']:,} | {r['bram']} | {r['dsp']} | {r['fmax_mhz']:.1f} | "
                     f"{r['cycles']:,} | {r['images_per_s']:,.0f} | {front} |")
    missing = [f"{name}@{pe}" for name in DESIGNS for pe in PES if f"{name}@{pe}" not in results["points"]]
    if missing:
        lines += ["", f"Not measured yet: {', '.join(missing)}."]
    lines += ["", *_against_twin(rows)]
    notes = ROOT / "benchmarks" / "results" / "pareto_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"


def _against_twin(rows: list) -> list:
    """The BM design with several maxima against the MAC twin at each PE (the issue's acceptance figures)."""
    by = {(r["name"], r["pe"]): r for r in rows}
    lines = ["## BM with several maxima against the MAC twin", ""]
    for pe in PES:
        bm, twin, nodsp = by.get(("bm15-maxima", pe)), by.get(("twin", pe)), by.get(("twin-nodsp", pe))
        if not (bm and twin and nodsp):
            continue
        lines.append(f"* PE {pe}: {bm['luts']:,} LUT4 against {twin['luts']:,} + {twin['dsp']} DSP (twin) and "
                     f"{nodsp['luts']:,} (twin without DSP: {bm['luts'] / nodsp['luts']:.2f} x); {bm['bram']} DP16KD "
                     f"against {twin['bram']}; {bm['images_per_s'] / bm['luts']:.3f} against "
                     f"{twin['images_per_s'] / twin['luts']:.3f} (DSP) and {nodsp['images_per_s'] / nodsp['luts']:.3f}"
                     f" (LUTs only) images/s per LUT4; {100 * (bm['int_accuracy'] - twin['int_accuracy']):+.2f} points.")
    return lines if len(lines) > 2 else []


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    if not rows:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for name, (label, _, _) in DESIGNS.items():
        mine = [r for r in rows if r["name"] == name]
        if not mine:
            continue
        luts = [r["luts"] for r in mine]
        left.plot(luts, [100 * r["int_accuracy"] for r in mine], "o-", label=label)
        right.plot(luts, [r["images_per_s"] for r in mine], "o-", label=label)
        for r in mine:
            right.annotate(f"PE {r['pe']}", (r["luts"], r["images_per_s"]), fontsize=7, xytext=(3, 3),
                           textcoords="offset points")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("ECP5 LUT4 (nextpnr)")
        ax.grid(True, which="both", alpha=0.3)
    right.set_yscale("log")
    left.set_ylabel("integer accuracy on the 10,000 MNIST test images (%)")
    right.set_ylabel("images / s at Fmax")
    left.set_title("accuracy against LUT4s (PE 1, 4, 16, max)")
    right.set_title("throughput against LUT4s")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def write_page(results: dict) -> None:
    PAGE.write_text(render(results))
    plot(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="MNIST folder (../shared/data/mnist)")
    parser.add_argument("--designs", nargs="+", choices=list(DESIGNS), help="designs to measure (default: every one)")
    parser.add_argument("--pes", nargs="+", choices=PES, default=list(PES), help="PE settings (default: all)")
    parser.add_argument("--redo", action="store_true", help="measure again where results exist")
    parser.add_argument("--workers", type=int, default=1, help="place and route this many points side by side")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/results/pareto.md and the plot")
    args = parser.parse_args()
    results = load_results()
    if not args.render:
        if args.data is None:
            parser.error("--data is required to measure (or pass --render)")
        names = args.designs or list(DESIGNS)
        with tempfile.TemporaryDirectory(prefix="bmhw-pareto-") as folder:
            for name in names:
                if args.redo or name not in results["designs"]:
                    results["designs"][name] = measure_accuracy(name, args.data, Path(folder))
                    print(f"{name}: integer accuracy {results['designs'][name]['int_accuracy']:.2%}", flush=True)
                    save_results(results)
            todo = [(n, pe) for n in names for pe in args.pes if args.redo or f"{n}@{pe}" not in results["points"]]
            for name in dict.fromkeys(n for n, _ in todo):  # each .bmq once, before the workers read it
                quantized(name, Path(folder))
            with ProcessPoolExecutor(max_workers=max(1, args.workers)) as pool:
                jobs = {pool.submit(measure_point, n, pe, folder): (n, pe) for n, pe in todo}
                for job in as_completed(jobs):
                    name, pe = jobs[job]
                    point = job.result()
                    print(f"{name} PE {pe}: {point['luts']:,} LUT4, {point['flip_flops']:,} FF, {point['bram']} "
                          f"DP16KD, {point['dsp']} DSP, {point['fmax_mhz']:.1f} MHz, {point['cycles']:,} cycles "
                          f"(measured {point['cycles_measured']:,}), {point['images_per_s']:,.0f} images/s "
                          f"({point['pnr_seconds']:.0f} s)", flush=True)
                    results = load_results()
                    results["points"][f"{name}@{pe}"] = point
                    save_results(results)
                    write_page(results)
    write_page(results)
    print(f"wrote {PAGE.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
