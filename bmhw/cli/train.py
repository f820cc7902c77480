"""bmhw train, convert and distill: parse what the library needs, run it, print the summary."""

from __future__ import annotations

from pathlib import Path

import torch

from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.data import calibration_sample, load_dataset
from bmhw.errors import BmhwError
from bmhw.models import arch_name, create, describe, make_spec
from bmhw.nn.layers import surrogate_gradient
from bmhw.train.loop import evaluate, to_tensor, train_classifier
from bmhw.cli.common import _check_arch, _check_positive, _dataset_of, _is_classical, _summary, _training_data, console
from bmhw.cli.parser import TRAIN_EPOCHS


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


def _refuse_unused_epochs(args, method: str, base: str | None = None) -> None:
    """A training length the method does not read (--epochs to a layer-wise method, ...) is refused, not ignored."""
    from bmhw.train.methods import EPOCH_FIELDS, epoch_fields

    used = epoch_fields(method, base)
    for name in EPOCH_FIELDS:
        if getattr(args, name, None) is not None and name not in used:
            option, what = f"--{name.replace('_', '-')}", f"--method {method}" + (f" --base {base}" if base else "")
            lengths = ", ".join(f"--{u.replace('_', '-')}" for u in used)
            raise BmhwError(f"{option} does not apply to {what}, which would ignore it: its training length is "
                            f"set by {lengths}")


