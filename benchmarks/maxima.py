"""Several maxima per neuron on the real MNIST: LeNet accuracy against cost (docs/results/maxima.md).

Each cell is one training run (bmhw.train.methods) of the LeNet of docs/models.md, every weight layer a 1.5-branch
BM layer with the exact max and the cell's maxima per layer (bmhw.nn.groups), distilled from the project's
classical LeNet (examples/lenet_classical_mnist.pt) on the 60,000 training images and scored on the 10,000
test images. Its cost is counted as exp evaluations per image (one per maximum: output positions x maxima
per output, summed over the layers), against the classical LeNet's 281,640 multiply-accumulates. Results are
kept in a JSON file as each cell ends (resumable); the page and the plot are rewritten after every cell.

    python benchmarks/maxima.py --data ../shared/data/mnist                      # every missing cell
    python benchmarks/maxima.py --data ../shared/data/mnist --cells chsign-kd8  # one cell (or several)
    python benchmarks/maxima.py --list                                           # cells and status
    python benchmarks/maxima.py --render                                         # rewrite page and plot only

Run two cells side by side at most (one per core, OMP_NUM_THREADS=1); checkpoints of finished cells land in
benchmarks/results/maxima/ (not tracked, except the one shipped as an example).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "maxima_cells.json"
PAGE = ROOT / "docs" / "results" / "maxima.md"
PLOT = ROOT / "docs" / "results" / "maxima.png"
CHECKPOINTS = ROOT / "benchmarks" / "results" / "maxima"
TEACHER = ROOT / "examples" / "lenet_classical_mnist.pt"
G1_EXAMPLE = ROOT / "examples" / "lenet_bm15_mnist.pt"
ADDER_EXAMPLE = ROOT / "examples" / "lenet_adder_pkkd_mnist.pt"
CLASSICAL_MACS = 281_640
BUDGET_EXPS = 28_164  # 10% of the classical LeNet's multiply-accumulates: the acceptance bar of the example

# Maxima per layer (conv1, conv2, fc1, fc2, fc3). "Per channel": one group per input channel of a convolution
# (and of fc1, whose 256 inputs are conv2's 16 channels of 4x4); fc2 and fc3 have no channels: 12 chunks.
LAYOUTS = {
    "one": ("1", "1", "1", "1", "1"),
    "channel": ("1", "6", "16", "12", "12"),
    "channel-sign": ("1s", "6s", "16s", "12s", "12s"),
    "channel-sign-lns3": ("1s", "6s", "16s", "12s", "Ks"),
    "half-sign-lns3": ("1s", "3s", "8s", "6s", "Ks"),
    "all-K": ("K", "K", "K", "K", "K"),
    "rich-sign-lns3": ("1s", "6s", "24s", "12s", "Ks"),
}
NAMES = ("conv1", "conv2", "fc1", "fc2", "fc3")
KD = dict(method="kd", lr=3e-3, batch_size=128, temperature=4.0, beta=1.0, kd_alpha=1.0, seed=0)

# cell -> (layout, options of bmhw.train.methods.MethodConfig)
CELLS = {
    "one-kd8": ("one", {**KD, "epochs": 8}),
    "channel-kd8": ("channel", {**KD, "epochs": 8}),
    "chsign-kd3": ("channel-sign", {**KD, "epochs": 3}),
    "chsign-kd8": ("channel-sign", {**KD, "epochs": 8}),
    "chsign-sur-kd8": ("channel-sign", {**KD, "epochs": 8, "surrogate_alpha": 4.0}),
    "chsign-lns3-kd8": ("channel-sign-lns3", {**KD, "epochs": 8}),
    "chsign-lns3-lwkd": ("channel-sign-lns3", dict(method="lwkd", lr=3e-3, batch_size=128, epochs_per_layer=1.0,
                                                   seed=0, beta=1.0)),
    "half-lns3-kd8": ("half-sign-lns3", {**KD, "epochs": 8}),
    "allK-kd3": ("all-K", {**KD, "epochs": 3}),
    "chsign-lns3-sur-kd20": ("channel-sign-lns3", {**KD, "epochs": 20, "surrogate_alpha": 4.0, "shift": 1}),
    "rich-lns3-sur-kd12": ("rich-sign-lns3", {**KD, "epochs": 12, "surrogate_alpha": 4.0}),
    "rich-lns3-sur-kd20": ("rich-sign-lns3", {**KD, "epochs": 20, "surrogate_alpha": 4.0, "shift": 1}),
    # Second stages: on the outputs alone (no feature MSE), a lower rate, shifted images.
    "chsign-lns3-sur-kd20+ft10": ("channel-sign-lns3", {**KD, "epochs": 10, "surrogate_alpha": 4.0, "shift": 1,
                                                        "beta": 0.0, "lr": 1e-3, "from": "chsign-lns3-sur-kd20"}),
    "rich-lns3-sur-kd20+ft10": ("rich-sign-lns3", {**KD, "epochs": 10, "surrogate_alpha": 4.0, "shift": 1,
                                                   "beta": 0.0, "lr": 1e-3, "from": "rich-lns3-sur-kd20"}),
    "chsign-lns3-sur-kd20+ft10+ft10": ("channel-sign-lns3", {**KD, "epochs": 10, "surrogate_alpha": 4.0, "shift": 2,
                                                             "beta": 0.0, "lr": 5e-4, "from": "chsign-lns3-sur-kd20+ft10"}),
}


def maxima_of(layout: str) -> dict:
    return dict(zip(NAMES, LAYOUTS[layout]))


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"cells": {}}


def save_results(results: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)


def exps_of(model) -> dict:
    from bmhw.nn.groups import exps_per_image

    return exps_per_image(model, torch.zeros(1, 1, 28, 28))


def run_cell(name: str, data: Path) -> dict:
    from bmhw.train import methods
    from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
    from bmhw.data import load_dataset
    from bmhw.train.loop import evaluate

    layout, options = CELLS[name]
    images, labels = load_dataset("mnist", data, "train")
    test_images, test_labels = load_dataset("mnist", data, "test")
    teacher = load_checkpoint(TEACHER).model
    method = options["method"]
    cfg = methods.MethodConfig(neuron="bm15", reduce="max", maxima=maxima_of(layout),
                               **{k: v for k, v in options.items() if k not in ("method", "from")})
    # A later stage starts from the network an earlier cell trained (whole-network KD of that student).
    student = load_checkpoint(CHECKPOINTS / f"{options['from']}.pt").model if "from" in options else None
    start = time.perf_counter()
    result = methods.run(method, teacher, "lenet", images, labels, cfg, quiet=True, student=student)
    seconds = time.perf_counter() - start
    accuracy = evaluate(result.model, test_images, test_labels)
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    save_checkpoint(CHECKPOINTS / f"{name}.pt", result.model, method=method, accuracy=accuracy,
                    test_images=len(test_images), dataset="mnist", teacher=str(TEACHER.relative_to(ROOT)),
                    train_seconds=round(seconds, 1), maxima=maxima_of(layout))
    exps = exps_of(result.model)
    return dict(layout=layout, options=options, accuracy=accuracy, seconds=round(seconds, 1), exps=exps,
                exps_total=sum(exps.values()), threads=torch.get_num_threads(), machine=platform.machine(),
                command=f"python benchmarks/maxima.py --data ../shared/data/mnist --cells {name}")


def references(data: Path) -> dict:
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_dataset
    from bmhw.train.loop import evaluate

    test_images, test_labels = load_dataset("mnist", data, "test")
    g1 = load_checkpoint(G1_EXAMPLE).model
    return {"classical": evaluate(load_checkpoint(TEACHER).model, test_images, test_labels),
            "adder_pkkd": evaluate(load_checkpoint(ADDER_EXAMPLE).model, test_images, test_labels),
            "g1_example": evaluate(g1, test_images, test_labels), "g1_exps": sum(exps_of(g1).values())}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def render(results: dict) -> str:
    refs = results.get("references", {})
    lines = ["# Several maxima per neuron: accuracy against cost (LeNet, MNIST)", "",
             "Written by `python benchmarks/maxima.py --render` from `benchmarks/results/maxima_cells.json`; each "
             "cell's command and wall time (the 2-core development machine, one thread per run, often beside a "
             "second run) are in the table. Every weight layer is a 1.5-branch BM layer with the exact max; the "
             "maxima per layer are given as conv1/conv2/fc1/fc2/fc3 (`N`: N groups of contiguous inputs, `s`: "
             "each group split by weight sign, `K`: one group per input; docs/neurons.md). Exps per image: one per "
             "maximum, summed over all output positions; the classical LeNet does "
             f"{CLASSICAL_MACS:,} multiply-accumulates. The bar for the example: at least 99.3% with at most "
             f"{BUDGET_EXPS:,} exps per image.", "",
             "| reference | test accuracy | cost per image |", "| --- | ---: | ---: |",
             f"| classical LeNet (examples/lenet_classical_mnist.pt) | {_pct(refs.get('classical'))} | "
             f"{CLASSICAL_MACS:,} MACs |",
             f"| AdderNet PKKD LeNet (examples/lenet_adder_pkkd_mnist.pt) | {_pct(refs.get('adder_pkkd'))} | "
             f"{CLASSICAL_MACS:,} subtract-abs-adds |",
             f"| BM G = 1 example (examples/lenet_bm15_mnist.pt) | {_pct(refs.get('g1_example'))} | "
             f"{refs.get('g1_exps', 0):,} exps |", "",
             "| cell | maxima | recipe | test accuracy | exps per image | wall time | command |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for name in [n for n in CELLS if n in results["cells"]]:
        cell = results["cells"][name]
        opts = cell["options"]
        recipe = (f"after {opts['from']}: " if "from" in opts else "") + opts["method"] + \
            (f" {opts['epochs']} epochs" if "epochs" in opts else "") + \
            (f", lr {opts['lr']:g}, feature MSE weight {opts['beta']:g}" if "from" in opts else "") + \
            (f", surrogate alpha {opts['surrogate_alpha']:g}" if opts.get("surrogate_alpha") else "") + \
            (f", shifts of {opts['shift']} px" if opts.get("shift") else "")
        lines.append(f"| {name} | {'/'.join(LAYOUTS[cell['layout']])} | {recipe} | {_pct(cell['accuracy'])} | "
                     f"{cell['exps_total']:,} | {cell['seconds']:,.0f} s | `{cell['command']}` |")
    lines += ["", "![accuracy against exps per image](maxima.png)", ""]
    notes = ROOT / "benchmarks" / "results" / "maxima_notes.md"
    if notes.exists():
        lines += [notes.read_text().strip(), ""]
    return "\n".join(lines)


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = results.get("references", {})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cells = results["cells"]
    ax.scatter([c["exps_total"] for c in cells.values()], [100 * c["accuracy"] for c in cells.values()],
               label="BM, several maxima (cells)", zorder=3)
    best = {}  # label the best cell of each layout only (the others crowd the same x)
    for name, c in cells.items():
        if c["layout"] not in best or c["accuracy"] > cells[best[c["layout"]]]["accuracy"]:
            best[c["layout"]] = name
    low = 97.0
    for name in best.values():
        c = cells[name]
        if 100 * c["accuracy"] >= low:
            left = c["layout"] == "channel-sign"  # beside its neighbours of the same x, on the other side
            ax.annotate(f"{name} ({100 * c['accuracy']:.2f}%)", (c["exps_total"], 100 * c["accuracy"]), fontsize=7,
                        xytext=(-5 if left else 5, -10 if c["layout"] == "channel-sign-lns3" else 3),
                        textcoords="offset points", ha="right" if left else "left")
    below = [f"{n} {100 * c['accuracy']:.2f}%" for n, c in cells.items() if 100 * c["accuracy"] < low]
    if below:
        ax.text(0.02, 0.02, "below the range: " + ", ".join(below), transform=ax.transAxes, fontsize=7)
    if refs:
        ax.scatter([CLASSICAL_MACS], [100 * refs["classical"]], marker="s", label="classical LeNet (MACs)")
        ax.scatter([CLASSICAL_MACS], [100 * refs["adder_pkkd"]], marker="^", label="AdderNet PKKD (adds)")
        ax.scatter([refs["g1_exps"]], [100 * refs["g1_example"]], marker="v", label="BM G = 1 example")
    ax.axhline(99.3, color="grey", linestyle=":", label="99.3%")
    ax.axvline(BUDGET_EXPS, color="grey", linestyle="--", label="10% of the MACs")
    ax.set_xscale("log")
    ax.set_xlabel("exp evaluations per image (log scale; MACs for the references)")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_ylim(low, 99.6)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120, metadata={"Software": None})
    plt.close(fig)


def write_outputs(results: dict) -> None:
    PAGE.write_text(render(results) + "\n")
    plot(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="the MNIST folder (IDX files)")
    parser.add_argument("--cells", nargs="*", default=None, help="cells to run (default: every missing one)")
    parser.add_argument("--list", action="store_true", help="list the cells and whether they are done")
    parser.add_argument("--render", action="store_true", help="rewrite the page and the plot only")
    args = parser.parse_args()
    results = load_results()
    if args.list:
        for name, (layout, options) in CELLS.items():
            done = results["cells"].get(name)
            print(f"{name:20s} {'/'.join(LAYOUTS[layout]):24s} "
                  f"{'done: ' + _pct(done['accuracy']) if done else 'missing'}")
        return
    if args.render:
        write_outputs(results)
        return
    if args.data is None:
        parser.error("--data DIR is needed to train cells")
    if "references" not in results:
        results["references"] = references(args.data)
        save_results(results)
    unknown = set(args.cells or ()) - set(CELLS)
    if unknown:
        parser.error(f"unknown cells {sorted(unknown)}; --list shows them")
    for name in args.cells or [n for n in CELLS if n not in results["cells"]]:
        print(f"cell {name}: training", flush=True)
        cell = run_cell(name, args.data)
        results = load_results()  # another process may have finished a cell meanwhile
        results["cells"][name] = cell
        save_results(results)
        write_outputs(results)
        print(f"cell {name}: {_pct(cell['accuracy'])}, {cell['exps_total']:,} exps per image, "
              f"{cell['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
