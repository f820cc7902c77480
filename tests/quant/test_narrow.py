"""Narrower memories (bmhw.quant.narrow, docs/datapath.md "Narrower memories"): clipped log-weights stored unsigned with
their offset in the ln table compute what the clipped weights give, the fit keeps its accuracy promise on the images it
measures, and the command line takes the widths from the options, the checkpoint's record or the measured default."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from bmhw import golden
from bmhw.errors import BmhwError
from bmhw.ir import QuantizedNet
from bmhw.ir.validate import validate
from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.nn import BMConv2d, BMLinear
from bmhw.quant import quantize
from bmhw.quant.narrow import LogWidths, fit, table_bits
from cli_runner import assert_one_line_error, ok, run_main
from random_nets import random_images, random_net


def grouped_model():
    import torch

    torch.manual_seed(5)
    return nn.Sequential(BMConv2d(1, 4, 3, padding=1, maxima="1s"), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         BMLinear(100, 12, maxima="4s"), nn.ReLU(), BMLinear(12, 5, maxima="Ks")).eval()


@pytest.mark.parametrize("make", [lambda: random_net(2), grouped_model])
@pytest.mark.parametrize("bits", [3, 5, 8])
def test_clipped_weights_compute_what_the_clipped_weights_give(make, bits):
    """The expected network is built here from the full one by raising every log-weight below the layer's largest
    minus 2^b - 1 to that floor, leaving the ln table alone; the quantizer stores the weights as signed b-bit numbers
    and moves an offset into the ln table instead. Both must give the same outputs, and the stored tables b bits."""
    model, images = make(), random_images(12)
    full = quantize(model, images, log_frac_bits=4)
    arrays = dict(full.arrays)
    for layer in full.bm_layers():
        w = arrays[f"{layer['name']}/log_weights"]
        arrays[f"{layer['name']}/log_weights"] = np.maximum(w, w.max() - (2**bits - 1))
    expected = QuantizedNet(full.input_shape, full.input_scale, full.layers, arrays, full.meta)
    narrow = quantize(model, images, log_frac_bits=4, log_weight_bits=bits)
    validate(narrow)
    for layer in narrow.bm_layers():
        w = narrow.table(layer, "log_weights")
        assert -(2 ** (bits - 1)) <= w.min() and w.max() < 2 ** (bits - 1) and layer["widths"]["W"] <= bits
    want, got = golden.forward(expected, images, return_all=True), golden.forward(narrow, images, return_all=True)
    for name in want:
        assert np.array_equal(want[name], got[name]), name


def test_a_layer_that_spans_fewer_codes_keeps_them_all():
    model, images = random_net(2), random_images(12)
    full, wide = quantize(model, images, log_frac_bits=4), quantize(model, images, log_frac_bits=4, log_weight_bits=30)
    assert np.array_equal(golden.forward(full, images), golden.forward(wide, images))
    assert all(layer["widths"]["W"] < 30 for layer in wide.bm_layers())


def test_per_layer_widths_and_their_refusals():
    model, images = random_net(2), random_images(8)
    net = quantize(model, images, log_frac_bits={"0": 3, "3": 5, "6": 4, "8": 6}, log_weight_bits={"0": 4, "8": 6})
    assert [layer["F"] for layer in net.bm_layers()] == [3, 5, 4, 6]
    assert net.bm_layers()[0]["widths"]["W"] <= 4 and net.bm_layers()[3]["widths"]["W"] <= 6
    with pytest.raises(BmhwError, match="no weight layer 'fc9'"):
        quantize(model, images, log_weight_bits={"fc9": 4})
    with pytest.raises(BmhwError, match="--log-weight-bits for layer 0 must be between 1 and 30"):
        quantize(model, images, log_weight_bits={"0": 0})


def test_the_fit_keeps_its_promise_on_the_images_it_measures():
    """Labels = the float network's own predictions, tolerance 0: the fitted widths must give an integer network
    that agrees with every one of them, as an independent golden run of those widths shows."""
    import torch

    model, images = grouped_model(), random_images(64)
    with torch.no_grad():
        labels = model(torch.as_tensor(images, dtype=torch.float32) / 255).argmax(1).numpy()
    lines = []
    fitted = fit(model, images, images, labels, "random", tolerance=0.0, report=lines.append)
    assert fitted.float_accuracy == 1.0 and fitted.integer_accuracy == 1.0 and len(lines) > 3
    net = quantize(model, images, log_frac_bits=fitted.log_frac_bits, log_weight_bits=fitted.log_weight_bits)
    assert (golden.predict(net, images) == labels).all()
    assert table_bits(net) < table_bits(quantize(model, images, log_frac_bits=5))
    assert set(fitted.log_frac_bits) == {"0", "4", "6"}


def test_a_damaged_record_is_one_line():
    good = LogWidths({"fc": 4}, {"fc": 8}, 10, "mnist train split", 0.99, 0.99).to_metadata()
    assert LogWidths.from_metadata(good, "x.pt").log_weight_bits == {"fc": 8}
    for damage in ({"log_frac_bits": {"fc": 0}}, {"log_weight_bits": {"fc": 31}}, {"log_weight_bits": {"other": 8}},
                   {"format": 2}, {"images": "many"}):
        with pytest.raises(BmhwError, match=r"^x.pt has a damaged log_widths record; fit it again"):
            LogWidths.from_metadata({**good, **damage}, "x.pt")


@pytest.fixture(scope="module")
def bm_checkpoint(tmp_path_factory):
    from bmhw.quant.calibration import measure

    from bmhw.models import create

    path = tmp_path_factory.mktemp("narrow") / "bm.pt"
    model = create("lenet", "bm15", widths=(4, 6, 12, 8), input_size=16)
    images = random_images(16, shape=(1, 16, 16))
    save_checkpoint(path, model, calibration=measure(model, images, "random").to_metadata())
    return path


def _layer_f(path) -> list:
    from bmhw.ir import load_bmq

    return [(layer["F"], layer["widths"]["W"]) for layer in load_bmq(path).bm_layers()]


def test_the_command_line_default_record_and_options(bm_checkpoint, tmp_path):
    out = tmp_path / "n.bmq"
    ok(["quantize", bm_checkpoint, "-o", out])
    assert all(f == 4 and w <= 8 for f, w in _layer_f(out))  # the measured default: F = 4, 16 octaves (b = 8)
    ok(["quantize", bm_checkpoint, "--log-frac-bits", "6", "--log-weight-bits", "full", "--log-weight-bits",
        "fc1=5", "-o", out])
    widths = _layer_f(out)
    assert [f for f, _ in widths] == [6] * 5 and widths[2][1] <= 5 and widths[0][1] > 5
    ckpt = load_checkpoint(bm_checkpoint)
    record = LogWidths({"conv1": 3, "conv2": 5, "fc1": 2, "fc2": 7, "fc3": 4}, {"conv1": 5, "conv2": 9, "fc1": 4,
                                                                              "fc2": 9, "fc3": 6}, 16, "random", 1, 1)
    recorded = tmp_path / "rec.pt"
    save_checkpoint(recorded, ckpt.model, **ckpt.metadata, log_widths=record.to_metadata())
    ok(["quantize", recorded, "-o", out])
    assert [f for f, _ in _layer_f(out)] == [3, 5, 2, 7, 4]
    ok(["quantize", recorded, "--log-frac-bits", "10", "-o", out])  # an option given: the record steps aside
    assert [f for f, _ in _layer_f(out)] == [10] * 5


@pytest.mark.parametrize("argv, message", [
    (["--log-weight-bits", "fc9=5"], "no weight layer 'fc9'; this network has conv1, conv2, fc1, fc2, fc3"),
    (["--log-weight-bits", "five"], "give a number of bits B"),
    (["--log-frac-bits", "25"], "--log-frac-bits must be between 0 and 20"),
])
def test_bad_widths_are_one_line_before_anything_is_written(bm_checkpoint, tmp_path, argv, message):
    code, out, err = run_main(["quantize", bm_checkpoint, *argv, "-o", tmp_path / "x.bmq"])
    assert message in assert_one_line_error(code, err)
    assert not (tmp_path / "x.bmq").exists() and out == ""


def test_calibrate_fits_and_records_the_widths_that_quantize_then_uses(synth_mnist, tmp_path):
    from bmhw.models import create
    from bmhw.quant.calibration import measure

    path = tmp_path / "bm.pt"
    model = create("lenet", "bm15", widths=(4, 6, 12, 8))
    save_checkpoint(path, model, calibration=measure(model, random_images(8, shape=(1, 28, 28)), "r").to_metadata())
    out = ok(["calibrate", path, "--data", synth_mnist, "--fit-log-widths", "--fit-images", "64",
              "--fit-tolerance", "0", "--fit-agreement", "0"])
    assert "log-domain widths per BM layer" in out and "fc1: F = " in out
    record = load_checkpoint(path).metadata["log_widths"]
    assert record["images"] == 64 and record["source"] == "mnist train split"
    ok(["quantize", path, "-o", tmp_path / "n.bmq"])
    assert [f for f, _ in _layer_f(tmp_path / "n.bmq")] == [record["log_frac_bits"][n] for n in
                                                          ("conv1", "conv2", "fc1", "fc2", "fc3")]


def test_calibrate_refuses_to_fit_a_classical_network(synth_mnist, tmp_path):
    from bmhw.models import create

    path = save_checkpoint(tmp_path / "c.pt", create("lenet", "classical", widths=(4, 6, 12, 8)))
    before = path.read_bytes()
    code, _, err = run_main(["calibrate", path, "--data", synth_mnist, "--fit-log-widths"])
    assert "not a BM network" in assert_one_line_error(code, err) and path.read_bytes() == before
