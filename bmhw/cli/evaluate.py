"""bmhw quantize and bmhw eval."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rich.table import Table

from bmhw import ir
from bmhw.models.checkpoint import load_checkpoint
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.cli.common import (heading, _check_positive, _dataset_of, _is_bmq, _is_onnx, _limit,
                              _quantize, console)


def cmd_quantize(args) -> int:
    from bmhw.ir import save_bmq

    if _is_bmq(Path(args.checkpoint)):
        raise BmhwError(f"{args.checkpoint} is already a quantized network: bmhw quantize takes a 1.5-branch BM "
                        "or a classical checkpoint (.pt)")
    net = _quantize(args)
    save_bmq(net, args.output)
    heading(f"bmhw quantize: {args.output}" + (" (MAC twin)" if net.family == "mac" else ""))
    console.print(_quantize_table(net))
    if net.family == "mac":
        console.print(f"wrote {args.output}: the MAC twin of a classical network ({args.weight_bits}-bit weights); "
                      "export it with --target verilog")
    else:
        console.print(f"wrote {args.output}")
    return 0


def _bm_row(layer: dict) -> list:  # F and the stored log-weight width (docs/datapath.md, "Narrower memories") too
    maxima = f"{layer.get('groups', 1)}{'s' if layer.get('split_sign') else ''}"  # the --maxima form: 6s
    return [f"2^{layer['out_scale_exp']}", str(layer["G"]), str(layer["F"]), f"{layer['widths']['W']} bits",
            maxima, f"{layer['widths']['T']} bits", f"{layer['widths']['Y']} bits"]


def _mac_row(layer: dict) -> list:
    return [f"2^{layer['out_scale_exp']}", f"2^{layer['acc_scale_exp']}", f"{layer['widths']['P']} bits",
            f"{layer['widths']['Y']} bits"]


def _adder_row(layer: dict) -> list:  # AdderNet: R, the ACC and Y widths
    return [f"2^{layer['out_scale_exp']}", f"R = {layer['R']}", f"ACC {layer['widths']['ACC']} bits",
            f"{layer['widths']['Y']} bits"]


def _bise_row(layer: dict) -> list:  # binarised: literals counted inside each structuring element, no scales
    return [str(layer["fan_in"]), f"{layer['widths']['C']} bits", "class scores" if layer["scores"] else "binary"]


# What bmhw quantize prints per weighted layer, in the terms of each family (by family key): columns, row.
QUANTIZE_COLUMNS = {
    "bm": (("output scale", "G", "F", "log-weights", "maxima", "PE sum T", "accumulator Y"), _bm_row),
    "mac": (("output scale", "accumulator scale", "product", "accumulator Y"), _mac_row),
    "adder": (("output scale", "shift R", "adder sum", "accumulator Y"), _adder_row),
    "bise": (("literals per output", "count C", "output"), _bise_row),
}


def _quantize_table(net) -> Table:
    """What bmhw quantize prints per layer, in the terms of the network's family."""
    columns, family_row = QUANTIZE_COLUMNS[net.family or "bm"]
    table = Table(title="per layer: widths (bits)" if net.family == "bise" else "per layer: scales and widths (bits)")
    for column in ("layer", "op", "out shape", *columns):
        table.add_column(column)
    for layer in net.layers:
        row = [layer["name"], layer["op"], "x".join(map(str, layer["out_shape"]))]
        table.add_row(*row, *(family_row(layer) if ir.OPS[layer["op"]].weighted else ()))
    return table


def cmd_calibrate(args) -> int:
    from bmhw.models.checkpoint import save_checkpoint
    from bmhw.quant import narrow
    from bmhw.quant.calibration import METADATA_KEY, on_training_images
    from bmhw.quant.checkpoint import checkpoint_family

    if args.data is None:
        raise BmhwError("bmhw calibrate needs --data DIR with the training split (calibration never uses test images)")
    _check_positive(calib_images=args.calib_images, fit_images=args.fit_images)
    for option, value in (("--fit-tolerance", args.fit_tolerance), ("--fit-agreement", args.fit_agreement)):
        if not 0 <= value <= 100:
            raise BmhwError(f"{option} must be between 0 and 100 points, got {value}")
    ckpt = load_checkpoint(args.checkpoint)
    if args.fit_log_widths and checkpoint_family(ckpt.config) != "bm":
        raise BmhwError(f"{args.checkpoint} is not a BM network: --fit-log-widths fits the log-domain widths of BM layers")
    dataset = _dataset_of(ckpt.model)
    images, labels = load_dataset(dataset, args.data, "train")
    record = on_training_images(ckpt.model, images, dataset, args.calib_images)
    extra = {METADATA_KEY: record.to_metadata()}
    if args.fit_log_widths:
        extra[narrow.METADATA_KEY] = _fit_log_widths(args, ckpt, record, images, labels, dataset).to_metadata()
    output = args.output or args.checkpoint
    save_checkpoint(output, ckpt.model, **{**ckpt.metadata, **extra})
    heading(f"bmhw calibrate: {output}")
    table = Table(title=f"largest activation per weight layer, on {record.images} images of the {record.source}")
    table.add_column("layer")
    table.add_column("max", justify="right")
    for name, value in record.maxima.items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    console.print(f"wrote {output}: bmhw quantize and bmhw export use these ranges when no --data is given")
    return 0


