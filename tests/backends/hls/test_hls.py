"""The Vitis HLS backend (bmhw.backends.hls) and its C-simulation (bmhw.backends.hls.csim): bit-exact against
the golden model, deterministic, atomic, and a testbench that can fail. Needs g++ and hls4ml's headers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmhw import golden
from bmhw.backends import hls
from bmhw.backends.hls import csim
from bmhw.data import load_dataset
from bmhw.errors import BmhwError
from bmhw.ir import load_bmq
from bmhw.resources import examples_dir
from cli_runner import assert_one_line_error, run_main
from random_nets import random_images, random_net

IMAGES = 20


@pytest.fixture(scope="module")
def lenet():
    return load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")


@pytest.fixture(scope="module")
def lenet_project(lenet, tmp_path_factory):
    """The example LeNet exported, its vectors for IMAGES sample images written, compiled and run once."""
    project = hls.export(lenet, tmp_path_factory.mktemp("hls") / "lenet")
    images = load_dataset("mnist", None, "test")[0][:IMAGES]
    csim.write_vectors(project, images)
    binary = csim.build(project)
    return project, binary, images, csim.run(project, binary)


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_writes_a_complete_project(lenet_project):
    project = lenet_project[0]
    for rel in ("firmware/bmhw_net.cpp", "firmware/bmhw_net.h", "firmware/parameters.h", "firmware/bmhw_layers.h",
                "firmware/weights/conv1.h", "firmware/weights/fc3.h", "tb/bmhw_tb.cpp", "run_hls.tcl", "README.md",
                "model.bmq"):
        assert (project / rel).is_file(), rel
    params = (project / "firmware/parameters.h").read_text()
    assert "typedef ap_int<16> t_t;" in params and "typedef ap_int<21> result_t;" in params
    assert "#pragma HLS INTERFACE axis" in (project / "firmware/bmhw_net.cpp").read_text()


@pytest.mark.slow
def test_lenet_csim_is_bit_exact(lenet, lenet_project):
    project, _, images, result = lenet_project
    assert result.passed, result.output
    assert (result.images, result.mismatches) == (IMAGES, 0)
    assert np.array_equal(csim.read_result(project), golden.forward(lenet, images))


@pytest.mark.slow
def test_a_corrupted_expected_file_makes_the_testbench_fail(lenet_project, tmp_path):
    project, binary, _, _ = lenet_project
    data = tmp_path / "project"
    shutil.copytree(project / csim.DATA_DIR, data / csim.DATA_DIR)
    path = data / csim.DATA_DIR / "fc3.txt"
    rows = path.read_text().splitlines()
    values = rows[3].split()
    values[7] = str(int(values[7]) + 1)
    rows[3] = " ".join(values)
    path.write_text("\n".join(rows) + "\n")
    result = csim.run(data, binary)
    assert result.returncode == 1 and not result.passed
    assert result.mismatches == 1
    assert "MISMATCH image 3 layer fc3 index 7" in result.output


@pytest.mark.slow
def test_a_corrupted_table_makes_bmhw_csim_fail(lenet, tmp_path):
    project = hls.export(lenet, tmp_path / "lenet")
    header = project / "firmware/weights/fc3.h"
    text = header.read_text()
    start = text.index("fc3_bias[10] = {") + len("fc3_bias[10] = {\n    ")
    end = text.index(",", start)
    header.write_text(text[:start] + str(int(text[start:end]) + 5000) + text[end:])
    code, _, err = run_main(["csim", project, "--images", "3"])
    line = assert_one_line_error(code, err)
    assert "disagrees with the golden model" in line and "mismatches in 3 images" in line
    # Output 0 of fc3 is the corrupted bias's: the testbench finds it first, in the first image.
    assert "the first in layer fc3 index 0 of image 0" in line


def test_the_first_mismatch_is_read_from_the_testbench_output():
    output = ("MISMATCH image 2 layer conv2 index 17: got -3, expected 4\n"
              "MISMATCH image 2 layer fc1 index 0: got 1, expected 0\nbmhw_tb: 5 images checked, 2 mismatches\n")
    result = csim.CsimResult(images=5, mismatches=2, returncode=1, output=output)
    assert result.first_mismatch == {"image": 2, "layer": "conv2", "index": 17, "got": -3, "expected": 4}
    assert csim.CsimResult(5, 0, 0, "bmhw_tb: 5 images checked, 0 mismatches\n").first_mismatch is None


def test_export_is_deterministic(lenet, lenet_project, tmp_path):
    again = hls.export(lenet, tmp_path / "again")
    first = {k: v for k, v in files_of(lenet_project[0]).items() if k.split("/")[0] in ("firmware", "tb")
             or "/" not in k}
    assert files_of(again) == first


def test_export_replaces_a_project_and_fails_atomically(lenet, tmp_path):
    out = tmp_path / "p"
    hls.export(lenet, out)
    hls.export(lenet, out)  # an existing project is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(BmhwError, match="cannot write HLS project"):
        hls.export(lenet, blocker / "sub")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(BmhwError, match="not a bmhw HLS project"):
        hls.export(lenet, tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "other", "p"]


def test_too_wide_signals_are_refused(lenet):
    net = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    net.layers[0]["widths"]["Y"] = 63
    with pytest.raises(BmhwError, match="conv1: signal Y needs 63 bits"):
        hls.build_context(net)


@pytest.mark.slow
def test_a_random_small_network_passes_csim(tmp_path):
    from bmhw.quant import quantize

    net = quantize(random_net(), random_images(32), act_bits=6, log_frac_bits=6)
    project = hls.export(net, tmp_path / "random")
    images = random_images(16, seed=7)
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert result.images == 16
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))
    # IR names such as "0" become C identifiers.
    assert (project / "firmware/weights/layer_0.h").is_file()


def test_csim_errors_are_one_line(tmp_path, monkeypatch, lenet):
    code, _, err = run_main(["csim", tmp_path])
    assert code == 2 and "not an HLS project written by bmhw export" in err
    project = hls.export(lenet, tmp_path / "p")
    monkeypatch.setenv("CXX", "no-such-compiler-bmhw")
    with pytest.raises(BmhwError, match="needs a C\\+\\+17 compiler"):
        csim.build(project)
    monkeypatch.setenv("BMHW_AP_TYPES", str(tmp_path))
    with pytest.raises(BmhwError, match="no ap_int.h"):
        csim.ap_types_dir()


def test_export_cli_on_the_example(tmp_path):
    code, out, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.bmq", "--target", "hls",
                               "-o", tmp_path / "hls"])
    assert code == 0, err
    assert (tmp_path / "hls" / "run_hls.tcl").is_file()
    code, _, err = run_main(["export", tmp_path / "hls" / "README.md", "-o", tmp_path / "x"])
    assert code == 2 and ".bmq" in err


def other_net():
    """Padding, stride 2 without pooling, two channels in, a linear stack; built like test_quant.random_net."""
    import torch
    from torch import nn

    from bmhw.nn import BMConv2d, BMLinear

    torch.manual_seed(3)
    return nn.Sequential(BMConv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), BMLinear(3 * 4 * 4, 5),
                         nn.ReLU(), BMLinear(5, 4)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("options", [dict(act_bits=3, log_frac_bits=0, exp_frac_bits=4, guard_bits=0),
                                     dict(act_bits=12, log_frac_bits=14, exp_frac_bits=30, guard_bits=12)])
def test_extreme_quantization_options_pass_csim(options, tmp_path):
    from bmhw.quant import quantize

    net = quantize(other_net(), random_images(32, shape=(2, 7, 7)), **options)
    project = hls.export(net, tmp_path / "net")
    images = random_images(24, shape=(2, 7, 7), seed=11)
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


def test_cycle_model_on_a_hand_computed_case(lenet):
    # conv1: 576 patches, O=6, K=25; fc3: O=10, K=84; pooling and flatten count their elements.
    pes = hls.layer_pes(lenet, 4, {"fc3": 3, "fc2": 1000})
    assert pes == [4, None, 4, None, None, 4, 84, 3]  # fc2's 1000 is capped at its 84 outputs
    rows = {row["layer"]: row for row in hls.cycle_model(lenet, pes)}
    depth = hls.PE_PIPELINE_DEPTH
    assert (rows["conv1"]["patches"], rows["conv1"]["folds"], rows["conv1"]["k"]) == (576, 2, 25)
    assert rows["conv1"]["cycles"] == 576 * 2 * (25 + depth) + 576 * 25
    assert rows["fc3"]["cycles"] == 4 * (84 + depth) + 84
    assert rows["fc2"]["cycles"] == 1 * (120 + depth) + 120
    assert (rows["pool1"]["cycles"], rows["pool2"]["cycles"], rows["flatten"]["cycles"]) == (864, 256, 256)
    summary = hls.cycle_summary(lenet, pes, clock_ns=5.0)
    assert summary["total"] == sum(row["cycles"] for row in rows.values())
    assert summary["images_per_s"] == pytest.approx(1e9 / (summary["total"] * 5.0))
    # More PEs never cost cycles.
    one = hls.cycle_summary(lenet, hls.layer_pes(lenet))["total"]
    assert summary["total"] < one


def test_pe_knob_reaches_the_generated_code_and_stays_deterministic(lenet, tmp_path):
    first = hls.export(lenet, tmp_path / "a", pe=2, pe_layers={"fc3": 5})
    again = hls.export(lenet, tmp_path / "b", pe=2, pe_layers={"fc3": 5})
    assert files_of(first) == files_of(again)
    params = (first / "firmware/parameters.h").read_text()
    assert params.count("static const int PE = 2;") == 4 and params.count("static const int PE = 5;") == 1
    net_cpp = (first / "firmware/bmhw_net.cpp").read_text()
    assert "#pragma HLS ARRAY_PARTITION variable = fc3_w cyclic factor = 5 dim = 1" in net_cpp
    assert "#pragma HLS DATAFLOW" in net_cpp
    assert "| `fc3` | 5 | 1 | 2 | 84 |" in (first / "README.md").read_text()
    default = hls.export(lenet, tmp_path / "c")
    assert "static const int PE = 1;" in (default / "firmware/parameters.h").read_text()


@pytest.mark.parametrize("options, message", [
    (["--pe", "0"], "--pe 0: the number of PEs must be a positive integer"),
    (["--pe", "fc1=-2"], "--pe fc1=-2: the number of PEs must be a positive integer"),
    (["--pe", "two"], "--pe two: give N or LAYER=N"),
    (["--pe", "=3"], "--pe =3: give N or LAYER=N"),
    (["--pe", "nope=2"], "--pe nope=2: no weight layer named 'nope'"),
    (["--pe", "pool1=2"], "--pe pool1=2: no weight layer named 'pool1'"),
])
def test_bad_pe_values_are_one_line_errors(options, message, tmp_path):
    code, _, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.bmq", "-o", tmp_path / "hls", *options])
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "hls").exists()


def test_export_prints_the_cycle_table(tmp_path):
    code, out, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.bmq", "-o", tmp_path / "hls",
                               "--pe", "3", "--pe", "conv1=6"])
    assert code == 0, err
    lenet = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    summary = hls.cycle_summary(lenet, hls.layer_pes(lenet, 3, {"conv1": 6}))
    assert "folds" in out and "patches" in out
    assert f"total: {summary['total']} cycles per image, {summary['images_per_s']:.0f} images/s at 5 ns" in out


@pytest.mark.slow
def test_a_random_small_network_with_two_pes_passes_csim(tmp_path):
    from bmhw.quant import quantize

    net = quantize(random_net(), random_images(32), act_bits=6, log_frac_bits=6)
    project = hls.export(net, tmp_path / "random", pe=2)
    assert "static const int PE = 2;" in (project / "firmware/parameters.h").read_text()
    images = random_images(8, seed=5)
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


@pytest.mark.slow
def test_lenet_with_per_layer_pe_passes_csim(tmp_path):
    project = tmp_path / "hls"
    code, _, err = run_main(["export", examples_dir() / "lenet_bm15_mnist.bmq", "-o", project, "--pe", "4",
                             "--pe", "conv2=3", "--pe", "fc3=7"])
    assert code == 0, err
    params = (project / "firmware/parameters.h").read_text()
    assert "static const int PE = 3;" in params and "static const int PE = 7;" in params
    code, out, err = run_main(["csim", project, "--images", "5"])
    assert code == 0, err
    assert "5 images, 0 mismatches" in out


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), channels=st.integers(1, 3), kernel=st.integers(1, 3), stride=st.integers(1, 2),
       pool=st.sampled_from([0, 2]), hidden=st.integers(1, 5), act_bits=st.integers(3, 8),
       log_frac_bits=st.integers(2, 10), signed=st.booleans())
def test_random_networks_pass_csim(tmp_path, seed, channels, kernel, stride, pool, hidden, act_bits, log_frac_bits,
                                   signed):
    # Property-based: random shapes, widths and conv / pool / linear mixes, every layer bit-exact.
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": seed, "in": (channels, 6, 5), "convs": [(2, kernel, stride, kernel // 2, pool)],
            "linears": [hidden, 3], "signed": signed}
    model = build_sequential(spec)
    net = quantize(model, random_images(16, shape=(channels, 6, 5), seed=seed), act_bits=act_bits,
                   log_frac_bits=log_frac_bits)
    project = hls.export(net, tmp_path / f"net{seed}_{kernel}_{stride}_{pool}")
    images = random_images(6, shape=(channels, 6, 5), seed=seed + 1)
    images[0] = 0
    images[1] = 255
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


def test_a_network_with_mirrored_outputs_passes_csim(tmp_path):
    # Every layer has outputs of both signs (Y = s (E - C) + B): C-simulation equals the golden model.
    from bmhw.quant import quantize
    from conftest import build_sequential

    spec = {"seed": 4, "in": (2, 6, 5), "convs": [(4, 3, 1, 1, 2)], "linears": [5, 3], "signed": True}
    model = build_sequential(spec)
    net = quantize(model, random_images(16, shape=(2, 6, 5), seed=4))
    assert all(net.signs(layer) is not None and set(net.signs(layer).tolist()) == {1, -1} for layer in net.bm_layers())
    project = hls.export(net, tmp_path / "signed")
    images = random_images(8, shape=(2, 6, 5), seed=5)
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


# ---------------------------------------------------------------------------------------------------
# AdderNet layers (docs/datapath.md, "The adder layer")
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed, conv, pe", [(0, True, 1), (1, True, 3), (2, False, 2), (5, True, 2)])
def test_random_adder_networks_csim_bit_exact(seed, conv, pe, tmp_path):
    """Random small adder IRs (templates outside [0, Qin], negative multipliers): every layer's buffer equals
    the golden model's (the testbench checks each), and the streamed logits too."""
    from adder_nets import random_adder_net, random_codes

    net = random_adder_net(seed, conv)
    project = hls.export(net, tmp_path / "adder", pe=pe)
    params = (project / "firmware/parameters.h").read_text()
    for layer in net.weight_layers():
        name = layer["name"]
        assert f"typedef {hls.ap_type(*layer['ranges']['ACC'], layer['widths']['ACC'])} acc_t;" in params
        assert (project / f"firmware/weights/{name}.h").is_file()
    codes = np.concatenate([random_codes(net, seed, n=8)] * 1)
    result = csim.csim(project, codes.astype(np.uint8))
    assert result.passed, result.output
    assert (result.images, result.mismatches) == (len(codes), 0)
    assert np.array_equal(csim.read_result(project), golden.forward(net, codes))


