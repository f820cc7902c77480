"""The cost model of grouped BM layers (several maxima per output; bmhw_bm_group_layer): its extra hardware by hand,
`bmhw gates` on a grouped .bmq, and (slow) Yosys on the grouped PE and layer against the model."""

from __future__ import annotations

import pytest

from bmhw.backends import verilog
from bmhw.backends.verilog import bm_groups
from bmhw.cost import network, synth, units
from bmhw.ir.groups import is_grouped
from cli_runner import run_main
from golden_specs import GROUPED_SPECS, quantize_spec


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    # 1s, 3, K, 2s: a sign split of one group, contiguous groups, one group per input, two split groups.
    folder = tmp_path_factory.mktemp("grouped")
    _, net, path, _ = quantize_spec(GROUPED_SPECS[1], folder)
    return net, path


@pytest.mark.parametrize("pe", [1, 3])
def test_grouped_layer_cost_by_hand(grouped, pe):
    net, _ = grouped
    for layer, name, layer_pe in zip(net.layers, verilog.layer_names(net), verilog.layer_pes(net, pe)):
        if layer_pe is None:
            continue
        assert is_grouped(layer)
        row = network.layer_costs(net, layer, name, layer_pe)["bm15"]
        cost = row.cost
        p = verilog.layer_plan(net, layer, name, layer_pe)["params"]
        lanes = bm_groups.exp_lanes(layer, layer_pe)
        k, o = int(layer["fan_in"]), int(layer["out_count"])
        folds = -(-o // layer_pe)
        m_w, d_w, spe = p["M_W"], p["D_W"], lanes["SPE"]
        exp_units = lanes["CLUSTERS"] * lanes["LPC"]
        # Tables: ln, weights with their sign bits, group ends, window, bias, and one exp table per exp unit.
        word = layer_pe * p["WT_W"] + (layer_pe if lanes["SPLIT"] else 0)
        assert cost.rom_bits == ((1 << p["Q_W"]) * p["LN_W"] + folds * k * word + k + k * p["LN_W"]
                                 + folds * layer_pe * p["B_W"] + exp_units * (1 << p["F"]) * p["EXP_W"])
        assert cost.units[f"rom {1 << p['F']}x{p['EXP_W']}b"] == exp_units
        # Flip-flops: per PE its maxima (and valid bits), the pairs' hold, its D in the ring and the drain's hold;
        # per cluster the running sum of a PE's two rows (two slots per PE, one exp unit).
        pe_ff = m_w + 1 if lanes["MERGE"] else spe * m_w + (2 if lanes["SPLIT"] else 0)
        per_pe = pe_ff + spe * (m_w + 2) + 2 * d_w
        running = lanes["CLUSTERS"] * d_w if spe == 2 and lanes["LPC"] == 1 else 0
        delay = (lanes["ROWS"] + 5) * (1 + p["OUT_AW"] + max(1, (folds * layer_pe - 1).bit_length()) + p["C_W"])
        assert cost.flip_flops == layer_pe * per_pe + running + p["S_W"] + p["Y_W"] + delay
        assert row.pe_cost.flip_flops == pe_ff


def test_a_grouped_layer_costs_more_than_one_max(grouped):
    # The same layer with one max: its plan without the group fields.
    net, _ = grouped
    layer = next(layer for layer in net.layers if layer.get("groups", 1) > 1 and not layer.get("split_sign"))
    plain = {key: value for key, value in layer.items() if key not in ("groups", "split_sign")}
    plain["ranges"] = {**layer["ranges"]}
    plain["widths"] = {**layer["widths"]}
    name = verilog.layer_names(net)[net.layers.index(layer)]
    one = network.layer_costs(net, plain, name, 1)["bm15"].cost
    several = network.layer_costs(net, layer, name, 1)["bm15"].cost
    assert several.gate_equivalents > one.gate_equivalents
    assert several.rom_bits == one.rom_bits + int(layer["fan_in"])  # the group-end ROM, K bits


def test_cli_gates_of_a_grouped_network(grouped, tmp_path):
    _, path = grouped
    code, out, err = run_main(["gates", path, "--pe", "2", "--csv", tmp_path / "g.csv"])
    assert code == 0, err
    assert "BM 1.5-branch" in out and (tmp_path / "g.csv").is_file()


@pytest.mark.slow
def test_yosys_counts_the_grouped_pe_and_layer_close_to_the_model(grouped, tmp_path):
    net, _ = grouped
    pes = verilog.layer_pes(net, 2)
    rows = synth.synth_blocks(verilog.export(net, tmp_path / "rtl", pe=2), net, pes, whole=False)
    by = {(row["block"], row["kind"]): row for row in rows}
    first = verilog.layer_names(net)[0]
    pe_row, layer_row = by[f"{first} PE", "bm15"], by[f"{first} layer", "bm15"]
    assert layer_row["module"] == "bmhw_bm_group_layer" and pe_row["module"] == "bmhw_addmax_group_pe"
    assert pe_row["generic"].flip_flops == pe_row["analytical"].flip_flops
    assert 0.6 <= pe_row["generic"].gates / pe_row["analytical"].gates <= 1.4
    model = layer_row["analytical"].gates + units.GATES_PER_ROM_BIT * layer_row["analytical"].rom_bits
    assert 0.5 <= layer_row["generic"].gates / model <= 1.5
