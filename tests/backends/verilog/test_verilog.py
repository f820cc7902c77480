"""The Verilog backend (bmhw.backends.verilog): a complete, lint-clean, deterministic and atomic project,
ROM files that hold the IR's tables, and the analytical cycle model. The simulations are in test_rtlsim.py."""

from __future__ import annotations

import numpy as np
import pytest

from bmhw import ir as bmhw_ir
from bmhw.backends import verilog
from bmhw.backends.verilog import rtlsim
from bmhw.backends.verilog import adder as verilog_adder
from bmhw.backends.verilog import bise as verilog_bise
from bmhw.backends.verilog import bm as verilog_bm
from bmhw.backends.verilog import mac as verilog_mac
from bmhw.cost import synth
from bmhw.errors import BmhwError
from bmhw.ir import load_bmq
from bmhw.resources import examples_dir
from cli_runner import run_main
from random_nets import random_images
from random_nets import random_adder_net, random_bise_net


@pytest.fixture(scope="module")
def lenet():
    return load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lint(project):
    """verilator --lint-only -Wall on the whole project, as Verilog-2005: (return code, output)."""
    return rtlsim.lint(project, "bmhw_net", (project / "files.f").read_text().split(),
                       options=("--default-language", "1364-2005"))


def read_mem(path, bits, signed=True):
    values = [int(line, 16) for line in path.read_text().split()]
    if signed:
        values = [v - (1 << bits) if v >> (bits - 1) else v for v in values]
    return np.array(values, dtype=np.int64)


def test_export_writes_a_complete_project(lenet, tmp_path):
    project = verilog.export(lenet, tmp_path / "rtl")
    files = files_of(project)
    for rel in ("rtl/bmhw_net.v", "rtl/lib/bmhw_bm_layer.v", "rtl/lib/bmhw_addmax_pe.v", "rtl/lib/bmhw_exp_shift.v",
                "rtl/lib/bmhw_maxpool.v", "rtl/lib/bmhw_argmax.v", "mem/conv1_ln.mem", "mem/fc3_w.mem",
                "design.json", "files.f", "README.md", "model.bmq"):
        assert rel in files, rel
    top = files["rtl/bmhw_net.v"].decode()
    for instance in ("u_conv1", "u_pool1", "u_conv2", "u_pool2", "u_fc1", "u_fc2", "u_fc3", "u_argmax"):
        assert instance in top
    assert "u_flatten" not in top  # flatten reads the pooled buffer in place


@pytest.mark.parametrize("pe", [1, 5])
def test_rtl_passes_verilator_lint_with_all_warnings(lenet, tmp_path, pe):
    project = verilog.export(lenet, tmp_path / "rtl", pe=pe, pe_layers={"fc1": 120} if pe > 1 else None)
    code, output = lint(project)
    assert code == 0 and "%Warning" not in output, output


def test_random_network_rtl_passes_lint(tmp_path):
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 3, "in": (2, 7, 6), "convs": [(3, 3, 2, 1, 0), (2, 1, 1, 0, 2)], "linears": [4, 3]}
    net = quantize(build_sequential(spec), random_images(16, shape=(2, 7, 6), seed=3), act_bits=4, log_frac_bits=5)
    code, output = lint(verilog.export(net, tmp_path / "rtl", pe=2))
    assert code == 0 and "%Warning" not in output, output


