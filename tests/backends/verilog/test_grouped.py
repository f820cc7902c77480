"""Grouped BM layers (several maxima per output) in the Verilog backend: the exp units never stall the PEs at any PE
setting, the weight ROM carries the signs and group ends, the one-max projects are untouched, the RTL is lint-clean,
and (slow) every grouped spec simulates bit-exactly in every layer buffer at PE 1 and 3 with the analytical cycle
count; a corrupted exp or weight table is caught."""

from __future__ import annotations

import numpy as np
import pytest

from bmhw.backends import verilog
from bmhw.backends.verilog import bm_groups, rtlsim
from bmhw.ir.groups import group_starts, is_grouped
from golden_specs import GROUPED_IDS, GROUPED_SPECS, quantize_spec
from test_verilog import lint

# Beyond GROUPED_SPECS: two PE clusters of which the last is partial (K 8 in 4 groups), a sign split whose shortest
# group is one input beside longer ones (K 5 in 3: two exp units per PE), several PEs sharing one exp unit
# (K 36 in 6 split groups), mirrored outputs.
LANES_SPEC = {"seed": 21, "in": (2, 4, 4), "convs": [(5, 2, 1, 0, 0), (5, 1, 1, 0, 0)], "linears": [6, 3],
              "act_bits": 6, "log_frac_bits": 6, "calib_max": 255, "input_seed": 7, "signed": True,
              "maxima": ["4", "3s", "6s", "2"]}


def grouped_layers(net):
    return [layer for layer in net.layers if "fan_in" in layer and is_grouped(layer)]


@pytest.mark.parametrize("pe", [1, 2, 3, 4, 5, 8, 16, 120])
@pytest.mark.parametrize("k,n,split", [(25, 1, True), (150, 6, True), (256, 24, True), (84, 84, True), (5, 3, True),
                                       (8, 4, False), (3, 3, False), (18, 7, False), (2, 1, True), (1, 1, True)])
def test_exp_units_are_free_again_before_the_next_group_ends(k, n, split, pe):
    layer = {"fan_in": k, "groups": n, "split_sign": split}
    pe = min(pe, k)
    lanes = bm_groups.exp_lanes(layer, pe)
    shortest = min(np.diff(group_starts(k, n)))
    # Each cluster takes ROWS cycles per group and is loaded again only after the next group: no stall.
    assert lanes["ROWS"] <= shortest
    assert lanes["ROWS"] * lanes["LPC"] == lanes["PPL"] * lanes["SPE"]
    assert (lanes["CLUSTERS"] - 1) * lanes["PPL"] < pe <= lanes["CLUSTERS"] * lanes["PPL"]
    assert lanes["MERGE"] == int(split and n == k)
    assert lanes["LPC"] == (2 if split and n < k and shortest == 1 else 1)


def test_the_example_keeps_one_exp_unit_per_layer_at_pe_1(tmp_path):
    # LeNet with 1s, 6s, 24s, 12s and Ks maxima: a group's exp fits in the shortest group at PE 1.
    spec = {"fan_in": 150, "groups": 6, "split_sign": True}
    assert bm_groups.exp_units(spec, 1) == 1 and bm_groups.exp_units(spec, 16) == 2
    assert bm_groups.exp_units({"fan_in": 84, "groups": 84, "split_sign": True}, 10) == 10


@pytest.mark.parametrize("spec", GROUPED_SPECS + [LANES_SPEC], ids=GROUPED_IDS + ["lanes"])
@pytest.mark.parametrize("pe", [1, 3])
def test_grouped_rtl_passes_verilator_lint_with_all_warnings(spec, pe, tmp_path):
    _, net, _, _ = quantize_spec(spec, tmp_path)
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    code, output = lint(project)
    assert code == 0 and "%Warning" not in output, output
    top = (project / "rtl" / "bmhw_net.v").read_text()
    assert top.count("bmhw_bm_group_layer #(") == len(grouped_layers(net))


