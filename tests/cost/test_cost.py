"""The hardware cost model (bmhw.cost): units against hand-counted gates, the LeNet's layers against the
units they are made of, the bmhw gates command, and a real Yosys run on the PEs (bmhw.cost.synth)."""

from __future__ import annotations

import csv

import pytest

from bmhw.backends import verilog
from bmhw.backends.verilog import adder as verilog_adder
from bmhw.cost import network, synth, units
from bmhw.ir import load_bmq
from bmhw.resources import examples_dir
from cli_runner import run_main


@pytest.fixture(scope="module")
def lenet():
    return load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")


def test_units_by_hand():
    # 8-bit ripple adder: a half adder (XOR, AND) and seven full adders (2 XOR, 2 AND, OR).
    assert units.adder(8).gates == 2 + 7 * 5 == 37
    assert units.adder(1).gates == 2
    assert units.comparator(8).gates == 16  # XOR + MUX per bit
    assert units.mux(5).gates == 5
    # 8 x 8 array multiplier: 64 partial-product ANDs and 7 rows of 8-bit adders.
    assert units.multiplier(8, 8).gates == 64 + 7 * 37 == 323
    assert units.absolute(8).gates == 8 + 16
    assert units.shifter(16, 5).gates == 16 * 3  # amounts 0..5: three rows of multiplexers
    assert units.shifter(16, 0).gates == 0
    assert (units.register(12).flip_flops, units.register(12).gates) == (12, 0)
    assert units.rom(256, 14).rom_bits == 3584
    with pytest.raises(ValueError):
        units.adder(0)


def test_costs_add_up_and_convert_to_gate_equivalents():
    cost = units.adder(8) + units.register(8) * 3 + units.rom(16, 4)
    assert (cost.gates, cost.flip_flops, cost.rom_bits) == (37, 24, 64)
    assert cost.units == {"adder 8b": 1, "register 8b": 3, "rom 16x4b": 1}
    assert cost.logic_equivalents == 37 + 5 * 24
    assert cost.gate_equivalents == pytest.approx(37 + 5 * 24 + 0.17 * 64)
    assert units.add_energy_pj(8) == pytest.approx(0.03) and units.add_energy_pj(32) == pytest.approx(0.12)
    assert units.mul_energy_pj(8, 8) == pytest.approx(0.2) and units.mul_energy_pj(32, 32) == pytest.approx(3.2)


def test_lenet_pes_by_hand(lenet):
    rows = network.network_costs(lenet)
    conv1 = rows[0]
    # The 1.5-branch PE at the IR's 16-bit T / M: an adder, a comparator, a multiplexer, a 16-bit register.
    assert (conv1["bm15"].pe_cost.gates, conv1["bm15"].pe_cost.flip_flops) == (77 + 32 + 16, 16)
    # The MAC PE on conv1: 9 x 8 multiplier (a sign bit on the 8-bit codes), 22-bit accumulator (8 + 1 + 8 + 5).
    assert conv1["mac"].pe_cost.gates == (72 + 7 * 42) + (2 + 21 * 5)
    assert conv1["mac"].pe_cost.flip_flops == 22
    assert conv1["bm4"].pe_cost.gates == 4 * conv1["bm15"].pe_cost.gates
    # Steps per image: positions x outputs x fan-in, 281,640 for the whole LeNet.
    assert sum(row["bm15"].steps for row in rows) == 576 * 6 * 25 + 64 * 16 * 150 + 120 * 256 + 84 * 120 + 10 * 84
    # Arithmetic energy of conv1 as MAC: every step a 9x8 multiply and a 22-bit add; every output the
    # requantization (22 x 16 multiply, 38-bit add).
    expected = 86400 * (0.2 / 64 * 72 + 0.03 / 8 * 22) + 3456 * (0.2 / 64 * 22 * 16 + 0.03 / 8 * 38)
    assert conv1["mac"].energy_pj == pytest.approx(expected)


def test_more_pes_cost_more_logic_and_the_same_tables(lenet):
    one = network.totals(network.network_costs(lenet, 1))
    four = network.totals(network.network_costs(lenet, 4))
    for kind in network.KINDS:
        assert four[kind][0].gates > one[kind][0].gates
        assert four[kind][1] == pytest.approx(one[kind][1])  # energy depends on the work, not the parallelism
    # The BM PEs are cheaper than the MAC PEs (the claim, in the model): logic without tables.
    assert one["bm15"][0].logic_equivalents < one["mac"][0].logic_equivalents


