"""The integer IR and golden model of binarised BiSE networks (docs/datapath.md, "The BiSE layer")."""

import numpy as np
import pytest
import torch

from bmhw import golden, ir
from bmhw.errors import BmhwError
from bmhw.models import create
from bmhw.nn.bise_train import binarize_model
from bmhw.quant.bise import INPUT_CODE_THRESHOLD, quantize_bise
from bmhw.train.loop import to_tensor
from random_nets import random_bise_images as random_images
from random_nets import random_bise_lenet


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_golden_equals_torch_binarised(seed):
    model = random_bise_lenet(seed)
    net = quantize_bise(model)
    images = random_images(seed, 40, 16)
    binarize_model(model)
    with torch.no_grad():
        want = model(to_tensor(images)).numpy()
        feats = {}
        model.forward_range(to_tensor(images), features=feats)
    got = golden.forward(net, images, return_all=True)
    np.testing.assert_array_equal(got["fc3"], want.astype(np.int64))
    # every stage, bit for bit (the stage outputs are after pooling for the convolutions)
    np.testing.assert_array_equal(got["pool1"], feats["conv1"].numpy().astype(np.int64))
    np.testing.assert_array_equal(got["pool2"], feats["conv2"].numpy().astype(np.int64))
    np.testing.assert_array_equal(got["fc1"], feats["fc1"].numpy().astype(np.int64))
    np.testing.assert_array_equal(got["fc2"], feats["fc2"].numpy().astype(np.int64))
    assert set(np.unique(got["fc1"])) <= {0, 1}
    assert 0 < got["fc1"].mean() < 1 or 0 < got["pool1"].mean() < 1  # not a degenerate all-0 / all-1 net


def test_input_binarisation_threshold():
    assert INPUT_CODE_THRESHOLD == 128
    net = quantize_bise(random_bise_lenet(0))
    layer = net.layers[0]
    codes = np.arange(256).reshape(1, 1, 16, 16)
    out = golden.binarize(layer, codes)
    assert out.reshape(-1).tolist() == [0] * 128 + [1] * 128
    np.testing.assert_array_equal(out[0, 0], (to_tensor(codes.astype(np.uint8)) >= 0.5).numpy()[0, 0])


def test_bise_layer_against_loops():
    net = quantize_bise(random_bise_lenet(3))
    layer = next(l for l in net.layers if l["op"] == "bise_linear")
    se, op, neg = net.table(layer, "se"), net.table(layer, "op"), net.table(layer, "neg")
    assert neg.any() and (se * (1 - neg)).any()  # both polarities inside the structuring elements
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(7, layer["fan_in"]))
    got = golden.bise_layer(net, layer, x)
    for n in range(7):
        for o in range(layer["out_count"]):
            inside = [1 - x[n, k] if neg[o, k] else x[n, k] for k in range(layer["fan_in"]) if se[o, k]]
            want = all(inside) if op[o] == 1 else any(inside)
            assert got[n, o] == int(want)


def test_round_trip_and_determinism(tmp_path):
    model = random_bise_lenet(4)
    net = quantize_bise(model)
    a, b = tmp_path / "a.bmq", tmp_path / "b.bmq"
    ir.save_bmq(net, a)
    ir.save_bmq(quantize_bise(random_bise_lenet(4)), b)
    assert a.read_bytes() == b.read_bytes()
    back = ir.load_bmq(a)
    assert back.layers == net.layers
    images = random_images(9, 10, 16)
    np.testing.assert_array_equal(golden.forward(back, images), golden.forward(net, images))
    assert [l["op"] for l in back.layers] == ["binarize", "bise_conv2d", "maxpool2d", "bise_conv2d", "maxpool2d",
                                             "flatten", "bise_linear", "bise_linear", "bise_linear"]