def test_adder_export_is_deterministic(tmp_path):
    from adder_nets import random_adder_net

    net = random_adder_net(4, True)
    a = files_of(hls.export(net, tmp_path / "a", pe=2))
    b = files_of(hls.export(random_adder_net(4, True), tmp_path / "b", pe=2))
    assert a == b and "firmware/weights/conv1.h" in a
    assert b"bmhw::adder_conv2d<conv1_config>" in a["firmware/bmhw_net.cpp"]
    assert b"static const bool RELU = false;" in a["firmware/parameters.h"]


# ---------------------------------------------------------------------------------------------------
# Binarised BiSE networks (docs/datapath.md, "The BiSE layer")
# ---------------------------------------------------------------------------------------------------


def random_bise_ir(seed: int, in_shape=(2, 7, 6), conv=(3, 3, 1, 1), pool=True, hidden=5, classes=4):
    """A random BiSE IR built from its tables (no torch): binarize, a padded BiSE convolution (conv = (O, k,
    stride, padding)), optional 2x2 max pooling, flatten, a hidden BiSE linear and the scores layer. Some
    rows of SE are full (every literal, padding included) and both polarities occur."""
    from bmhw.ir.intmath import width
    from bmhw.ir import QuantizedNet

    rng = np.random.default_rng(seed)
    layers = [{"op": "binarize", "name": "binarize", "in_shape": list(in_shape), "out_shape": list(in_shape),
               "threshold": 128}]
    arrays = {}

    def add(layer, o, k, scores):
        se = (rng.random((o, k)) < rng.uniform(0.2, 0.9)).astype(np.int64)
        se[0] = 1  # a full structuring element
        se[np.arange(o), rng.integers(0, k, size=o)] = 1  # no empty row
        neg = (rng.random((o, k)) < 0.4).astype(np.int64) * se
        op = rng.integers(0, 2, size=o).astype(np.int64)
        op[:2] = [0, 1]
        size = int(se.sum(axis=1).max())
        ranges = {"x": [0, 1], "C": [0, size], "q_out": [0, size] if scores else [0, 1]}
        layer.update(fan_in=k, out_count=o, scores=scores, ranges=ranges,
                     widths={s: width(*r) for s, r in ranges.items()})
        arrays.update({f"{layer['name']}/se": se, f"{layer['name']}/op": op, f"{layer['name']}/neg": neg})
        layers.append(layer)

    c, h, w = in_shape
    o, k, s, p = conv
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    add({"op": "bise_conv2d", "name": "conv1", "in_shape": [c, h, w], "out_shape": [o, oh, ow], "kernel": [k, k],
         "stride": [s, s], "padding": [p, p]}, o, c * k * k, False)
    shape = [o, oh, ow]
    if pool:
        pooled = [o, oh // 2, ow // 2]
        layers.append({"op": "maxpool2d", "name": "pool1", "in_shape": shape, "out_shape": pooled, "kernel": 2,
                       "stride": 2})
        shape = pooled
    flat = int(np.prod(shape))
    layers.append({"op": "flatten", "name": "flatten", "in_shape": shape, "out_shape": [flat]})
    add({"op": "bise_linear", "name": "fc1", "in_shape": [flat], "out_shape": [hidden]}, hidden, flat, False)
    add({"op": "bise_linear", "name": "fc2", "in_shape": [hidden], "out_shape": [classes]}, classes, hidden, True)
    net = QuantizedNet(input_shape=tuple(in_shape), input_scale=(1, 255), layers=layers, arrays=arrays,
                       meta={"source": f"random_bise_ir({seed})"})
    return load_bmq_bytes(net)


def load_bmq_bytes(net):
    """The net through a written .bmq file (the loader's checks of the BiSE tables apply)."""
    import tempfile
    from pathlib import Path

    from bmhw import ir

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.bmq"
        ir.save_bmq(net, path)
        return load_bmq(path)


def bise_images(seed: int, n: int, shape) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images[0], images[1] = 0, 255  # all-0 and all-1 bit maps: the padding's effect shows at the border
    images[2].reshape(-1)[:4] = [126, 127, 128, 129]  # the binarisation's edge
    return images


def assert_bise_csim(net, project, images):
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert (result.images, result.mismatches) == (len(images), 0)
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


@pytest.mark.slow
@pytest.mark.parametrize("seed, conv, pool, pe", [
    (0, (3, 3, 1, 1), True, 1),   # padded 3x3 convolution, pooling
    (1, (3, 3, 1, 1), True, 2),   # the same with two PEs per layer
    (2, (4, 3, 2, 1), False, 2),  # stride 2 with padding, no pooling
    (3, (2, 2, 1, 2), True, 1),   # padding wider than half the kernel: whole patches of padding
    (4, (5, 1, 1, 0), False, 3),  # 1x1 kernel, PE not dividing O
])
def test_random_bise_networks_csim_bit_exact(seed, conv, pool, pe, tmp_path):
    """Random BiSE IRs: every layer's buffer (binarize, the 1-bit OR / AND layers, pooling, the scores) equals
    the golden model's, bit for bit, and so do the streamed scores."""
    net = random_bise_ir(seed, conv=conv, pool=pool)
    project = hls.export(net, tmp_path / "bise", pe=pe)
    params = (project / "firmware/parameters.h").read_text()
    assert params.count(f"static const int PE = {pe};") == 3
    assert_bise_csim(net, project, bise_images(seed, 24, net.input_shape))


@pytest.mark.slow
@pytest.mark.parametrize("seed, pe", [(0, 1), (1, 2)])
def test_random_bise_lenets_csim_bit_exact(seed, pe, tmp_path):
    """BiSE LeNets quantized from random float BiSE models (bmhw.quant.bise), PE folding 1 and 2."""
    from bmhw.quant.bise import quantize_bise
    from random_nets import random_bise_lenet
    from random_nets import random_bise_images as lenet_images

    net = quantize_bise(random_bise_lenet(seed))
    project = hls.export(net, tmp_path / "lenet", pe=pe)
    images = lenet_images(seed, 16, 16)
    images[0], images[1] = 0, 255
    assert_bise_csim(net, project, images)


def test_bise_export_types_tables_and_determinism(tmp_path):
    net = random_bise_ir(0)
    a = hls.export(net, tmp_path / "a", pe=2, pe_layers={"fc2": 1})
    b = hls.export(random_bise_ir(0), tmp_path / "b", pe=2, pe_layers={"fc2": 1})
    assert files_of(a) == files_of(b)
    params = (a / "firmware/parameters.h").read_text()
    # bits between the layers; the scores in the width of C (the largest structuring element of fc2)
    size = int(net.table(net.layers[-1], "se").sum(axis=1).max())
    assert f"typedef ap_uint<{size.bit_length()}> result_t;" in params
    assert params.count("typedef ap_uint<1> out_t;") == 5  # binarize, conv1, pool1, flatten, fc1
    assert "static const int THRESHOLD = 128;" in params and "static const bool SCORES = true;" in params
    net_cpp = (a / "firmware/bmhw_net.cpp").read_text()
    assert "bmhw::binarize<binarize_config>(input, binarize_out);" in net_cpp
    assert "bmhw::bise_conv2d<conv1_config>(binarize_out, conv1_out, conv1_se, conv1_op, conv1_neg);" in net_cpp
    assert "#pragma HLS ARRAY_PARTITION variable = conv1_se cyclic factor = 2 dim = 1" in net_cpp
    assert "fc2_se cyclic" not in net_cpp
    weights = (a / "firmware/weights/conv1.h").read_text()
    se = net.table(net.layers[1], "se")
    assert f"static const bool conv1_se[{se.shape[0]}][{se.shape[1]}] = {{" in weights
    assert "static const bool conv1_neg[" in weights and "static const bool conv1_op[" in weights
    readme = (a / "README.md").read_text()
    assert "binarised BiSE network" in readme and "add-max" not in readme
    assert "class scores" in (a / "firmware/bmhw_net.h").read_text()


def test_bise_cycle_model_on_a_hand_computed_case():
    net = random_bise_ir(2, conv=(4, 3, 2, 1), pool=False, hidden=5)
    pes = hls.layer_pes(net, 3, {"fc2": 1000})
    assert pes == [None, 3, None, 3, 4]  # fc2's 1000 is capped at its 4 outputs
    rows = {row["layer"]: row for row in hls.cycle_model(net, pes)}
    depth = hls.BISE_PIPELINE_DEPTH
    # conv1: 2x7x6 -> 4x4x3 (stride 2, padding 1): 12 patches, K = 18, ceil(4 / 3) = 2 folds, plus the gather
    assert (rows["conv1"]["patches"], rows["conv1"]["folds"], rows["conv1"]["k"]) == (12, 2, 18)
    assert rows["conv1"]["cycles"] == 12 * 2 * (18 + depth) + 12 * 18
    assert rows["fc1"]["cycles"] == 2 * (48 + depth)
    assert rows["fc2"]["cycles"] == 1 * (5 + depth)
    assert (rows["binarize"]["cycles"], rows["flatten"]["cycles"]) == (84, 48)
    assert hls.cycle_summary(net, pes)["total"] == sum(row["cycles"] for row in rows.values())
    with pytest.raises(BmhwError, match="no weight layer named 'pool1'|no weight layer named 'binarize'"):
        hls.layer_pes(net, 1, {"binarize": 2})


@pytest.mark.slow
def test_a_corrupted_bise_table_names_the_layer_and_index(tmp_path):
    net = random_bise_ir(5, conv=(3, 3, 1, 1), pool=False)
    project = hls.export(net, tmp_path / "bise")
    header = project / "firmware/weights/fc1.h"
    text = header.read_text()
    start = text.index("fc1_op[5] = {\n    ") + len("fc1_op[5] = {\n    ")
    flipped = "1" if text[start] == "0" else "0"
    header.write_text(text[:start] + flipped + text[start + 1:])  # output 0 of fc1: dilation <-> erosion
    images = bise_images(5, 12, net.input_shape)
    result = csim.csim(project, images)
    assert result.returncode == 1 and not result.passed
    assert "layer fc1 index 0:" in result.output


def test_bise_inconsistent_ir_is_refused():
    net = random_bise_ir(0)
    net.layers[-1]["scores"] = False
    with pytest.raises(BmhwError, match="fc2: a hidden BiSE layer outputs bits"):
        hls.build_context(net)
    net = random_bise_ir(0)
    net.layers[-1]["ranges"]["q_out"] = [0, 1]
    net.layers[-1]["widths"]["q_out"] = 1
    net.layers[-1]["scores"] = False
    with pytest.raises(BmhwError, match="must be its scores layer"):
        hls.build_context(net)
    net = random_bise_ir(0)
    net.layers[1]["ranges"]["x"] = [0, 255]
    net.layers[1]["widths"]["x"] = 8
    with pytest.raises(BmhwError, match="conv1: a BiSE layer takes bits"):
        hls.build_context(net)


@pytest.mark.slow
def test_bise_example_cli_export_and_csim(tmp_path):
    """The example BiSE LeNet: bmhw quantize, export --target hls, csim on the built-in sample."""
    bmq = tmp_path / "bise.bmq"
    code, _, err = run_main(["quantize", examples_dir() / "lenet_bise_mnist.pt", "-o", bmq])
    assert code == 0, err
    code, out, err = run_main(["export", bmq, "--target", "hls", "-o", tmp_path / "hls", "--pe", "2"])
    assert code == 0, err
    assert "PE sum C" in out and "cycles per image" in out
    code, out, err = run_main(["csim", tmp_path / "hls", "--images", "20"])
    assert code == 0, err
    assert "20 images, 0 mismatches" in out