def test_cli_gates_tables_csv_and_plot(tmp_path):
    code, out, err = run_main(["gates", examples_dir() / "lenet_bm15_mnist.bmq", "--csv", tmp_path / "g.csv",
                               "--plot", tmp_path / "g.png", "--pe", "2"])
    assert code == 0, err
    assert "whole network" in out and "conv1" in out
    rows = list(csv.DictReader((tmp_path / "g.csv").open()))
    assert len(rows) == 5 * len(network.KINDS)
    assert {row["neuron"] for row in rows} == set(network.KINDS)
    assert all(row["pe"] == "2" for row in rows)
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_gates_errors_are_one_line(tmp_path):
    code, _, err = run_main(["gates", examples_dir() / "lenet_bm15_mnist.bmq", "--weight-bits", "1"])
    assert code == 2 and "--weight-bits must be between 2 and 32" in err and err.count("\n") == 1
    code, _, err = run_main(["gates", tmp_path / "missing.bmq"])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_yosys_counts_the_pes_close_to_the_model(lenet, tmp_path):
    # A real Yosys run: the add-max PE and the MAC PE of conv1, generic gates and Xilinx LUTs.
    project = verilog.export(lenet, tmp_path / "rtl", pe_layers={"fc3": 3})
    rows = synth.synth_blocks(project, lenet, verilog.layer_pes(lenet, 1, {"fc3": 3}),
                              whole=False)
    pe_rows = {(row["block"], row["kind"]): row for row in rows}
    bm, mac = pe_rows["conv1 PE", "bm15"], pe_rows["conv1 PE", "mac"]
    for row in (bm, mac):
        assert row["generic"].gates > 0 and row["xilinx"].luts > 0
        assert row["generic"].flip_flops == row["analytical"].flip_flops
        assert 0.75 <= row["generic"].gates / row["analytical"].gates <= 1.25
    assert mac["generic"].gates > 2 * bm["generic"].gates and mac["xilinx"].luts > 2 * bm["xilinx"].luts
    array = pe_rows["fc3 PE array of 3", "bm15"]
    assert array["generic"].flip_flops == 3 * bm["generic"].flip_flops
    assert 0.75 <= array["generic"].gates / array["analytical"].gates <= 1.25
    layer = pe_rows["conv1 layer", "bm15"]
    model = layer["analytical"].gates + units.GATES_PER_ROM_BIT * layer["analytical"].rom_bits
    assert 0.75 <= layer["generic"].gates / model <= 1.25


@pytest.mark.slow
def test_nextpnr_places_and_routes_a_small_network_on_ecp5(tmp_path):
    # A real nextpnr run on a small exported network: its report parsed, a positive Fmax.
    from bmhw.cost import pnr
    from bmhw.quant import quantize
    from conftest import build_sequential
    from random_nets import random_images

    spec = {"seed": 6, "in": (1, 6, 6), "convs": [(2, 3, 1, 0, 2)], "linears": [3]}
    net = quantize(build_sequential(spec), random_images(16, shape=(1, 6, 6), seed=6), act_bits=4, log_frac_bits=5)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    result = pnr.place_and_route(project, device="25k", package="CABGA256", target_mhz=50)
    assert result.fmax_mhz > 10 and result.luts > 0 and result.flip_flops > 0
    assert result.dsp == 0  # no multiplier anywhere
    cycles = verilog.cycle_summary(net, verilog.layer_pes(net, 2))["total"]
    assert result.images_per_s(cycles) == pytest.approx(result.fmax_mhz * 1e6 / cycles)


def test_nextpnr_report_parsing():
    from bmhw.cost import pnr

    log = """Info: Device utilisation:
Info: 	          TRELLIS_FF:    2881/  83640     3%
Info: 	        TRELLIS_COMB:    5600/  83640     6%
Info: 	              DP16KD:      61/    208    29%
Info: 	          MULT18X18D:       0/    156     0%
Info:     Total LUT4s:      5025/83640     6%
Info:      Total DFFs:      2881/83640     3%
Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 48.10 MHz (FAIL at 100.00 MHz)
Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 51.20 MHz (FAIL at 100.00 MHz)
"""
    result = pnr.parse_report(log, "85k", 1.0)
    assert (result.luts, result.flip_flops, result.bram, result.dsp, result.fmax_mhz) == (5025, 2881, 61, 0, 51.2)
    with pytest.raises(Exception, match="no maximum frequency"):
        pnr.parse_report("Info: nothing", "85k", 1.0)