def test_weight_rom_holds_log_weights_and_signs_and_the_group_ends_their_own_rom(tmp_path):
    _, net, _, _ = quantize_spec(LANES_SPEC, tmp_path)
    pe = 2
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    names = verilog.layer_names(net)
    for layer, name in zip(net.layers, names):
        if "fan_in" not in layer:
            continue
        k, o = int(layer["fan_in"]), int(layer["out_count"])
        wt_w = verilog.layer_plan(net, layer, name, pe)["params"]["WT_W"]
        split = bool(layer.get("split_sign"))
        words = [int(line, 16) for line in (project / "mem" / f"{name}_w.mem").read_text().split()]
        folds = -(-o // pe)
        assert len(words) == folds * k
        ends = set(np.asarray(group_starts(k, int(layer.get("groups", 1)))[1:]) - 1)
        w = net.table(layer, "log_weights")
        sign = net.table(layer, "weight_sign") if split else np.ones_like(w)
        group_last = [int(line, 16) for line in (project / "mem" / f"{name}_gl.mem").read_text().split()]
        assert group_last == [int(step in ends) for step in range(k)]
        for address, word in enumerate(words):
            fold, step = divmod(address, k)
            assert word >> (pe * wt_w + (pe if split else 0)) == 0
            for lane in range(pe):
                out = fold * pe + lane
                field = (word >> (lane * wt_w)) & ((1 << wt_w) - 1)
                value = field - (1 << wt_w) if field >> (wt_w - 1) else field
                assert value == (w[out, step] if out < o else 0)
                if split:
                    assert (word >> (pe * wt_w + lane)) & 1 == int(out < o and sign[out, step] < 0)


def test_one_max_projects_carry_no_grouped_blocks(tmp_path):
    from bmhw.ir import load_bmq
    from bmhw.resources import examples_dir

    lenet = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    files = (verilog.export(lenet, tmp_path / "one") / "files.f").read_text()
    assert "bmhw_bm_group_layer" not in files and "bmhw_group_exp" not in files
    _, net, _, _ = quantize_spec(GROUPED_SPECS[1], tmp_path)
    files = (verilog.export(net, tmp_path / "grouped") / "files.f").read_text()
    assert all(f"rtl/lib/{name}" in files for name in bm_groups.LIBRARY)


def test_grouped_cycle_model(tmp_path):
    _, net, _, _ = quantize_spec(LANES_SPEC, tmp_path)
    pes = verilog.layer_pes(net, 3)
    rows = {row["layer"]: row for row in verilog.cycle_model(net, pes)}
    for layer, name, pe in zip(net.layers, verilog.layer_names(net), pes):
        if pe is None:
            continue
        row, lanes = rows[name], bm_groups.exp_lanes(layer, pe)
        last = int(layer["out_count"]) - (row["folds"] - 1) * pe
        assert row["cycles"] == row["positions"] * row["folds"] * row["k"] + last + 13 + lanes["ROWS"]


# ---------------------------------------------------------------------------------------------------
# Simulation (Verilator + cocotb)
# ---------------------------------------------------------------------------------------------------


def simulate(net, project, codes, pe):
    result = rtlsim.run(project, codes.astype(np.uint8))
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == len(codes)
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, pe))["total"]
    assert result.cycles == [expected] * len(codes)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("spec", GROUPED_SPECS + [LANES_SPEC], ids=GROUPED_IDS + ["lanes"])
@pytest.mark.parametrize("pe", [1, 3])
def test_grouped_network_is_bit_exact_in_every_layer_with_the_analytical_cycle_count(spec, pe, tmp_path):
    _, net, _, codes = quantize_spec(spec, tmp_path)
    simulate(net, verilog.export(net, tmp_path / "rtl", pe=pe), codes, pe)


@pytest.mark.slow
def test_corrupted_exp_and_weight_tables_are_caught(tmp_path):
    _, net, _, codes = quantize_spec(LANES_SPEC, tmp_path)
    pe = 2
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    simulate(net, project, codes, pe)  # builds the harness; the tables are read when each simulation starts
    layers = {name: layer for layer, name in zip(net.layers, verilog.layer_names(net)) if "fan_in" in layer}
    exp_layer, sign_layer = list(layers)[1], list(layers)[2]  # a split layer with two exp units per PE; 6s
    wt_w = verilog.layer_plan(net, layers[sign_layer], sign_layer, pe)["params"]["WT_W"]
    signs = ((1 << pe) - 1) << (pe * wt_w)
    for table, name, corrupt in (("exp", exp_layer, lambda v: v // 2),  # every exp entry halved
                                 ("w", sign_layer, lambda v: v ^ signs)):  # every weight's sign flipped
        mem = project / "mem" / f"{name}_{table}.mem"
        original = mem.read_text()
        lines = original.split()
        try:
            mem.write_text("".join(f"{corrupt(int(v, 16)):0{len(v)}x}\n" for v in lines))
            result = rtlsim.run(project, codes.astype(np.uint8))
        finally:
            mem.write_text(original)
        assert not result.passed and result.mismatch["layer"] == name, (table, result.mismatch)
        assert f"layer {name} index" in result.mismatch["message"]
    simulate(net, project, codes, pe)  # the tables restored: bit-exact again
