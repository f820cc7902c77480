"""Re-create the example checkpoints of this folder from the full MNIST (see README.md here).

    python examples/make_examples.py --data ../shared/data/mnist            # all of them
    python examples/make_examples.py --data ../shared/data/mnist --only bm15

1. ``lenet_classical_mnist.pt``: the classical LeNet, trained directly (``bmhw train`` with the same
   settings gives the same file).
2. ``lenet_bm15_mnist.pt``: a 1.5-branch LeNet with the exact max everywhere, grown from the classical
   one by layer-wise knowledge distillation with a per-channel re-fit at each step that may mirror an
   output (``bmhw.train.distill.layerwise_distill``), then fine-tuned as a whole by distillation from the
   classical network (``bmhw.train.distill.knowledge_distill``) with the surrogate gradient, in three stages.
3. ``lenet_bm15_mnist.bmq``: that network quantized with the exact tables (8-bit activations, F = 10, every
   log-weight kept), calibrated on 2,000 training images (``bmhw quantize ... --data ... --log-frac-bits 10
   --log-weight-bits full`` gives the same file).
4. ``lenet_adder_direct_mnist.pt`` and ``lenet_adder_pkkd_mnist.pt`` (``--only adder``): AdderNet LeNets, one
   trained directly, one by PKKD from the classical one, by the ``bmhw`` commands in ADDER_COMMANDS.
5. ``lenet_bise_mnist.pt`` (``--only bise``): the binarised BiSE LeNet, by the command in BISE_COMMANDS.
6. ``lenet_bm15_maxima_mnist.pt`` (``--only maxima``): the exact-max BM LeNet with several maxima per neuron,
   by the ``bmhw`` command in MAXIMA_COMMANDS (whole-network distillation with the surrogate gradient).
7. ``cnn_classical_mnist.pt`` and ``cnn_bm15_mnist.pt`` (``--only cnn``): a 3x3-kernel CNN of five weight layers
   (your own network, docs/own_network.md), classical and exact-max BM, by the commands in CNN_COMMANDS.
8. The BM LeNets' log-domain widths (``--only widths``; after bm15 and maxima too): fitted on
   10,000 training images and recorded by ``bmhw calibrate NAME --data ... --fit-log-widths`` (FITTED_WIDTHS).

Prints accuracies and wall times; every figure in README.md comes from a run of this script.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.quant.calibration import record
from bmhw.data import calibration_sample, load_dataset
from bmhw.train.distill import KDConfig, LayerwiseConfig, knowledge_distill, layerwise_distill
from bmhw.models import lenet
from bmhw.nn.layers import surrogate_gradient
from bmhw.train.loop import evaluate, train_classifier

HERE = Path(__file__).resolve().parent

CLASSICAL = {"epochs": 15, "batch_size": 128, "lr": 3e-3, "shift": 2, "seed": 0}
# Layer-wise KD with mirrored outputs allowed at each re-fit (docs/training.md), two epochs per layer.
LAYERWISE = LayerwiseConfig(epochs_per_layer=2.0, lr=1e-2, beta=1.0, calib_images=2000, shift=0, seed=0, signed=True)
# Then whole-network KD in stages, each with the surrogate gradient (LSE's at alpha 8; the forward stays the max):
# first with the feature MSE, then on the outputs alone, then with random shifts of one pixel.
SURROGATE_ALPHA = 8.0
FINETUNES = (
    KDConfig(epochs=8.0, lr=1e-2, beta=0.1, alpha=1.0, temperature=4.0, shift=0, seed=0),
    KDConfig(epochs=12.0, lr=3e-3, beta=0.0, alpha=1.0, temperature=4.0, shift=0, seed=0),
    KDConfig(epochs=20.0, lr=2e-3, beta=0.0, alpha=1.0, temperature=4.0, shift=1, seed=0),
)


# The AdderNet examples, made by the command line exactly as a user would (one thread: the figures in README.md).
ADDER_COMMANDS = {
    "lenet_adder_direct_mnist.pt": ["train", "--model", "lenet", "--neuron", "adder", "--epochs", "8", "--lr", "1e-2",
                                    "--shift", "1"],
    "lenet_adder_pkkd_mnist.pt": ["distill", "--teacher", "{classical}", "--method", "pkkd", "--epochs", "8", "--lr",
                                  "1e-2", "--teacher-lr", "1e-3", "--shift", "1"],
}
# The BM LeNet with several maxima per neuron (docs/neurons.md, docs/results/maxima.md): every layer an exact-max
# 1.5-branch layer, its maxima per input channel split by weight sign (fc1: 24 chunks, fc2: 12, fc3: one per input),
# converted from the classical LeNet and distilled as a whole with the surrogate gradient.
MAXIMA_COMMANDS = {
    "lenet_bm15_maxima_mnist.pt": ["distill", "--teacher", "{classical}", "--method", "kd", "--maxima", "6s",
                                   "--maxima", "conv1=1s", "--maxima", "fc1=24s", "--maxima", "fc2=12s", "--maxima",
                                   "fc3=Ks", "--epochs", "20", "--surrogate-alpha", "4", "--shift", "1"],
}
# The BiSE example (binarised morphology, a wider LeNet; docs/training.md, "BiSE").
BISE_COMMANDS = {
    "lenet_bise_mnist.pt": ["train", "--model", "lenet", "--neuron", "bise", "--epochs", "4", "--lr", "1e-2",
                            "--bise-reg", "0.3", "--bise-refit", "2", "--widths", "16,32,256,128"],
}
# The example beyond LeNet (docs/own_network.md): a 3x3-kernel CNN of five weight layers with padding and a
# stride, trained classical, converted to exact-max BM with the signed re-fit, then distilled from the
# classical network with the surrogate gradient (6 epochs, then 20 more).
CNN_LAYERS = "conv8k3p1 relu pool2 conv16k3p1 relu pool2 conv32k3s2p1 relu flatten fc64 relu fc10"
CNN_COMMANDS = {
    "cnn_classical_mnist.pt": ["train", "--model", "cnn", "--layers", CNN_LAYERS, "--epochs", "15", "--shift", "1"],
    "{tmp}/refit.pt": ["convert", "{out}/cnn_classical_mnist.pt", "--neuron", "bm15", "--signed"],
    "{tmp}/kd6.pt": ["distill", "--teacher", "{out}/cnn_classical_mnist.pt", "--student", "{tmp}/refit.pt",
                     "--method", "kd", "--epochs", "6", "--surrogate-alpha", "4", "--shift", "1"],
    "cnn_bm15_mnist.pt": ["distill", "--teacher", "{out}/cnn_classical_mnist.pt", "--student", "{tmp}/kd6.pt",
                          "--method", "kd", "--epochs", "20", "--surrogate-alpha", "4", "--shift", "1"],
}


# The BM examples whose log-domain widths are fitted on training images and recorded (docs/datapath.md, "Narrower
# memories"): bmhw quantize and export of them then store narrower tables.
# (Not the CNN: its integer network starts the fit 0.15 points below the float one on training images and ends 0.17
# below on the test images; docs/results/narrow.md.)
FITTED_WIDTHS = ("lenet_bm15_mnist.pt", "lenet_bm15_maxima_mnist.pt")
# The one-max LeNet disagrees with its float network on 0.57% of the training images at the start of the fit (ties of
# the exact max), and every narrower fc1 moves a few tenths of those: it is fitted with --fit-agreement 0.3.
FIT_OPTIONS = {"lenet_bm15_mnist.pt": ["--fit-agreement", "0.3"]}


def fit_widths(data: Path, out_dir: Path, names=FITTED_WIDTHS) -> None:
    """bmhw calibrate NAME --fit-log-widths for each BM example present (its calibration is measured again on the
    same 2,000 training images, so it does not change)."""
    from bmhw.cli import main as bmhw_main

    for name in names:
        if (out_dir / name).exists():
            start = time.perf_counter()
            argv = ["calibrate", str(out_dir / name), "--data", str(data), "--fit-log-widths", *FIT_OPTIONS.get(name, [])]
            if bmhw_main(argv) != 0:
                raise SystemExit(f"bmhw calibrate {name} --fit-log-widths failed")
            print(f"{name}: log widths fitted, {time.perf_counter() - start:.0f} s")


def make_cnn(data: Path, out_dir: Path) -> None:
    """CNN_COMMANDS in order, the intermediate checkpoints in a temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        commands = {name.format(tmp=tmp): [a.format(tmp=tmp, out=out_dir) for a in argv]
                    for name, argv in CNN_COMMANDS.items()}
        make_by_cli(commands, data, out_dir / "lenet_classical_mnist.pt", out_dir)