def _fit_log_widths(args, ckpt, calibration, images, labels, dataset: str):
    """The narrowest log-domain widths per BM layer on --fit-images training images (bmhw.quant.narrow), printed."""
    from bmhw.data import calibration_sample
    from bmhw.quant import narrow

    chosen = calibration_sample(np.arange(len(images)), args.fit_images, seed=1)
    console.print(f"fitting the log-domain widths on {len(chosen)} images of the {dataset} train split "
                  f"(tolerance {args.fit_tolerance:g} points of accuracy, {args.fit_agreement:g} of agreement)",
                  highlight=False)
    fitted = narrow.fit(ckpt.model, calibration, images[chosen], labels[chosen], f"{dataset} train split",
                        args.fit_tolerance / 100, args.fit_agreement / 100,
                        report=lambda line: console.print(f"  {line}", highlight=False))
    table = Table(title=f"log-domain widths per BM layer: {100 * fitted.integer_accuracy:.2f}% integer against "
                        f"{100 * fitted.float_accuracy:.2f}% float on those images")
    for column in ("layer", "F (fraction bits)", "log-weight bits"):
        table.add_column(column)
    for name, frac in fitted.log_frac_bits.items():
        table.add_row(name, str(frac), str(fitted.log_weight_bits[name]))
    console.print(table)
    return fitted


def cmd_eval(args) -> int:
    from bmhw.train.loop import predict

    path = Path(args.checkpoint)
    if _is_onnx(path):
        from bmhw.backends.onnx import run as onnx_run

        runner = onnx_run.load(path)
        dataset, classify = runner.dataset, runner.predict
        what = " (onnxruntime" + (", integer graph" if runner.kind == "integer" else "") + ")"
    elif _is_bmq(path):
        from bmhw import golden
        from bmhw.ir import load_bmq

        net = load_bmq(path)
        if tuple(net.input_shape) != (1, 28, 28):
            raise BmhwError(f"{path} takes inputs of shape {tuple(net.input_shape)}; bmhw eval feeds MNIST")
        dataset, what, classify = "mnist", " (integer golden model)", lambda x: golden.predict(net, x)
    else:
        model = load_checkpoint(path).model
        dataset, what, classify = _dataset_of(model), "", lambda x: predict(model, x)
    images, labels = _limit(*load_dataset(dataset, args.data, args.split), args.limit)
    start = time.perf_counter()
    accuracy = float((classify(images) == labels).mean())
    source = "the built-in MNIST sample" if args.data is None else str(args.data)
    console.print(f"{path}{what}: {len(images)} {args.split} images of {source}, {time.perf_counter() - start:.1f} s")
    print(f"accuracy: {accuracy * 100:.2f}%")
    if not _is_onnx(path) and not _is_bmq(path):
        from bmhw.nn.bise_train import binarize_model, bise_layers

        if bise_layers(model):  # a BiSE checkpoint: also the binarised network (docs/training.md, "BiSE")
            binarize_model(model)
            print(f"binarised accuracy: {float((classify(images) == labels).mean()) * 100:.2f}%")
        _print_exps(model, images)
    return 0


def _print_exps(model, images) -> None:
    """Several maxima per neuron: the exp evaluations of one image, the cost the maxima buy accuracy with."""
    from bmhw.nn.groups import exps_per_image, is_bm_layer
    from bmhw.train.loop import to_tensor

    if any(is_bm_layer(m) and (m.maxima != 1 or m.split_sign) for m in model.modules()):
        counts = exps_per_image(model, to_tensor(images[:1]))
        print(f"exps per image: {sum(counts.values()):,} (" + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ")")
