"""bmhw export (hls, verilog, onnx, onnx-int), import-onnx, csim and sim."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.table import Table

from bmhw import ir
from bmhw.backends.project import parse_pe_options
from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.models import dataset_of
from bmhw.models.cnn import stack_text
from bmhw.cli.common import heading, _check_positive, _is_bmq, _load_or_quantize, _summary, console


# Images the ONNX exports are checked on before they are written: the first of the built-in MNIST sample
# (random bytes for other input shapes), and an all-zero and an all-255 image (the extreme codes).
ONNX_CHECK_IMAGES = 16


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

    _check_positive(clock=args.clock)  # before any work: a period of inf or nan would reach create_clock
    if args.target in ("onnx", "onnx-int"):
        return _export_onnx(args)
    start = time.perf_counter()
    net = _load_or_quantize(args)
    if any(layer["op"] == "binarize" for layer in net.layers) and args.target not in ("hls", "verilog"):
        raise BmhwError(f"--target {args.target} has no backend for binarised BiSE networks yet: run them with "
                        "bmhw eval MODEL.bmq (the golden model; docs/datapath.md, 'The BiSE layer')")
    pe, pe_layers = parse_pe_options(getattr(args, "pe", None))
    if args.target == "verilog":
        pes = verilog.layer_pes(net, pe, pe_layers)
        verilog.export(net, args.output, pe=pe, pe_layers=pe_layers, clock_ns=args.clock)
        summary = verilog.cycle_summary(net, pes, args.clock)
        what, check = "Verilog", f"bmhw sim {args.output}"
        note = "analytical, from the RTL's schedule; docs/verilog.md"
    else:
        pes = hls.layer_pes(net, pe, pe_layers)
        hls.export(net, args.output, part=args.part, clock_ns=args.clock, pe=pe, pe_layers=pe_layers)
        summary = hls.cycle_summary(net, pes, args.clock)
        what, check = "HLS", f"bmhw csim {args.output}"
        note = "model, not a synthesis report; docs/hls.md"
    heading(f"bmhw export --target {args.target}: {args.output}")
    table = Table(title="per layer: widths of the datapath (bits)")
    pe_sum = ir.FAMILIES[net.family].pe_sum if net.family else "T"
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
    from bmhw.backends.onnx import run as onnx_run
    from bmhw.backends.onnx.graph import save_model

    start = time.perf_counter()
    path = Path(args.model)
    if args.target == "onnx":
        from bmhw.models import onnx_export as onnx_float

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
        from bmhw.backends.onnx import integer as onnx_int

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
    from bmhw.models.onnx_import import IMPORT_TOLERANCE, import_onnx

    start = time.perf_counter()
    result = import_onnx(args.model)
    model = result.model
    try:
        dataset = dataset_of(model)
    except BmhwError:  # a CNN for images of another size: no dataset of bmhw's
        dataset = None
    save_checkpoint(args.output, model, method="import-onnx", source=str(args.model), dataset=dataset,
                    onnx_producer=result.producer or None, onnx_error=result.error)
    args_text = {k: stack_text(v) if k == "stack" else v for k, v in result.args.items()}
    rows = [("architecture", f"{result.arch} ({', '.join(f'{k}={v}' for k, v in args_text.items())})"),
            ("weight layers", ", ".join(model.weight_layers())),
            ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
            ("produced by", result.producer or "-"),
            ("onnxruntime vs PyTorch", f"{result.error:.2g} relative on random images (at most {IMPORT_TOLERANCE:g})"),
            ("checkpoint", str(args.output)), ("wall time", f"{time.perf_counter() - start:.1f} s")]
    _summary(f"bmhw import-onnx: {args.model}", rows)
    console.print(f"next: bmhw convert {args.output} --neuron bm15 -o BM.pt, or bmhw distill --teacher {args.output}")
    return 0


def cmd_csim(args) -> int:
    from bmhw.backends.hls import csim

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
        first = result.first_mismatch
        where = "" if first is None else (f"; the first in layer {first['layer']} index {first['index']} of image "
                                          f"{first['image']} (got {first['got']}, expected {first['expected']})")
        raise BmhwError(f"C-simulation of {args.project} disagrees with the golden model: {result.mismatches} "
                        f"mismatches in {result.images} images of {source}{where} (testbench exit {result.returncode})")
    print(f"csim: {result.images} images, 0 mismatches, bit-exact against the golden model ({seconds:.1f} s)")
    return 0


def cmd_sim(args) -> int:
    from rich.progress import Progress

    from bmhw.backends.verilog import rtlsim

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