def make_by_cli(commands: dict, data: Path, classical: Path, out_dir: Path) -> None:
    from bmhw.cli import main as bmhw_main

    torch.set_num_threads(1)
    for name, command in commands.items():
        argv = [a.format(classical=classical) for a in command] + ["--data", str(data), "-o", str(out_dir / name)]
        start = time.perf_counter()
        if bmhw_main(argv) != 0:
            raise SystemExit(f"bmhw {' '.join(argv)} failed")
        print(f"{name}: {time.perf_counter() - start:.0f} s")


def make_classical(data: Path, out: Path, widths=None) -> None:
    images, labels = load_dataset("mnist", data, "train")
    test_images, test_labels = load_dataset("mnist", data, "test")
    torch.manual_seed(CLASSICAL["seed"])
    model = lenet("classical", **({} if widths is None else {"widths": widths}))
    result = train_classifier(model, images, labels, **CLASSICAL)
    accuracy = evaluate(model, test_images, test_labels)
    save_checkpoint(out, model, method="direct", accuracy=accuracy, test_images=len(test_labels), dataset="mnist",
                    train_seconds=round(result.seconds, 1), calibration=record(model, images, "mnist"), **CLASSICAL)
    print(f"classical: test accuracy {accuracy:.2%}, training {result.seconds:.0f} s -> {out}")