@pytest.mark.slow
def test_cli_gates_pnr_reports_fmax_and_images_per_second(tmp_path):
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize
    from conftest import build_sequential
    from random_nets import random_images

    from bmhw.quant import quantize_classical

    spec = {"seed": 7, "in": (1, 6, 6), "convs": [(2, 3, 1, 0, 2)], "linears": [3]}
    images = random_images(16, shape=(1, 6, 6), seed=7)
    net = quantize(build_sequential(spec), images, act_bits=4, log_frac_bits=5)
    save_bmq(net, tmp_path / "small.bmq")
    save_bmq(quantize_classical(build_sequential(spec, classical=True), images, act_bits=4), tmp_path / "twin.bmq")
    code, out, err = run_main(["gates", tmp_path / "small.bmq", "--twin", tmp_path / "twin.bmq", "--pnr", "ecp5",
                               "--device", "25k", "--package", "CABGA256", "--target-mhz", "50"])
    assert code == 0, err
    for label in ("LUT4s", "DP16KD", "Fmax", "images/s at Fmax", "BM 1.5-branch", "MAC twin", "BM / MAC"):
        assert label in out
    dsp = [line for line in out.splitlines() if "DSP (MULT18X18D)" in line][0].split("│")
    assert int(dsp[2]) == 0 and int(dsp[3]) == 2  # one multiplier per MAC PE (one PE per layer), none in BM
    code, out, err = run_main(["gates", tmp_path / "small.bmq", "--twin", tmp_path / "twin.bmq", "--pnr", "ecp5",
                               "--device", "25k", "--package", "CABGA256", "--no-dsp"])
    assert code == 0, err
    dsp = [line for line in out.splitlines() if "DSP (MULT18X18D)" in line][0].split("│")
    assert int(dsp[2]) == int(dsp[3]) == 0
    # iCE40 (an HX8K, no DSP blocks): both designs fit and get a positive Fmax.
    code, out, err = run_main(["gates", tmp_path / "small.bmq", "--twin", tmp_path / "twin.bmq", "--pnr", "ice40",
                               "--target-mhz", "50"])
    assert code == 0, err
    assert "ICE40-hx8k" in out and "SB_RAM40_4K" in out
    fmax = [line for line in out.splitlines() if "Fmax (MHz)" in line][0].split("│")
    assert float(fmax[2]) > 10 and float(fmax[3]) > 10
    code, _, err = run_main(["gates", tmp_path / "small.bmq", "--pnr", "ecp5", "--device", "99k"])
    assert code == 2 and "unknown ECP5 device '99k'" in err
    code, _, err = run_main(["gates", tmp_path / "small.bmq", "--pnr", "ice40", "--device", "85k"])
    assert code == 2 and "unknown ICE40 device '85k'" in err
    code, _, err = run_main(["gates", tmp_path / "small.bmq", "--twin", tmp_path / "small.bmq"])
    assert code == 2 and "the twin must be a classical network" in err
    code, _, err = run_main(["gates", tmp_path / "twin.bmq"])
    assert code == 2 and "bmhw gates takes the BM network and the classical one as --twin" in err


@pytest.mark.slow
def test_synth_of_a_small_network_and_its_mac_twin(tmp_path):
    # PE arrays, first layers and whole accelerators of both, from real Yosys runs.
    from bmhw.quant import quantize, quantize_classical
    from conftest import build_sequential
    from random_nets import random_images

    spec = {"seed": 9, "in": (1, 6, 6), "convs": [(3, 3, 1, 0, 2)], "linears": [3]}
    images = random_images(16, shape=(1, 6, 6), seed=9)
    net = quantize(build_sequential(spec), images)
    twin = quantize_classical(build_sequential(spec, classical=True), images)
    pes = verilog.layer_pes(net, 3)
    rows = synth.synth_blocks(verilog.export(net, tmp_path / "bm", pe=3), net, pes,
                              twin_project=verilog.export(twin, tmp_path / "mac", pe=3), twin=twin)
    by = {(row["block"], row["kind"]): row for row in rows}
    assert set(by) >= {("layer_0 PE array of 3", "bm15"), ("layer_0 PE array of 3", "mac"), ("layer_0 layer", "bm15"),
                       ("layer_0 layer", "mac"), ("whole accelerator", "bm15"), ("whole accelerator", "mac")}
    for row in rows:
        assert row["generic"].gates > 0 and row["xilinx"].luts > 0, row["block"]
    # At 8-bit codes and weights a MAC PE is several times an add-max PE.
    assert by["layer_0 PE", "mac"]["generic"].gates > 2 * by["layer_0 PE", "bm15"]["generic"].gates
    assert by["layer_0 PE array of 3", "mac"]["generic"].flip_flops == 3 * by["layer_0 PE", "mac"]["generic"].flip_flops
    for kind in ("bm15", "mac"):
        whole = by["whole accelerator", kind]
        assert whole["memories_kept"] and whole["generic"].memories > 0
        # (The layer alone turns its ROMs into logic; the whole design keeps them as memories.)
        assert whole["generic"].flip_flops > by["layer_0 layer", kind]["generic"].flip_flops


