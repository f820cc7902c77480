"""The unit benches of the Verilog library (sim/test_blocks.py, run by bmhw.sim.block_runner): every block
of a BM layer and whole layers, simulated with Verilator and compared exactly with the Python reference;
and benches that fail, naming the block (or layer) and the index, when a ROM file is corrupted.

One small random network (a first convolution, a convolution with padding 1 and stride 2, a hidden and a
logits linear layer), exported with PE = 2 (3 for the second convolution) so that every tested layer has
several folds and a partial last one. Builds are shared by the whole module (about 20 s for the first,
4 s for each further one: they share Verilator's run-time objects)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bmhw.backends import verilog
from bmhw.backends.project import layer_names
from bmhw.quant import quantize
from bmhw.sim import block_runner
from conftest import build_sequential

SPEC = {"seed": 3, "in": (2, 7, 7), "convs": [(4, 3, 1, 1, 0), (5, 3, 2, 1, 0)], "linears": [7, 3]}
PE, PE_LAYERS = 2, {"2": 3}
# The IR names of the layers: the first convolution (image input: CSUM is not a power of two), the second
# (padding 1, stride 2, a 7x7 input so that the last window also reads padding), the hidden and the
# logits linear layers.
CONV1, CONV2, FC1, LOGITS = "0", "2", "5", "7"


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """(net, project folder, {IR name: Verilog name})."""
    calib = np.random.default_rng(0).integers(0, 256, size=(32, *SPEC["in"])).astype(np.uint8)
    net = quantize(build_sequential(SPEC), calib)
    project = verilog.export(net, tmp_path_factory.mktemp("blocks") / "project", pe=PE, pe_layers=PE_LAYERS)
    names = {str(layer["name"]): name for layer, name in zip(net.layers, layer_names(net))}
    return net, project, names


@pytest.fixture(scope="module")
def benches(network, tmp_path_factory):
    """``get(kind, layer)``: the built harness ("blocks" or "layer") of a layer, built once."""
    _, project, _ = network
    root = tmp_path_factory.mktemp("block_builds")
    built = {}

    def get(kind: str, layer: str) -> block_runner.Bench:
        if (kind, layer) not in built:
            build = block_runner.build_blocks if kind == "blocks" else block_runner.build_layer
            built[kind, layer] = build(project, layer, root)
        return built[kind, layer]

    return get


def layer_of(net, name: str) -> dict:
    return next(layer for layer in net.layers if str(layer["name"]) == name)


def failures(results: dict) -> list:
    return [f"{r.test}: {r.message}" for r in results.values() if not r.passed]


@pytest.mark.slow
@pytest.mark.parametrize("name", [CONV1, CONV2])
def test_every_block_matches_its_reference(network, benches, name):
    net, _, _ = network
    layer = layer_of(net, name)
    results = block_runner.run(benches("blocks", name), seed=1)
    assert set(results) == set(block_runner.BLOCK_TESTS)
    assert not failures(results), failures(results)
    # The LUTs are read at every address, exp_shift at every M of the proven range.
    assert results["rom_ln"].detail["entries"] == 1 << int(layer["widths"]["q_in"])
    assert results["rom_exp"].detail["entries"] == 1 << int(layer["F"])
    lo, hi = layer["ranges"]["M"]
    assert results["exp_shift"].detail["values"] == hi - lo + 1
    assert results["pe_array"].detail["lanes"] == block_runner.ARRAY_PE
    assert results["requantize"].detail["values"] > 1000


@pytest.mark.slow
@pytest.mark.parametrize("name", [CONV2, FC1, LOGITS])
def test_a_whole_layer_matches_the_golden_model_and_the_cycle_model(network, benches, name):
    net, project, names = network
    layer = layer_of(net, name)
    bench = benches("layer", name)
    k, o = int(layer["fan_in"]), int(layer["out_count"])
    assert bench.pe > 1 and -(-o // bench.pe) > 1 and o % bench.pe != 0  # several folds, a partial last one
    codes = block_runner.random_codes(project, name, images=3, seed=2)
    results = block_runner.run(bench, codes=codes)
    assert not failures(results), failures(results)
    detail = results["bm_layer"].detail
    assert detail["images"] == len(codes) == 5
    # The measured latency is the export's cycle model for the layer.
    pes = [bench.pe if str(entry["name"]) == name else 1 for entry in net.layers]
    row = next(r for r in verilog.cycle_model(net, pes) if r["layer"] == names[name])
    assert detail["cycles"] == [row["cycles"]] * len(codes)
    if layer["op"] == "bm_conv2d":
        assert (layer["padding"], layer["stride"]) == ([1, 1], [2, 2])
    assert row["cycles"] == row["positions"] * row["folds"] * k + (o - (row["folds"] - 1) * bench.pe) + 11


def corrupt_line(path, index: int, change) -> tuple[int, int]:
    """Replace entry ``index`` of a $readmemh file by change(entry); return (old, new) as unsigned."""
    lines = path.read_text().splitlines()
    digits = len(lines[index])
    old = int(lines[index], 16)
    new = change(old) & ((1 << (4 * digits)) - 1)
    lines[index] = f"{new:0{digits}x}"
    path.write_text("\n".join(lines) + "\n")
    return old, new


def signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


@pytest.mark.slow
def test_corrupted_lookup_tables_make_the_block_benches_fail(network, benches, tmp_path):
    net, project, names = network
    layer = layer_of(net, CONV1)
    name = names[CONV1]
    bench = benches("blocks", CONV1)
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    ln_w = int(block_runner.parameters(project, CONV1, block_runner.BLOCKS_TB)["LN_W"])
    old, new = corrupt_line(copy / "mem" / f"{name}_ln.mem", 37, lambda v: v ^ 1)
    corrupt_line(copy / "mem" / f"{name}_exp.mem", 100, lambda v: v ^ (1 << 15))
    results = block_runner.run(bench, ["rom_ln", "exp_shift", "rom_exp"], project=copy)

    ln = results["rom_ln"]
    assert not ln.passed
    assert ln.message.startswith(f"block bmhw_rom (ln LUT), layer {name}: address 37: ")
    assert (ln.detail["index"], ln.detail["rtl"], ln.detail["reference"]) == (37, signed(new, ln_w),
                                                                            signed(old, ln_w))
    assert int(net.table(layer, "ln_lut")[37]) == signed(old, ln_w)

    exp = results["exp_shift"]
    assert not exp.passed and exp.message.startswith(f"block bmhw_exp_shift, layer {name}: index ")
    m = layer["ranges"]["M"][0] + exp.detail["index"]
    assert f"(M = {m})" in exp.message and m % (1 << int(layer["F"])) == 100

    assert not results["rom_exp"].passed and "address 100:" in results["rom_exp"].message
    # The same build on the intact project passes: the failures are the corruption's.
    assert not failures(block_runner.run(bench, ["rom_ln", "exp_shift", "rom_exp"]))


@pytest.mark.slow
def test_a_corrupted_bias_makes_the_layer_bench_fail_naming_layer_and_index(network, benches, tmp_path):
    net, project, names = network
    name = names[LOGITS]
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    corrupt_line(copy / "mem" / f"{name}_b.mem", 1, lambda v: v + 1)
    codes = block_runner.random_codes(project, LOGITS, images=1, seed=3)
    result = block_runner.run(benches("layer", LOGITS), project=copy, codes=codes)["bm_layer"]
    assert not result.passed
    assert result.message.startswith(f"image 0: layer {name} index 1: RTL ")
    assert result.detail["rtl"] == result.detail["golden"] + 1


@pytest.mark.parametrize("name", [CONV1, CONV2, LOGITS])
def test_the_harnesses_pass_verilator_lint(network, name):
    _, project, _ = network
    for toplevel in (block_runner.BLOCKS_TB, block_runner.LAYER_TB):
        assert block_runner.lint(project, name, toplevel) == [], toplevel


# ---------------------------------------------------------------------------------------------------
# AdderNet blocks: the adder PE, the adder PE array and the requantization of an adder layer
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adder_project(tmp_path_factory):
    """A random adder network with templates and scales at the ends of their ranges (docs/datapath.md, "The
    adder layer"), exported at PE 2: (net, project)."""
    from random_nets import random_adder_net

    net = random_adder_net(seed=7, extreme=True, scale_bits=12)
    return net, verilog.export(net, tmp_path_factory.mktemp("adder_blocks") / "project", pe=2)


@pytest.mark.slow
# The first layer (it reads the input codes) and the logits (no requantization); fc1 lies between the two.
@pytest.mark.parametrize("name", ["conv1", "fc2"])
def test_adder_blocks_match_their_reference(adder_project, tmp_path_factory, name):
    net, project = adder_project
    layer = layer_of(net, name)
    bench = block_runner.build_adder_blocks(project, name, tmp_path_factory.mktemp("adder_builds"))
    results = block_runner.run(bench, seed=1)
    assert set(results) == set(block_runner.ADDER_BLOCK_TESTS)
    assert not failures(results), failures(results)
    for test in ("adder_pe", "adder_array"):
        detail = results[test].detail
        assert detail["steps"] >= 2000
        # The extreme runs reach the top of ACC's proven range: the PE's widths are tight, not padded.
        assert detail["largest_acc"] == detail["acc_max"] == layer["ranges"]["ACC"][1], (test, detail)
    assert results["adder_array"].detail["lanes"] == block_runner.ARRAY_PE
    if layer["relu"]:
        assert results["adder_requantize"].detail["values"] > 100


@pytest.mark.slow
def test_a_broken_adder_pe_makes_the_bench_fail_naming_block_layer_and_step(adder_project, tmp_path):
    _, project = adder_project
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    source = copy / "rtl" / "lib" / "bmhw_adder_pe.v"
    text = source.read_text()
    assert text.count("acc + mag_x") == 1
    source.write_text(text.replace("acc + mag_x", "acc + mag_x + {{(ACC_W - 1){1'b0}}, d[0]}"))  # a wrong sum
    bench = block_runner.build_adder_blocks(copy, "fc1", tmp_path / "builds")
    result = block_runner.run(bench, ["adder_pe"], seed=1)["adder_pe"]
    assert not result.passed
    assert result.message.startswith("block bmhw_adder_pe, layer fc1: step ")
    assert result.detail["rtl"] != result.detail["reference"]


@pytest.mark.parametrize("name", ["conv1", "fc2"])
def test_the_adder_harness_passes_verilator_lint(adder_project, name):
    _, project = adder_project
    assert block_runner.lint(project, name, block_runner.ADDER_BLOCKS_TB) == []


# ---------------------------------------------------------------------------------------------------
# Binarised BiSE blocks: the BiSE PE (popcount of the literals) and the BiSE PE array
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bise_project(tmp_path_factory):
    """A random BiSE network (full, one-input and random structuring elements), exported at PE 2: (net, project)."""
    from random_nets import random_bise_net

    net = random_bise_net(seed=7)
    return net, verilog.export(net, tmp_path_factory.mktemp("bise_blocks") / "project", pe=2)


@pytest.mark.slow
# The first layer (it reads the input codes) and the logits (no requantization); fc1 lies between the two.
@pytest.mark.parametrize("name", ["conv1", "fc2"])
def test_bise_blocks_match_their_reference(bise_project, tmp_path_factory, name):
    net, project = bise_project
    layer = next(entry for entry in net.layers if entry["name"] == name)
    bench = block_runner.build_bise_blocks(project, name, tmp_path_factory.mktemp("bise_builds"))
    results = block_runner.run(bench, seed=5)
    assert failures(results) == []
    for test in ("bise_pe", "bise_array"):
        assert results[test].detail["steps"] >= 2000
        # The all-true runs reach |S_o| of the full structuring element: the top of C's range.
        assert results[test].detail["largest_acc"] == layer["ranges"]["C"][1] == results[test].detail["acc_max"]
    assert results["bise_array"].detail["lanes"] == block_runner.ARRAY_PE


@pytest.mark.slow
def test_a_broken_bise_pe_makes_the_bench_fail_naming_block_layer_and_step(bise_project, tmp_path):
    _, project = bise_project
    copy = tmp_path / "project"
    shutil.copytree(project, copy)
    source = copy / "rtl" / "lib" / "bmhw_bise_pe.v"
    text = source.read_text()
    assert text.count("(x ^ neg) & se") == 1
    source.write_text(text.replace("(x ^ neg) & se", "x & se"))  # the complemented inputs forgotten
    bench = block_runner.build_bise_blocks(copy, "fc1", tmp_path / "builds")
    result = block_runner.run(bench, ["bise_pe"], seed=1)["bise_pe"]
    assert not result.passed
    assert result.message.startswith("block bmhw_bise_pe, layer fc1: step ")
    assert result.detail["rtl"] != result.detail["reference"]


@pytest.mark.parametrize("name", ["conv1", "fc2"])
def test_the_bise_harness_passes_verilator_lint(bise_project, name):
    _, project = bise_project
    assert block_runner.lint(project, name, block_runner.BISE_BLOCKS_TB) == []