def test_rom_files_hold_the_ir_tables(lenet, tmp_path):
    project = verilog.export(lenet, tmp_path / "rtl", pe=4)
    for layer in lenet.bm_layers():
        name, plan = layer["name"], verilog_bm.plan(lenet, layer, layer["name"], 4)["params"]
        ln = lenet.table(layer, "ln_lut")
        assert np.array_equal(read_mem(project / f"mem/{name}_ln.mem", plan["LN_W"])[:len(ln)], ln)
        assert np.array_equal(read_mem(project / f"mem/{name}_exp.mem", plan["EXP_W"], signed=False),
                              lenet.table(layer, "exp_lut"))
        bias, b_w = lenet.table(layer, "bias"), plan["B_W"]
        words = [int(line, 16) for line in (project / f"mem/{name}_b.mem").read_text().split()][:len(bias)]
        # A layer with mirrored outputs carries each output's sign as one bit above its bias (NEG = 1).
        signs = lenet.signs(layer)
        negative = np.array([w >> b_w for w in words])
        assert np.array_equal(negative, np.zeros(len(bias)) if signs is None else (signs < 0).astype(int))
        assert plan.get("NEG", 0) == (0 if signs is None else 1)
        low = np.array([w & ((1 << b_w) - 1) for w in words])
        assert np.array_equal(low - (1 << b_w) * (low >> (b_w - 1)), bias)
        # Weight word (fold, k) holds W[fold * PE + lane, k] in lane order, lane 0 in the low bits.
        w, wt = lenet.table(layer, "log_weights"), plan["WT_W"]
        words = [int(line, 16) for line in (project / f"mem/{name}_w.mem").read_text().split()]
        k = w.shape[1]
        for o in (0, w.shape[0] - 1):
            word = words[(o // 4) * k + (k - 1)]
            lane = (word >> ((o % 4) * wt)) & ((1 << wt) - 1)
            assert lane - (1 << wt) * (lane >> (wt - 1)) == w[o, k - 1]


def test_export_is_deterministic_and_replaces_atomically(lenet, tmp_path):
    first = files_of(verilog.export(lenet, tmp_path / "a", pe=3))
    assert files_of(verilog.export(lenet, tmp_path / "b", pe=3)) == first
    verilog.export(lenet, tmp_path / "a", pe=3)  # an existing project is replaced
    assert files_of(tmp_path / "a") == first
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BmhwError, match="not a bmhw Verilog project"):
        verilog.export(lenet, tmp_path / "other")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cycle_model_by_hand(lenet):
    # LeNet at one PE per layer, counted by hand from the schedules in docs/verilog.md:
    # input 784; conv1 24*24 positions * 6 folds * 25 + 1 + 11; pool1 6*12*12*4 + 4; conv2 8*8 * 16 * 150 + 1 + 11;
    # pool2 16*4*4*4 + 4; fc1 120 * 256 + 12; fc2 84 * 120 + 12; fc3 10 * 84 + 12; arg-max 10 + 2 + 1.
    expected = 784 + (576 * 6 * 25 + 12) + (3456 + 4) + (64 * 16 * 150 + 12) + (1024 + 4) + (120 * 256 + 12) \
        + (84 * 120 + 12) + (10 * 84 + 12) + 13
    pes = verilog.layer_pes(lenet)
    assert verilog.cycle_summary(lenet, pes)["total"] == expected == 286985
    # PE 7 on fc3: folds 2 of 7 and 3 outputs, so fc3 = 2 * 84 + 3 + 11.
    rows = verilog.cycle_model(lenet, verilog.layer_pes(lenet, 1, {"fc3": 7}))
    assert [r["cycles"] for r in rows if r["layer"] == "fc3"] == [2 * 84 + 3 + 11]


def test_pe_is_capped_at_outputs_and_fan_in(lenet):
    pes = verilog.layer_pes(lenet, 500)
    assert pes == [6, None, 16, None, None, 120, 84, 10]
    with pytest.raises(BmhwError, match="no weight layer named 'pool1'"):
        verilog.layer_pes(lenet, 1, {"pool1": 2})


def test_cli_export_verilog_prints_the_cycle_model(tmp_path):
    code, out, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.bmq", "--target", "verilog", "-o",
                               tmp_path / "rtl", "--pe", "2", "--pe", "fc1=8"])
    assert code == 0, err
    total = verilog.cycle_summary(load_bmq(examples_dir() / "lenet_bm15_mnist.bmq"),
                                  [2, None, 2, None, None, 8, 2, 2])["total"]
    assert f"total: {total} cycles per image" in out
    assert "bmhw sim" in out and (tmp_path / "rtl/rtl/bmhw_net.v").is_file()


