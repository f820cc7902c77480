"""Your own network (bmhw.models.cnn): any feed-forward stack of convolutions, linear layers, ReLU, max pooling and
flatten, described as text or as layer entries, through checkpoints, conversion, quantization and the backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bmhw import golden
from bmhw.errors import BmhwError
from bmhw.models import CNN, build, cnn, create, describe, parse_layers
from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.nn import to_bm
from bmhw.quant import quantize, quantize_classical
from cli_runner import assert_one_line_error, ok, run_main

SMALL = "conv4k3p1 relu pool2 conv6k3s2 relu flatten fc12 relu fc10"


def test_the_text_form_reads_as_written():
    assert parse_layers("conv8k3p1, relu pool2 conv16k5s2 flatten fc10") == [
        {"op": "conv", "out": 8, "kernel": 3, "stride": 1, "padding": 1}, {"op": "relu"},
        {"op": "maxpool", "kernel": 2}, {"op": "conv", "out": 16, "kernel": 5, "stride": 2, "padding": 0},
        {"op": "flatten"}, {"op": "linear", "out": 10}]


def test_shapes_names_and_forward_match_a_plain_torch_stack():
    model = cnn(SMALL)
    assert model.WEIGHT_LAYERS == ("conv1", "conv2", "fc1", "fc2")
    # The same layers as an nn.Sequential with the same weights: the outputs agree.
    ref = torch.nn.Sequential(model.conv1, torch.nn.ReLU(), torch.nn.MaxPool2d(2), model.conv2, torch.nn.ReLU(),
                              torch.nn.Flatten(), model.fc1, torch.nn.ReLU(), model.fc2)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), ref(x))
    assert model.conv2.stride == (2, 2) and model.fc1.in_features == 6 * 6 * 6


@pytest.mark.parametrize("text, message", [
    ("conv4k3 relu fc10", "a linear layer reads a flat vector: put flatten before it"),
    ("conv4k3 pool2 flatten fc10", "every weight layer but the last is followed by relu"),
    ("conv4k3 relu flatten fc10 relu", "relu follows a hidden weight layer only"),
    ("conv4k3 relu flatten conv4k3", "a convolution after flatten"),
    ("conv4k31 relu flatten fc10", "kernel is 31, expected an integer in [1, 15]"),
    ("conv4k3 relu flatten fc10 flatten", "the input is flat already"),
    ("conv4k3", "the network must end with its logits layer"),
    ("dense10", "'dense10' is not a layer"),
])
def test_a_bad_description_is_one_line(text, message):
    with pytest.raises(BmhwError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cnn(text)


def test_checkpoint_round_trip_and_bm_conversion(tmp_path):
    model = cnn(SMALL, layers={"fc2": {"neuron": "bm15"}})
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert describe(loaded.model) == describe(model)
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
    bm = to_bm(cnn(SMALL), branches=1.5)
    assert isinstance(bm, CNN) and describe(bm)["layers"]["conv1"]["neuron"] == "bm15"
    assert isinstance(build(describe(bm)), CNN)


def test_sizes_are_bounded_before_anything_is_built():
    with pytest.raises(BmhwError, match="weights"):
        create("cnn", stack=parse_layers("flatten fc4096 relu fc4096 relu fc4096 relu fc4096 relu fc4096 relu fc10"),
               in_channels=3, input_size=1024)


layer_text = st.builds(
    lambda convs, pool, fcs: " ".join(
        [f"conv{c}k{k}s{s}p{min(p, k - 1)} relu" + (" pool2" if pool and i == 0 else "")
         for i, (c, k, s, p) in enumerate(convs)] + ["flatten"] + [f"fc{f} relu" for f in fcs] + ["fc5"]),
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 2), st.integers(0, 2)), min_size=1,
             max_size=3),
    st.booleans(), st.lists(st.integers(2, 12), max_size=2))


@settings(max_examples=15, deadline=None)
@given(text=layer_text, seed=st.integers(0, 100))
def test_random_networks_quantize_and_run_bit_exact_in_onnx(text, seed):
    """A random description, converted to BM and quantized (BM and the MAC twin): the golden model and the integer
    ONNX graph agree bit for bit."""
    from bmhw.backends.onnx import integer, run

    torch.manual_seed(seed)
    try:
        model = cnn(text, input_size=16)
    except BmhwError:  # kernels that do not fit the feature map: refused in one line, nothing to run
        assume(False)
    images = np.random.default_rng(seed).integers(0, 256, (8, 1, 16, 16)).astype(np.uint8)
    for net in (quantize_classical(model, images), quantize(to_bm(model, branches=1.5), images)):
        session = run.session_from_model(integer.build(net), threads=1)
        assert run.golden_mismatch(net, session, images[:4]) is None
        assert golden.forward(net, images[:2]).shape == (2, 5)


def test_train_a_cnn_from_the_command_line(tmp_path, synth_mnist):
    path = tmp_path / "c.pt"
    ok(["train", "--model", "cnn", "--layers", SMALL, "--data", synth_mnist, "--epochs", "1", "--quiet", "-o", path])
    assert load_checkpoint(path).config["arch"] == "cnn"
    ok(["export", path, "--target", "verilog", "-o", tmp_path / "rtl"])
    code, _, err = run_main(["train", "--model", "cnn", "--data", synth_mnist, "-o", tmp_path / "x.pt"])
    assert "--model cnn needs --layers" in assert_one_line_error(code, err)
    code, _, err = run_main(["train", "--layers", SMALL, "--data", synth_mnist, "-o", tmp_path / "x.pt"])
    assert "--layers and --input describe a --model cnn" in assert_one_line_error(code, err)


def test_layers_from_a_json_file(tmp_path, synth_mnist):
    import json

    spec = tmp_path / "net.json"
    spec.write_text(json.dumps(parse_layers(SMALL)))
    ok(["train", "--model", "cnn", "--layers", spec, "--data", synth_mnist, "--epochs", "1", "--quiet", "-o",
        tmp_path / "j.pt"])
    assert load_checkpoint(tmp_path / "j.pt").config["args"]["stack"] == parse_layers(SMALL)
    spec.write_text("[{\"op\": \"conv\", \"out\": 4}]")
    code, _, err = run_main(["train", "--model", "cnn", "--layers", spec, "--data", synth_mnist, "-o", tmp_path / "k.pt"])
    assert "kernel is None, expected an integer" in assert_one_line_error(code, err)