# ---------------------------------------------------------------------------------------------------
# AdderNet networks: the addernet model of the exported datapath (bmhw_adder_layer)
# ---------------------------------------------------------------------------------------------------


def test_adder_layer_cost_by_hand():
    from random_nets import random_adder_net

    net = random_adder_net(seed=3)
    layer = net.layers[0]
    p = verilog_adder.plan(net, layer, "conv1", 2)["params"]
    cost = network.adder_layer_cost(net, layer, "conv1", 2)
    d, acc = p["D_W"], p["ACC_W"]
    # One PE: a D_W-bit subtractor (2 + 5 (n - 1)), the absolute value (3n), an ACC_W-bit adder and register.
    assert cost.pe_cost.gates == (2 + 5 * (d - 1)) + 3 * d + (2 + 5 * (acc - 1))
    assert cost.pe_cost.flip_flops == acc
    # Two PEs with their hold registers; shared: the multiplier MUL_W x (ACC_W + 1), Y = B - product, the
    # requantization (YR_W-bit rounding adder, two A-bit multiplexers), product and Y registers.
    shared = units.multiplier(acc + 1, p["MUL_W"]) + units.adder(p["Y_W"]) + units.adder(p["YR_W"]) \
        + units.mux(p["OUT_D"]) * 2
    assert cost.cost.gates == 2 * cost.pe_cost.gates + shared.gates
    assert cost.cost.flip_flops == 2 * (2 * acc) + p["PROD_W"] + p["Y_W"]
    folds, k = 2, int(layer["fan_in"])  # 3 outputs at PE 2
    assert cost.cost.rom_bits == folds * k * 2 * p["WT_W"] + folds * 2 * (p["MUL_W"] + p["B_W"])
    assert cost.steps == 12 * 3 * 18
    rows = network.adder_network_costs(net, 2)
    assert [set(row) for row in rows] == [{"addernet"}] * 4
    assert network.totals(rows)["addernet"][0].gates == sum(row["addernet"].cost.gates for row in rows)
    assert set(network.totals(rows)) == {"addernet"}


def test_cli_gates_of_an_adder_network(tmp_path):
    from bmhw.ir import save_bmq
    from random_nets import random_adder_net

    path = save_bmq(random_adder_net(seed=3), tmp_path / "adder.bmq")
    code, out, err = run_main(["gates", path, "--pe", "2"])
    assert code == 0, err
    assert "AdderNet datapath" in out and "conv1" in out and "fc2" in out and "total" in out
    code, out, err = run_main(["gates", path, "--csv", tmp_path / "x.csv"])
    assert code == 2 and err.count("\n") == 1 and "drop them" in err


@pytest.mark.slow
def test_synth_of_a_small_adder_network(tmp_path):
    from random_nets import random_adder_net

    net = random_adder_net(seed=9, in_shape=(1, 6, 6), convs=((3, 3, 1, 0, 2),), linears=(3,), act_bits=6)
    pes = verilog.layer_pes(net, 3)
    rows = synth.synth_family_blocks(verilog.export(net, tmp_path / "adder", pe=3), net, pes, "addernet")
    by = {row["block"]: row for row in rows}
    assert set(by) >= {"conv1 PE", "conv1 PE array of 3", "conv1 control (not modelled)", "conv1 layer",
                       "fc1 PE", "whole accelerator"}
    for row in rows:
        assert row["generic"].gates > 0 and row["xilinx"].luts > 0, row["block"]
    # The PE: model and Yosys within 30% (docs/gates.md); its flip-flops exactly the accumulator.
    pe = by["conv1 PE"]
    assert 0.7 < pe["generic"].gates / pe["analytical"].gates < 1.3
    assert pe["generic"].flip_flops == pe["analytical"].flip_flops
    assert by["conv1 PE array of 3"]["generic"].flip_flops == 3 * pe["generic"].flip_flops
    assert by["whole accelerator"]["memories_kept"] and by["whole accelerator"]["generic"].memories > 0