def test_damaged_tables_refused(tmp_path):
    net = quantize_bise(random_bise_lenet(5))
    net.arrays["fc2/op"] = net.arrays["fc2/op"] + 2
    path = ir.save_bmq(net, tmp_path / "bad.bmq")
    with pytest.raises(BmhwError, match="'op' table"):
        ir.load_bmq(path)
    net = quantize_bise(random_bise_lenet(5))
    net.arrays["fc1/se"][0] = 0
    path = ir.save_bmq(net, tmp_path / "bad2.bmq")
    with pytest.raises(BmhwError, match="'se' table"):
        ir.load_bmq(path)
    net = quantize_bise(random_bise_lenet(5))
    net.arrays["conv2/neg"] = net.arrays["conv2/neg"][:, :-1]
    path = ir.save_bmq(net, tmp_path / "bad3.bmq")
    with pytest.raises(BmhwError, match="'neg' table"):
        ir.load_bmq(path)


def test_padded_conv_complemented_literals():
    """A padded BiSE convolution with complemented inputs: golden (zero padding read as 0, its complement 1)
    equals the PyTorch binarised layer and explicit loops."""
    from bmhw.nn import BiSE

    torch.manual_seed(7)
    layer = BiSE(2, 5, 3, padding=1)
    with torch.no_grad():
        layer.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(8))
        layer.bias.copy_(torch.linspace(-2, 3, 5))
    layer.binarize()
    se, op, neg = layer.se.numpy(), layer.op.numpy(), layer.neg.numpy()
    assert (neg & se).any()
    gl = {"op": "bise_conv2d", "name": "c", "kernel": [3, 3], "stride": [1, 1], "padding": [1, 1],
          "fan_in": 18, "out_count": 5, "scores": False, "out_shape": [5, 6, 6]}

    class Net:
        def table(self, layer, name):
            return {"se": se.astype(np.int64), "op": op, "neg": (neg & se).astype(np.int64)}[name]

    rng = np.random.default_rng(9)
    x = rng.integers(0, 2, size=(3, 2, 6, 6))
    got = golden.bise_layer(Net(), gl, x)
    want = layer(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.int64)
    np.testing.assert_array_equal(got, want)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for n, o, i, j in [(0, 0, 0, 0), (1, 2, 5, 5), (2, 4, 0, 3), (0, 3, 2, 2), (1, 1, 5, 0)]:
        patch = xp[n, :, i:i + 3, j:j + 3].reshape(-1)
        lits = [1 - patch[k] if neg[o, k] else patch[k] for k in range(18) if se[o, k]]
        assert got[n, o, i, j] == int(all(lits) if op[o] == 1 else any(lits))


def test_golden_equals_torch_after_layerwise_binarisation():
    """The data-driven layer-by-layer binarisation leaves exactly binarisable parameters: the IR reproduces
    its operators and the golden model equals the PyTorch binarised network bit for bit."""
    from bmhw.nn.bise_math import binarizable
    from bmhw.nn.bise_train import binarize_layerwise

    model = random_bise_lenet(6)
    images = random_images(10, 64, 16)
    labels = np.arange(64) % 10
    binarize_layerwise(model, images, labels, refit_epochs=0)
    for m in model.weight_layers().values():
        assert all(r is not None for r in binarizable(m))
    net = quantize_bise(model)
    binarize_model(model)
    with torch.no_grad():
        want = model(to_tensor(images)).numpy().astype(np.int64)
    np.testing.assert_array_equal(golden.forward(net, images), want)


def test_refuses_non_bise():
    with pytest.raises(BmhwError):
        quantize_bise(create("lenet", "classical"))


def test_the_verilog_backend_exports_bise(tmp_path):
    from bmhw.backends import verilog

    net = quantize_bise(random_bise_lenet(0))
    # Both hardware backends implement BiSE layers (tests/backends/hls/test_hls.py; tests/backends/verilog/test_verilog.py, test_rtlsim.py).
    project = verilog.export(net, tmp_path / "Verilog")
    assert "bmhw_bise_layer #(" in (project / "rtl" / "bmhw_net.v").read_text()
