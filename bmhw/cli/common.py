"""What the command modules share: the console, checks of arguments, dataset and checkpoint helpers, and
quantizing a checkpoint with the command line's options."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bmhw.models.checkpoint import load_checkpoint
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.models import arch_name, dataset_of

# Lines never wrap (a path or a command in a message stays whole: soft_wrap), and when the output is not a terminal
# (a file, a pipe) tables are laid out at the width they need instead of 80 columns, so that no number or name is
# cut; on a terminal rich follows its width.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 100_000)


def heading(text: str) -> None:
    """A command's first line, naming what it works on (a path in a table's title would wrap with it)."""
    console.print(text, highlight=False)


def _dataset_of(model) -> str:
    return dataset_of(model)


def _limit(images, labels, limit):
    if limit is not None:
        if limit < 1:
            raise BmhwError(f"--limit must be at least 1, got {limit}")
        images, labels = images[:limit], labels[:limit]
    return images, labels


def _check_positive(**values):
    # argparse's float() takes 'inf' and 'nan', which no comparison with 0 refuses (nan <= 0 is False).
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value > 0):
            raise BmhwError(f"--{name.replace('_', '-')} must be a positive finite number, got {value}")


def _is_classical(config: dict) -> bool:
    return all(spec["neuron"] == "classical" for spec in config["layers"].values())


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _check_arch(model, expected: str, option: str, path) -> None:
    if arch_name(model) != expected:
        raise BmhwError(f"{option} {path} holds a {arch_name(model)}, not a {expected}: pass --model {arch_name(model)}")


def _training_data(args, dataset: str, command: str):
    if args.data is None:
        raise BmhwError(f"bmhw {command} needs --data DIR with the {dataset} training files (the built-in sample "
                        "has test images only)")
    return _limit(*load_dataset(dataset, args.data, "train"), args.limit)


def _is_bmq(path: Path) -> bool:
    return path.suffix == ".bmq"


def _is_onnx(path: Path) -> bool:
    return path.suffix == ".onnx"


def _quantize(args, ckpt=None):
    """Quantize the checkpoint ``args.checkpoint`` (or ``ckpt``, already loaded from it) with the options of bmhw
    quantize: a BM network, or the MAC twin of a classical one."""
    from bmhw.quant import QuantOptions
    from bmhw.quant.checkpoint import quantize_checkpoint

    ckpt = ckpt or load_checkpoint(args.checkpoint)
    frac, bits = _log_widths(args, ckpt)
    opts = QuantOptions(args.act_bits, frac, args.exp_frac_bits, args.guard_bits, log_weight_bits=bits)
    opts.check()
    _check_positive(calib_images=args.calib_images)
    options = {**vars(opts), "weight_bits": args.weight_bits, "scale_bits": getattr(args, "scale_bits", 16)}
    return quantize_checkpoint(ckpt, lambda: _calibration(args, ckpt), options,
                               {"source": Path(args.checkpoint).name})


def _log_widths(args, ckpt) -> tuple:
    """F and the log-weight bits of the BM layers: those given on the command line, else those the checkpoint
    records (bmhw calibrate --fit-log-widths), else the measured default (bmhw.quant.narrow)."""
    from bmhw.quant import narrow
    from bmhw.quant.sequence import WEIGHT_MODULES, check_layer_options, layer_names, layer_sequence

    record = narrow.of_checkpoint(ckpt.metadata, args.checkpoint)
    if record is not None and args.log_frac_bits is None and args.log_weight_bits is None:
        return record.log_frac_bits, record.log_weight_bits
    frac = narrow.DEFAULT_LOG_FRAC_BITS if args.log_frac_bits is None else args.log_frac_bits
    every, per_layer = frac + narrow.DEFAULT_OCTAVE_BITS, {}  # default: 16 octaves below each layer's largest weight
    for text in args.log_weight_bits or ():
        name, sep, value = str(text).rpartition("=")
        if value.strip() != "full" and not value.strip().isdigit():
            raise BmhwError(f"--log-weight-bits {text}: give a number of bits B, 'full' (every log-weight), or LAYER=B")
        bits = None if value.strip() == "full" else int(value)
        if sep:
            per_layer[name.strip()] = bits
        else:
            every = bits
    if not per_layer:
        return frac, every
    check_layer_options(ckpt.model, "log-weight-bits", per_layer)  # before the calibration is looked for
    mods = layer_sequence(ckpt.model)
    names = [n for n, m in zip(layer_names(ckpt.model, mods), mods) if isinstance(m, WEIGHT_MODULES)]
    return frac, {**{name: every for name in names}, **per_layer}


def _calibration(args, ckpt):
    """The activation ranges to quantize with: measured on --data's training split, else those the checkpoint
    records (never test images); a checkpoint with neither is a one-line error saying how to add them."""
    from bmhw.quant.calibration import of_checkpoint

    if args.data is not None:
        return _measured_calibration(args, ckpt.model)
    recorded = of_checkpoint(ckpt.metadata, args.checkpoint)
    if recorded is None:
        raise BmhwError(f"{args.checkpoint} records no calibration (its activation ranges on training images): pass "
                        f"--data DIR with the training split, or record them once with bmhw calibrate "
                        f"{args.checkpoint} --data DIR")
    console.print(f"quantizing with the calibration recorded in {args.checkpoint}: {recorded.images} images of the "
                  f"{recorded.source}", highlight=False)
    return recorded


def _measured_calibration(args, model):
    """The calibration of ``model`` on --calib-images images of --data's training split."""
    from bmhw.quant.calibration import on_training_images

    dataset = _dataset_of(model)
    return on_training_images(model, load_dataset(dataset, args.data, "train")[0], dataset, args.calib_images)


def _load_or_quantize(args):
    from bmhw.ir import load_bmq

    if _is_bmq(Path(args.model)):
        return load_bmq(args.model)
    if Path(args.model).suffix == ".pt":
        args.checkpoint = args.model
        return _quantize(args)
    raise BmhwError(f"{args.model}: give a quantized network (.bmq) or a checkpoint (.pt)")