# Binarised BiSE networks: the bise model of the exported datapath (bmhw_bise_layer)
# ---------------------------------------------------------------------------------------------------


def test_bise_layer_cost_by_hand():
    from random_nets import random_bise_net

    net = random_bise_net(seed=3)
    assert units.incrementer(4).gates == 2 * 4  # a half-adder chain
    rows = {row["bise"].layer: row["bise"] for row in network.bise_network_costs(net, 2)}
    assert list(rows) == ["conv1", "conv2", "fc1", "fc2"]
    for name, binarize in (("conv1", True), ("conv2", False)):
        layer = next(entry for entry in net.layers if entry["name"] == name)
        cost, acc = rows[name], int(layer["widths"]["C"])
        # One PE: the literal (XOR, AND), a half-adder chain and the ACC_W-bit counter.
        assert cost.pe_cost.gates == 2 + 2 * acc and cost.pe_cost.flip_flops == acc
        # Two PEs with their hold registers; shared: the threshold comparison (2 per bit) and its output
        # register, and on the first layer the 8-bit binarisation comparison.
        assert cost.cost.gates == 2 * cost.pe_cost.gates + 2 * acc + (2 * 8 if binarize else 0)
        assert cost.cost.flip_flops == 2 * 2 * acc + 1
        folds, k = -(-int(layer["out_count"]) // 2), int(layer["fan_in"])
        assert cost.cost.rom_bits == folds * k * 2 * 2 + folds * 2 * acc
    scores = rows["fc2"]  # no threshold: the count is the score
    acc = int(net.layers[-1]["widths"]["C"])
    assert scores.cost.gates == 2 * scores.pe_cost.gates and scores.cost.rom_bits == 2 * 5 * 2 * 2
    all_rows = network.bise_network_costs(net, 2)
    assert set(network.totals(all_rows)) == {"bise"}
    assert network.totals(all_rows)["bise"][0].gates == sum(row["bise"].cost.gates for row in all_rows)


def test_cli_gates_of_a_bise_network(tmp_path):
    from bmhw.ir import save_bmq
    from random_nets import random_bise_net

    path = save_bmq(random_bise_net(seed=3), tmp_path / "bise.bmq")
    code, out, err = run_main(["gates", path, "--pe", "2"])
    assert code == 0, err
    assert "binarised BiSE datapath" in out and "conv1" in out and "fc2" in out and "total" in out
    code, out, err = run_main(["gates", path, "--csv", tmp_path / "x.csv"])
    assert code == 2 and err.count("\n") == 1 and "drop them" in err


@pytest.mark.slow
def test_synth_of_a_small_bise_network(tmp_path):
    from random_nets import random_bise_net

    net = random_bise_net(seed=9, in_shape=(1, 6, 6), convs=((3, 3, 1, 0, 2),), linears=(3,))
    pes = verilog.layer_pes(net, 3)
    rows = synth.synth_family_blocks(verilog.export(net, tmp_path / "bise", pe=3), net, pes, "bise")
    by = {row["block"]: row for row in rows}
    assert set(by) >= {"conv1 PE", "conv1 PE array of 3", "conv1 control (not modelled)", "conv1 layer",
                       "fc1 PE", "whole accelerator"}
    for row in rows:
        assert row["generic"].gates > 0 and row["xilinx"].luts > 0, row["block"]
    # The PE: model and Yosys within 30% (docs/gates.md); its flip-flops exactly the counter.
    pe = by["conv1 PE"]
    assert 0.7 < pe["generic"].gates / pe["analytical"].gates < 1.3
    assert pe["generic"].flip_flops == pe["analytical"].flip_flops
    assert by["conv1 PE array of 3"]["generic"].flip_flops == 3 * pe["generic"].flip_flops
    assert by["whole accelerator"]["memories_kept"] and by["whole accelerator"]["generic"].memories > 0


@pytest.mark.slow
def test_nextpnr_places_and_routes_a_small_bise_network_on_ecp5(tmp_path):
    from bmhw.cost import pnr
    from random_nets import random_bise_net

    net = random_bise_net(seed=6, in_shape=(1, 6, 6), convs=((2, 3, 1, 0, 2),), linears=(3,))
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    result = pnr.place_and_route(project, device="25k", package="CABGA256", target_mhz=50)
    assert result.fmax_mhz > 10 and result.luts > 0 and result.flip_flops > 0
    assert result.dsp == 0  # no multiplier anywhere
