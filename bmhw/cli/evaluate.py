"""bmhw quantize and bmhw eval."""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from bmhw.models.checkpoint import load_checkpoint
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.cli.common import heading, _dataset_of, _is_bmq, _is_onnx, _limit, _quantize, console


def cmd_quantize(args) -> int:
    from bmhw.ir import save_bmq

    if _is_bmq(Path(args.checkpoint)):
        raise BmhwError(f"{args.checkpoint} is already a quantized network: bmhw quantize takes a 1.5-branch BM "
                        "or a classical checkpoint (.pt)")
    net = _quantize(args)
    save_bmq(net, args.output)
    heading(f"bmhw quantize: {args.output}" + (" (MAC twin)" if net.is_mac else ""))
    console.print(_quantize_table(net))
    if net.is_mac:
        console.print(f"wrote {args.output}: the MAC twin of a classical network ({args.weight_bits}-bit weights); "
                      "export it with --target verilog")
    else:
        console.print(f"wrote {args.output}")
    return 0


def _quantize_table(net) -> Table:
    """What bmhw quantize prints per layer, in the terms of the network's family."""
    if net.is_bise:  # binarised: literals counted inside each structuring element, no scales
        columns = ("layer", "op", "out shape", "literals per output", "count C", "output")
    elif net.is_adder:
        columns = ("layer", "op", "out shape", "output scale", "shift R", "adder sum", "accumulator Y")
    else:
        columns = ("layer", "op", "out shape", "output scale", "accumulator scale" if net.is_mac else "G",
                   "product" if net.is_mac else "PE sum T", "accumulator Y")
    table = Table(title="per layer: scales and widths (bits)" if not net.is_bise else "per layer: widths (bits)")
    for column in columns:
        table.add_column(column)
    for layer in net.layers:
        row = [layer["name"], layer["op"], "x".join(map(str, layer["out_shape"]))]
        if "widths" in layer and layer["op"].startswith("bise_"):
            row += [str(layer["fan_in"]), f"{layer['widths']['C']} bits", "class scores" if layer["scores"] else "binary"]
        elif "widths" in layer and layer["op"].startswith("adder_"):  # AdderNet: R, the ACC and Y widths
            row += [f"2^{layer['out_scale_exp']}", f"R = {layer['R']}", f"ACC {layer['widths']['ACC']} bits",
                    f"{layer['widths']['Y']} bits"]
        elif "widths" in layer:
            scale = f"2^{layer['acc_scale_exp']}" if net.is_mac else str(layer["G"])
            row += [f"2^{layer['out_scale_exp']}", scale, f"{layer['widths']['P' if net.is_mac else 'T']} bits",
                    f"{layer['widths']['Y']} bits"]
        table.add_row(*row)
    return table


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
