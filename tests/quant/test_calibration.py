"""Calibration on training images only, carried with the checkpoint (bmhw.quant.calibration, bmhw calibrate): the
recorded ranges are the largest activations, a checkpoint's own record quantizes exactly as --data does, and a
checkpoint without one is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bmhw.data import calibration_sample, load_dataset
from bmhw.errors import BmhwError
from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.quant.calibration import Calibration, measure
from cli_runner import assert_one_line_error, ok, run_main
from random_nets import random_images, random_net

FAST_TRAIN = ["--epochs", "1", "--batch-size", "32", "--lr", "1e-2", "--quiet"]


def test_the_ranges_are_the_largest_activations_each_next_layer_reads():
    """Computed here by hand on the float network: the ReLU and pooling outputs before each next weight layer, and
    the largest magnitude of the logits."""
    model, images = random_net(1), random_images(16)
    x = torch.as_tensor(images, dtype=torch.float64) / 255
    mods = [m.double() for m in model]
    h, after = x, []
    with torch.no_grad():
        for mod in mods:
            h = mod(h)
            after.append(h)
    # random_net: conv 0, relu 1, pool 2, conv 3, relu 4, flatten 5, linear 6, relu 7, linear 8
    want = {"0": float(after[2].max()), "3": float(after[5].max()), "6": float(after[7].max()),
            "8": float(after[8].abs().max())}
    got = measure(random_net(1), images, "test")
    # (bmhw feeds float32 images, x / 255 rounded once: agreement to float32 precision)
    assert got.maxima == pytest.approx(want, rel=1e-6) and got.images == 16 and got.input_shape == (1, 10, 10)


def test_a_damaged_record_is_one_line():
    with pytest.raises(BmhwError, match=r"^x.pt has a damaged calibration record; record it again with bmhw calibrate"):
        Calibration.from_metadata({"format": 1, "maxima": {"fc": float("nan")}, "images": 3, "source": "s",
                                   "input_shape": [1, 28, 28]}, "x.pt")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_mnist):
    path = tmp_path_factory.mktemp("cal") / "lenet.pt"
    ok(["train", "--data", synth_mnist, *FAST_TRAIN, "-o", path])
    return path


def test_training_records_the_calibration_on_its_training_images(trained, synth_mnist):
    record = load_checkpoint(trained).metadata["calibration"]
    images, _ = load_dataset("mnist", synth_mnist, "train")
    assert record["source"] == "mnist train split" and record["images"] == min(2000, len(images))
    again = measure(load_checkpoint(trained).model, calibration_sample(images, 2000), "mnist train split")
    assert record == again.to_metadata()


def test_export_of_a_checkpoint_is_quantize_with_its_training_data(trained, synth_mnist, tmp_path):
    """The acceptance: bmhw export model.pt gives byte for byte the .bmq of bmhw quantize model.pt --data TRAIN."""
    ok(["quantize", trained, "--data", synth_mnist, "-o", tmp_path / "with_data.bmq"])
    out = ok(["export", trained, "--target", "verilog", "-o", tmp_path / "rtl"])
    assert "calibration recorded in" in " ".join(out.split())
    assert (tmp_path / "rtl" / "model.bmq").read_bytes() == (tmp_path / "with_data.bmq").read_bytes()


def test_a_checkpoint_without_calibration_says_how_to_add_it(trained, synth_mnist, tmp_path):
    bare = tmp_path / "bare.pt"
    ckpt = load_checkpoint(trained)
    save_checkpoint(bare, ckpt.model, **{k: v for k, v in ckpt.metadata.items() if k != "calibration"})
    code, _, err = run_main(["export", bare, "--target", "verilog", "-o", tmp_path / "rtl"])
    assert f"bmhw calibrate {bare} --data DIR" in assert_one_line_error(code, err)
    assert not (tmp_path / "rtl").exists()
    ok(["calibrate", bare, "--data", synth_mnist])
    assert load_checkpoint(bare).metadata["calibration"] == ckpt.metadata["calibration"]
    ok(["export", bare, "--target", "verilog", "-o", tmp_path / "rtl"])


def test_calibrate_needs_training_data(trained, tmp_path):
    code, _, err = run_main(["calibrate", trained, "-o", tmp_path / "out.pt"])
    assert "needs --data DIR with the training split" in assert_one_line_error(code, err)
    assert not (tmp_path / "out.pt").exists()


def test_the_record_survives_nothing_but_finite_values(tmp_path):
    model = random_net(2)
    record = measure(model, random_images(4), "x").to_metadata()
    assert all(np.isfinite(v) and v >= 0 for v in record["maxima"].values())