def test_cli_export_verilog_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.bmq"
    bad.write_bytes(b"not a zip")
    code, out, err = run_main(["export", bad, "--target", "verilog", "-o", tmp_path / "rtl"])
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "rtl").exists()


@pytest.mark.slow
def test_rtl_synthesizes_with_yosys_and_has_no_multiplier(tmp_path):
    # Yosys elaborates and synthesizes the design (ROMs from the mem files, read from the project folder);
    # `check -assert` fails on multiple drivers, combinational loops or undriven wires; before techmap,
    # not one $mul / $div / $mod cell: the datapath is adds, compares, shifts and lookups.
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 5, "in": (1, 6, 6), "convs": [(2, 3, 1, 1, 2)], "linears": [3]}
    net = quantize(build_sequential(spec), random_images(16, shape=(1, 6, 6), seed=5), act_bits=4, log_frac_bits=5)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    sources = " ".join((project / "files.f").read_text().split())
    script = (f"read_verilog {sources}; hierarchy -check -top bmhw_net; proc; flatten; opt; "
              "select -assert-none t:$mul t:$div t:$mod t:$pow; synth -top bmhw_net; check -assert; stat")
    # A Yosys failure (an assertion included) raises BmhwError with its first error line.
    log = synth.run_yosys(script, project, timeout=900)
    assert "Number of cells" in log or "cells" in log


def test_a_network_without_log_fraction_bits_is_refused(tmp_path):
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 2, "in": (1, 5, 5), "convs": [(2, 3, 1, 0, 0)], "linears": [3]}
    net = quantize(build_sequential(spec), random_images(16, shape=(1, 5, 5), seed=2), log_frac_bits=0)
    with pytest.raises(BmhwError, match="F >= 1 log-domain fraction bits"):
        verilog.export(net, tmp_path / "rtl")
    assert not (tmp_path / "rtl").exists()


# ---------------------------------------------------------------------------------------------------
# The MAC twin: the same architecture with multiply-accumulate PEs
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin():
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.quant import quantize_classical

    model = load_checkpoint(examples_dir() / "lenet_classical_mnist.pt").model
    return quantize_classical(model, load_mnist_sample()[0][:100])


@pytest.mark.parametrize("pe", [1, 5])
def test_mac_twin_passes_verilator_lint_with_all_warnings(twin, tmp_path, pe):
    code, output = lint(verilog.export(twin, tmp_path / "rtl", pe=pe))
    assert code == 0 and "%Warning" not in output, output


def test_mac_twin_shares_the_architecture_of_the_bm_network(lenet, twin, tmp_path):
    # Identical buffers (names and depths), blocks and instance names; only the layer module differs.
    bm, mac = verilog.build_context(lenet, pe=4)[0], verilog.build_context(twin, pe=4)[0]
    assert [(b["name"], b["depth"]) for b in bm["buffers"]] == [(b["name"], b["depth"]) for b in mac["buffers"]]
    assert [b["inst"] for b in bm["blocks"]] == [b["inst"] for b in mac["blocks"]]
    modules = {(b["module"], m["module"]) for b, m in zip(bm["blocks"], mac["blocks"])}
    assert modules == {("bmhw_bm_layer", "bmhw_mac_layer"), ("bmhw_maxpool", "bmhw_maxpool")}
    assert bm["pes"] == mac["pes"]
    shape_keys = ("IN_H", "IN_W", "OUT_H", "OUT_W", "KH", "KW", "SH", "SW", "PH", "PW", "K", "O", "PE", "IN_AW", "OUT_AW")
    for b, m in zip(bm["blocks"], mac["blocks"]):
        if b["module"] == "bmhw_bm_layer":
            assert [kv for kv in b["params"] if kv[0] in shape_keys] == [kv for kv in m["params"] if kv[0] in shape_keys]
    top = (verilog.export(twin, tmp_path / "rtl") / "rtl" / "bmhw_net.v").read_text()
    assert top.count("bmhw_mac_layer #(") == 5 and "bmhw_bm_layer" not in top