def cmd_train(args) -> int:
    _check_positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, surrogate_alpha=args.surrogate_alpha)
    _refuse_unused_epochs(args, args.method)
    if args.method != "direct":
        return _train_by_method(args)
    if args.epochs is None:
        args.epochs = TRAIN_EPOCHS
    learn_alpha = args.learn_alpha or args.learn_alpha_epochs > 0
    spec = make_spec(args.neuron, args.reduce, args.alpha, learn_alpha)
    model = _initial_model(args, spec, learn_alpha)
    dataset = _dataset_of(model)
    images, labels = _training_data(args, dataset, "train")
    console.print(f"training {args.model} ({spec['neuron']}) on {len(images)} {dataset} images, "
                  f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, seed {args.seed}")
    results = []
    loss_fn = None
    if spec["neuron"] == "bise":  # cross-entropy + the regularisation towards binarisable parameters
        from bmhw.nn.bise_train import bise_loss_fn

        loss_fn = bise_loss_fn(getattr(args, "bise_reg", 0.0) or 0.0, args.epochs * -(-len(images) // args.batch_size))

    def run(epochs):
        results.append(train_classifier(model, images, labels, epochs=epochs, batch_size=args.batch_size,
                                        lr=args.lr, seed=args.seed, shift=args.shift, quiet=args.quiet,
                                        loss_fn=loss_fn))

    with surrogate_gradient(args.surrogate_alpha):
        if args.learn_alpha_epochs > 0:
            from bmhw.train.methods import in_two_phases

            in_two_phases(model, args.learn_alpha_epochs, args.epochs, run)
        else:
            run(args.epochs)
    bise_rows = _binarise(model, args, dataset, images, labels, results) if spec["neuron"] == "bise" else []
    rows = [("train loss (last epoch)", f"{results[-1].train_loss:.4f}"),
            ("train accuracy (last epoch)", f"{results[-1].train_accuracy:.2%}")] + bise_rows
    _finish(model, args, dataset, "direct" if args.init is None else "direct (from --init)",
            sum(r.seconds for r in results), rows, epochs=args.epochs, train_images=images,
            init=str(args.init) if args.init else None, output=args.output or Path(f"{args.model}_{spec['neuron']}.pt"))
    return 0


def _cnn_args(args) -> dict:
    """--layers (text, or a JSON file of layer entries) and --input of --model cnn."""
    import json

    from bmhw.models import parse_layers

    if not args.layers:
        raise BmhwError("--model cnn needs --layers, e.g. --layers 'conv8k3p1 relu pool2 flatten fc10'")
    path = Path(args.layers)
    if path.suffix == ".json":
        try:
            stack = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise BmhwError(f"--layers {path}: cannot read a JSON list of layers ({err})") from None
    else:
        stack = parse_layers(args.layers)
    try:
        channels, side = (int(v) for v in str(args.input).lower().split("x"))
    except ValueError:
        raise BmhwError(f"--input {args.input!r}: give CxS, e.g. 1x28 or 3x32") from None
    return {"stack": stack, "in_channels": channels, "input_size": side}


def _initial_model(args, spec: dict, learn_alpha: bool):
    """The network bmhw train starts from: --init (a classical one converted to --neuron, or a network of that
    neuron already), or a new one of --model and --widths with --maxima per layer."""
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
        return model
    torch.manual_seed(args.seed)
    if args.model != "cnn" and (args.layers or args.input != "1x28"):
        raise BmhwError(f"--layers and --input describe a --model cnn; the {args.model} has its own layers")
    widths = _cnn_args(args) if args.model == "cnn" else {}
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
    return create(args.model, spec["neuron"], spec.get("reduce", "max"), spec.get("alpha"),
                  spec.get("learn_alpha", False), layers=layers, **widths)


def _binarise(model, args, dataset: str, images, labels, results: list) -> list:
    """BiSE: the float accuracy, then the layer-by-layer binarisation with re-fits (docs/training.md, "BiSE");
    its time joins ``results``. Returns the summary rows."""
    import time

    from bmhw.nn.bise_train import binarize_layerwise

    rows = []
    if (getattr(args, "bise_refit", 0) or 0) > 0:
        try:
            float_acc = evaluate(model, *load_dataset(dataset, args.data, "test"))
            rows = [("float test accuracy before the binarisation", f"{float_acc:.2%}")]
        except BmhwError:
            pass
        t0 = time.perf_counter()
        binarize_layerwise(model, images, labels, refit_epochs=args.bise_refit, lr=args.lr, seed=args.seed,
                           quiet=args.quiet)
        results.append(type(results[-1])(results[-1].train_loss, results[-1].train_accuracy,
                                         time.perf_counter() - t0))
    return rows + _bise_rows(model, args, dataset)


def _bise_rows(model, args, dataset: str) -> list:
    """BiSE: exactly binarisable neurons before projection, and the binarised network's test accuracy."""
    from bmhw.nn.bise_train import binarize_model, unbinarize_model

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


def _finish(model, args, dataset: str, method: str, seconds: float, rows: list, output: Path, train_images,
            **metadata) -> None:
    """Score on the test split where there is one, save the checkpoint with the activation ranges on its training
    images (``bmhw.quant.calibration``), print the summary."""
    from bmhw.quant.calibration import record

    metadata.update(train_images=len(train_images), calibration=record(model, train_images, dataset))
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
    from bmhw.train.methods import MethodConfig

    fields = MethodConfig.__dataclass_fields__
    values = {name: getattr(args, name) for name in fields if hasattr(args, name) and getattr(args, name) is not None}
    return MethodConfig(**{**values, **overrides})


def _train_by_method(args) -> int:
    """bmhw train --method layerwise|layerwise-freeze: from the classical --init network."""
    from bmhw.train import methods

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
            log=result.log, train_images=images)
    return 0


def cmd_distill(args) -> int:
    from bmhw.train import methods

    _check_positive(batch_size=args.batch_size, lr=args.lr)
    _refuse_unused_epochs(args, args.method, args.base if args.method == "lse-max" else None)
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
            log=result.log, train_images=images)
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
    images = None if args.data is None else load_dataset(_dataset_of(model), args.data, "train")[0]
    if images is not None and spec["neuron"] == "bm15":
        from bmhw.train.calibrate import refit_bm15

        _check_positive(calib_images=args.calib_images)
        calib = calibration_sample(images, args.calib_images)
        refit_bm15(model, teacher, to_tensor(calib), signed=args.signed,
                   progress=lambda name, s: console.print(f"re-fit {name}: median R^2 {s['r2']:.3f}, "
                                                          f"delta_w {s['delta_w']:g}, mirrored outputs "
                                                          f"{s['negative']}"))
        meta.update(method=meta["method"] + " + calibration re-fit" + (" (signed)" if args.signed else ""),
                    calib_images=len(calib))
    elif images is not None:
        console.print("[yellow]the re-fit is for 1.5 branches; --data records the calibration only[/yellow]")
    if images is not None:
        from bmhw.quant.calibration import record

        meta["calibration"] = record(model, images, _dataset_of(model))
    save_checkpoint(args.output, model, **meta)
    console.print(f"wrote {args.output}")
    return 0