def make_bm15(data: Path, teacher_path: Path, out: Path) -> None:
    images, labels = load_dataset("mnist", data, "train")
    test_images, test_labels = load_dataset("mnist", data, "test")
    teacher = load_checkpoint(teacher_path).model
    start = time.perf_counter()

    def on_step(entry, student, teacher):
        print(f"  layer {entry['layer']}: re-fit R^2 {entry['refit_r2']:.3f}, final relative feature MSE {entry['final_mse']:.4f}")

    grown = layerwise_distill(teacher, images, labels, LAYERWISE, on_step=on_step)
    after_layerwise = evaluate(grown.student, test_images, test_labels)
    print(f"after layer-wise distillation: {after_layerwise:.2%} ({grown.seconds:.0f} s)")
    student = grown.student
    stages = []
    with surrogate_gradient(SURROGATE_ALPHA):
        for i, cfg in enumerate(FINETUNES, 1):
            seconds = knowledge_distill(student, teacher, images, labels, cfg)
            stages.append(round(evaluate(student, test_images, test_labels), 4))
            print(f"after fine-tune {i} ({cfg.epochs:g} epochs, lr {cfg.lr:g}, beta {cfg.beta:g}, shift {cfg.shift}): "
                  f"{stages[-1]:.2%} ({seconds:.0f} s)")
    seconds = time.perf_counter() - start
    accuracy = evaluate(student, test_images, test_labels)
    save_checkpoint(out, student, method="layer-wise KD (mirrored outputs) with per-channel re-fit, then KD fine-tunes "
                    "with the surrogate gradient", accuracy=accuracy, accuracy_after_layerwise=after_layerwise,
                    accuracy_after_finetunes=stages, test_images=len(test_labels), dataset="mnist",
                    teacher=teacher_path.name, train_seconds=round(seconds, 1), seed=LAYERWISE.seed,
                    layerwise=vars(LAYERWISE), finetunes=[vars(cfg) for cfg in FINETUNES],
                    surrogate_alpha=SURROGATE_ALPHA, calibration=record(student, images, "mnist"))
    print(f"bm15 (exact max): test accuracy {accuracy:.2%}, {seconds:.0f} s in all -> {out}")


def make_bmq(data: Path, checkpoint: Path, out: Path) -> None:
    from bmhw import golden
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize

    images, _ = load_dataset("mnist", data, "train")
    test_images, test_labels = load_dataset("mnist", data, "test")
    net = quantize(load_checkpoint(checkpoint).model, calibration_sample(images, 2000),
                   meta={"source": checkpoint.name, "calibration": "mnist train split"})
    save_bmq(net, out)
    accuracy = float((golden.predict(net, test_images) == test_labels).mean())
    print(f"quantized (integer golden model): test accuracy {accuracy:.2%} -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", choices=("classical", "bm15", "bmq", "adder", "bise", "maxima", "cnn", "widths"),
                        default=None)
    parser.add_argument("--widths", default=None, metavar="C1,C2,F1,F2",
                        help="classical and bm15: a LeNet of these widths (the width study of docs/results/mnist.md); "
                        "needs an --out other than examples/, whose networks have the default widths 6,16,120,84")
    args = parser.parse_args()
    widths = None
    if args.widths is not None:
        widths = tuple(int(w) for w in args.widths.split(","))
        if len(widths) != 4 or args.out.resolve() == HERE or args.only not in ("classical", "bm15"):
            parser.error("--widths takes four integers, an --out other than examples/ and --only classical or bm15")
    args.out.mkdir(parents=True, exist_ok=True)
    classical = args.out / "lenet_classical_mnist.pt"
    if args.only in (None, "classical") or (widths is not None and not classical.exists()):
        make_classical(args.data, classical, widths)
    if args.only in (None, "bm15"):
        make_bm15(args.data, classical, args.out / "lenet_bm15_mnist.pt")
    if args.only in (None, "bm15", "bmq"):
        make_bmq(args.data, args.out / "lenet_bm15_mnist.pt", args.out / "lenet_bm15_mnist.bmq")
    if args.only in (None, "adder"):
        make_by_cli(ADDER_COMMANDS, args.data, classical, args.out)
    if args.only in (None, "bise"):
        make_by_cli(BISE_COMMANDS, args.data, classical, args.out)
    if args.only in (None, "maxima"):
        make_by_cli(MAXIMA_COMMANDS, args.data, classical, args.out)
    if args.only in (None, "cnn"):
        make_cnn(args.data, args.out)
    if args.only in (None, "bm15", "maxima", "widths"):
        fit_widths(args.data, args.out, {"bm15": FITTED_WIDTHS[:1], "maxima": FITTED_WIDTHS[1:]}.get(args.only,
                                                                                                    FITTED_WIDTHS))


if __name__ == "__main__":
    main()