def test_mac_twin_rom_files_hold_the_ir_tables(twin, tmp_path):
    project = verilog.export(twin, tmp_path / "rtl", pe=3)
    for layer in twin.weight_layers():
        name, plan = layer["name"], verilog_mac.plan(twin, layer, layer["name"], 3)["params"]
        bias = twin.table(layer, "bias")
        assert np.array_equal(read_mem(project / f"mem/{name}_b.mem", plan["B_W"])[:len(bias)], bias)
        w, wt = twin.table(layer, "weights"), plan["WT_W"]
        words = [int(line, 16) for line in (project / f"mem/{name}_w.mem").read_text().split()]
        k = w.shape[1]
        assert len(words) == -(-w.shape[0] // 3) * k
        for o in range(w.shape[0]):
            for step in (0, k - 1):
                lane = (words[(o // 3) * k + step] >> ((o % 3) * wt)) & ((1 << wt) - 1)
                assert lane - (1 << wt) * (lane >> (wt - 1)) == w[o, step]


def test_mac_cycle_model_by_hand(twin):
    rows = {r["layer"]: r["cycles"] for r in verilog.cycle_model(twin, verilog.layer_pes(twin, 4))}
    # positions * folds * K + outputs of the last fold + 8 (no exp pipeline: 3 cycles fewer than BM's 11)
    assert rows["conv1"] == 576 * 2 * 25 + 2 + 8
    assert rows["fc1"] == 1 * 30 * 256 + 4 + 8
    assert rows["fc3"] == 1 * 3 * 84 + 2 + 8


@pytest.mark.slow
def test_mac_twin_synthesizes_with_one_multiplier_per_pe(tmp_path):
    # The twin really multiplies: before techmap, exactly one $mul cell per MAC PE (and no other).
    from bmhw.quant import quantize_classical
    from conftest import build_sequential

    spec = {"seed": 5, "in": (1, 6, 6), "convs": [(2, 3, 1, 1, 2)], "linears": [3]}
    net = quantize_classical(build_sequential(spec, classical=True), random_images(16, shape=(1, 6, 6), seed=5),
                             act_bits=4, weight_bits=5)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    sources = " ".join((project / "files.f").read_text().split())
    script = (f"read_verilog {sources}; hierarchy -check -top bmhw_net; proc; flatten; opt; "
              "select -assert-count 4 t:$mul; select -assert-none t:$div t:$mod t:$pow; synth -top bmhw_net; "
              "check -assert; stat")
    log = synth.run_yosys(script, project, timeout=900)
    assert "cells" in log


# ---------------------------------------------------------------------------------------------------
# AdderNet layers (docs/datapath.md, "The adder layer")
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adder_net():
    return random_adder_net(seed=3)


@pytest.mark.parametrize("pe", [1, 3])
def test_adder_network_passes_verilator_lint_with_all_warnings(adder_net, tmp_path, pe):
    code, output = lint(verilog.export(adder_net, tmp_path / "rtl", pe=pe))
    assert code == 0 and "%Warning" not in output, output
    extreme = random_adder_net(seed=5, extreme=True, scale_bits=16, act_bits=8)
    code, output = lint(verilog.export(extreme, tmp_path / "extreme", pe=pe))
    assert code == 0 and "%Warning" not in output, output


def test_adder_network_shares_the_architecture_and_writes_its_tables(adder_net, tmp_path):
    context = verilog.build_context(adder_net, pe=2)[0]
    modules = [b["module"] for b in context["blocks"]]
    assert modules == ["bmhw_adder_layer", "bmhw_adder_layer", "bmhw_maxpool", "bmhw_adder_layer", "bmhw_adder_layer"]
    project = verilog.export(adder_net, tmp_path / "rtl", pe=2)
    top = (project / "rtl" / "bmhw_net.v").read_text()
    assert top.count("bmhw_adder_layer #(") == 4 and "bmhw_mac_layer" not in top
    adder_layers = [layer for layer in adder_net.layers if layer["op"] in bmhw_ir.ADDER_OPS]
    assert len(adder_layers) == 4
    for layer in adder_layers:
        name = layer["name"]
        params = verilog_adder.plan(adder_net, layer, name, 2)["params"]
        for table, rom, bits in (("scale", "m", params["MUL_W"]), ("bias", "b", params["B_W"])):
            values = adder_net.table(layer, table)
            assert np.array_equal(read_mem(project / f"mem/{name}_{rom}.mem", bits)[:len(values)], values), table
        w, wt = adder_net.table(layer, "weights"), params["WT_W"]
        words = [int(line, 16) for line in (project / f"mem/{name}_w.mem").read_text().split()]
        k = w.shape[1]
        for o in range(w.shape[0]):
            for step in (0, k - 1):
                lane = (words[(o // 2) * k + step] >> ((o % 2) * wt)) & ((1 << wt) - 1)
                assert lane - (1 << wt) * (lane >> (wt - 1)) == w[o, step]
        # The widths are the IR's proven ones (D signed, |D| and ACC unsigned).
        assert params["ACC_W"] == layer["widths"]["ACC"] and params["ABS_W"] == layer["widths"]["ABS"]
        assert params["OUT_SHIFT"] == (layer["R"] if layer["relu"] else 0)
    assert files_of(project) == files_of(verilog.export(adder_net, tmp_path / "again", pe=2))  # deterministic


def test_adder_cycle_model_by_hand(adder_net):
    rows = {r["layer"]: r for r in verilog.cycle_model(adder_net, verilog.layer_pes(adder_net, 2))}
    # positions * folds * K + outputs of the last fold + 10 (the MAC's 8, a multiplier input and a product register)
    assert rows["conv1"]["cycles"] == 4 * 3 * 2 * 18 + 1 + 10
    assert rows["conv2"]["cycles"] == 4 * 3 * 2 * 3 + 2 + 10  # a 1 x 1 convolution: K = 3, PE capped at 2
    assert rows["fc2"]["cycles"] == 1 * 2 * 5 + 1 + 10


def test_an_adder_layer_with_a_negative_shift_is_refused(tmp_path):
    net = random_adder_net(seed=3)
    net.layers[0]["R"] = -1
    with pytest.raises(BmhwError, match="layer conv1: the requantization shift R=-1 is negative"):
        verilog.export(net, tmp_path / "rtl")


@pytest.mark.slow
def test_adder_network_synthesizes_with_one_multiplier_per_layer_and_none_in_the_pes(tmp_path):
    # The PEs subtract, take |.| and accumulate: the only $mul cells are the shared MUL * ACC, one per layer.
    net = random_adder_net(seed=9, in_shape=(1, 6, 6), convs=((2, 3, 1, 1, 2),), linears=(3,), act_bits=4)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    sources = " ".join((project / "files.f").read_text().split())
    script = (f"read_verilog {sources}; hierarchy -check -top bmhw_net; proc; flatten; opt; "
              "select -assert-count 2 t:$mul; select -assert-none t:$div t:$mod t:$pow; synth -top bmhw_net; "
              "check -assert; stat")
    log = synth.run_yosys(script, project, timeout=900)
    assert "cells" in log


# ---------------------------------------------------------------------------------------------------
# Binarised BiSE networks (docs/datapath.md, "The BiSE layer"; docs/verilog.md, "BiSE networks")
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bise_net():
    return random_bise_net(seed=3)


@pytest.mark.parametrize("pe", [1, 3])
def test_bise_network_passes_verilator_lint_with_all_warnings(bise_net, tmp_path, pe):
    code, output = lint(verilog.export(bise_net, tmp_path / "rtl", pe=pe))
    assert code == 0 and "%Warning" not in output, output
    # One-input structuring elements everywhere: C and its counter are 1 bit wide.
    narrow = random_bise_net(seed=4, convs=((2, 1, 1, 0, 0),), linears=(2,), density=0.0)
    code, output = lint(verilog.export(narrow, tmp_path / "narrow", pe=pe))
    assert code == 0 and "%Warning" not in output, output


def test_bise_network_shares_the_architecture_and_writes_its_tables(bise_net, tmp_path):
    context = verilog.build_context(bise_net, pe=2)[0]
    modules = [b["module"] for b in context["blocks"]]
    assert modules == ["bmhw_bise_layer", "bmhw_maxpool", "bmhw_bise_layer", "bmhw_bise_layer", "bmhw_bise_layer"]
    # binarize is folded into the first layer: it reads the 8-bit image, the others 1-bit codes.
    assert [b["width"] for b in context["buffers"]] == [8, 1, 1, 1, 1, 4]
    project = verilog.export(bise_net, tmp_path / "rtl", pe=2)
    top = (project / "rtl" / "bmhw_net.v").read_text()
    assert top.count("bmhw_bise_layer #(") == 4 and ".BINARIZE(1)" in top and ".THRESH(128)" in top
    assert "rtl/lib/bmhw_bise_pe.v" in (project / "files.f").read_text()
    for layer in (entry for entry in bise_net.layers if entry["op"] in bmhw_ir.BISE_OPS):
        name = layer["name"]
        params = verilog_bise.plan(bise_net, layer, name, 2)["params"]
        se, op, neg = (bise_net.table(layer, t) for t in ("se", "op", "neg"))
        assert params["ACC_W"] == layer["widths"]["C"] and params["SCORES"] == int(layer["scores"])
        words = [int(line, 16) for line in (project / f"mem/{name}_w.mem").read_text().split()]
        k = se.shape[1]
        for o in range(se.shape[0]):
            for step in range(k):
                lane = (words[(o // 2) * k + step] >> ((o % 2) * 2)) & 3
                assert lane == 2 * se[o, step] + neg[o, step]
        if layer["scores"]:
            assert not (project / f"mem/{name}_t.mem").exists()
        else:
            th = read_mem(project / f"mem/{name}_t.mem", params["ACC_W"], signed=False)[:len(op)]
            assert np.array_equal(th, np.where(op == 1, se.sum(axis=1), 1))
    assert files_of(project) == files_of(verilog.export(bise_net, tmp_path / "again", pe=2))  # deterministic


def test_bise_blocks_go_only_into_bise_projects(lenet, tmp_path):
    project = verilog.export(lenet, tmp_path / "rtl")
    assert not list((project / "rtl" / "lib").glob("bmhw_bise_*")) and "bise" not in (project / "files.f").read_text()


def test_bise_cycle_model_by_hand(bise_net):
    rows = {r["layer"]: r for r in verilog.cycle_model(bise_net, verilog.layer_pes(bise_net, 2))}
    # positions * folds * K + outputs of the last fold + 8 (the MAC layer's schedule); binarize costs nothing
    assert rows["binarize"]["cycles"] == 0
    assert rows["conv1"]["cycles"] == 7 * 6 * 2 * 9 + 1 + 8
    assert rows["conv2"]["cycles"] == 2 * 2 * 2 * 27 + 2 + 8
    assert rows["fc2"]["cycles"] == 1 * 2 * 5 + 1 + 8


def test_bise_networks_the_backend_cannot_build_are_refused(tmp_path):
    net = random_bise_net(seed=3)
    net.layers[-1]["scores"] = False
    with pytest.raises(BmhwError, match="the last layer must be the BiSE scores layer"):
        verilog.export(net, tmp_path / "rtl")
    net = random_bise_net(seed=3)
    with pytest.raises(BmhwError, match="no weight layer named 'pool1'"):
        verilog.export(net, tmp_path / "rtl", pe_layers={"pool1": 2})
