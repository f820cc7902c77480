"""bmhw gates: the hardware cost of a network, with Yosys and nextpnr on request."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from bmhw import ir
from bmhw.backends.project import parse_pe_options
from bmhw.models.checkpoint import load_checkpoint
from bmhw.errors import BmhwError
from bmhw.cost import report
from bmhw.cli.common import heading, _check_positive, _is_bmq, _is_classical, _load_or_quantize, _quantize, console


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
    from bmhw.backends import verilog
    from bmhw.cost import network

    if args.weight_bits < 2 or args.weight_bits > 32:
        raise BmhwError(f"--weight-bits must be between 2 and 32, got {args.weight_bits}")
    _check_positive(target_mhz=args.target_mhz if args.pnr else None)
    net = _load_or_quantize(args)
    kind = ir.FAMILIES[net.family].cost_kind if net.family else None
    if kind in report.FAMILIES:  # AdderNet, BiSE: their own datapath as exported (docs/gates.md)
        return report.family_report(console, net, args, kind)
    if net.family == "mac":
        raise BmhwError(f"{args.model} is a classical network (a MAC twin): bmhw gates takes the BM network and the "
                        "classical one as --twin")
    twin = _load_twin(args) if args.twin is not None else None
    pe, pe_layers = parse_pe_options(args.pe)
    rows = network.network_costs(net, pe, pe_layers, args.weight_bits, twin)
    kinds = network.KINDS
    mac_note = " (MAC: the twin's datapath)" if twin is not None else ""
    heading(f"bmhw gates: {args.model}")
    table = Table(title=f"logic per layer, in gate equivalents{mac_note} (tables below; docs/gates.md)")
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
        report.write_csv(args.csv, rows)
        console.print(f"wrote {args.csv}")
    if args.plot is not None:
        report.plot_layers(args.plot, rows)
        console.print(f"wrote {args.plot}")
    if args.synth:
        report.synth_report(console, net, twin, verilog.layer_pes(net, pe, pe_layers), pe, pe_layers,
                     args.weight_bits)
    if args.pnr:
        report.pnr_report(console, net, twin, pe, pe_layers, args)
    return 0
