"""The float ONNX export (bmhw.models.onnx_export) run by onnxruntime against PyTorch.

Every BM variant (4 and 1.5 branches; max, LSE, S-morph, L-morph at several temperatures; mirrored outputs;
biases or none; convolutions with stride and padding), the classical layers, the reference LeNet and a small
ResNet-22 with batch norm, compared per output within ``onnx_float.TOLERANCE`` (relative to the output's
largest magnitude; the measured errors are in docs/onnx.md).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from bmhw.backends.onnx.graph import metadata
from bmhw.errors import BmhwError
from bmhw.models import lenet, resnet22
from bmhw.nn import BMConv2d, BMLinear
from bmhw.models import onnx_export as onnx_float
from bmhw.backends.onnx.run import session_from_model

RNG_IMAGES = np.random.default_rng(0).integers(0, 256, size=(6, 2, 9, 8), dtype=np.uint8)
VARIANTS = [(branches, reduce, alpha) for branches in (1.5, 4)
            for reduce, alpha in (("max", None), ("lse", 1.0), ("lse", 8.0), ("lse", 60.0), ("smorph", 0.5),
                                  ("smorph", 16.0), ("lmorph", 1.0), ("lmorph", 6.0))]


def small_net(branches, reduce, alpha, bias=True, signed=False, seed=0) -> nn.Sequential:
    """Conv (padding 1, stride 2) -> ReLU -> conv 1x1 -> ReLU -> max-pool -> flatten -> two linear layers."""
    torch.manual_seed(seed)
    common = dict(branches=branches, reduce=reduce, alpha=alpha, bias=bias)
    net = nn.Sequential(BMConv2d(2, 4, 3, stride=2, padding=1, **common), nn.ReLU(), BMConv2d(4, 3, 1, **common),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), BMLinear(12, 5, **common), nn.ReLU(),
                        BMLinear(5, 3, **common)).eval()
    if signed:
        with torch.no_grad():
            for m in net:
                if hasattr(m, "sign"):
                    m.sign.copy_(torch.tensor([(-1.0) ** i for i in range(m.sign.numel())]))
    return net


def check(model, images, input_shape=None) -> dict:
    errors = onnx_float.max_error(model, onnx_float.build(model, input_shape), images)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= onnx_float.TOLERANCE, f"output {worst}: relative error {errors[worst]:.3g}"
    return errors


@pytest.mark.parametrize("branches, reduce, alpha", VARIANTS,
                         ids=[f"bm{'15' if b == 1.5 else '4'}-{r}-{a}" for b, r, a in VARIANTS])
def test_bm_variants_match_pytorch(branches, reduce, alpha):
    errors = check(small_net(branches, reduce, alpha), RNG_IMAGES, (2, 9, 8))
    assert set(errors) == {"logits", "0", "2", "6", "8"}  # the logits and every weight layer


@pytest.mark.parametrize("reduce, alpha", [("max", None), ("lse", 4.0)])
def test_mirrored_outputs_and_no_bias(reduce, alpha):
    net = small_net(1.5, reduce, alpha, bias=False, signed=True, seed=3)
    assert all(m.signed for m in net if hasattr(m, "sign"))
    check(net, RNG_IMAGES, (2, 9, 8))


def test_delta_x_and_delta_w_are_read():
    net = small_net(1.5, "max", None, seed=4)
    with torch.no_grad():
        net[0].delta_x.fill_(0.125)
        net[6].delta_w.mul_(4)
    check(net, RNG_IMAGES, (2, 9, 8))


def test_negative_inputs_of_a_four_branch_layer():
    """The 4-branch neuron's negative branches: an input layer with signed values (a BM layer after a classical
    one with no ReLU between)."""
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), BMConv2d(3, 4, 3, branches=4, reduce="lse", alpha=3.0), nn.Flatten(),
                        BMLinear(4 * 5 * 4, 3, branches=4)).eval()
    check(net, RNG_IMAGES, (2, 9, 8))


def test_classical_layers():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2, 2),
                        nn.Conv2d(4, 4, 2, stride=2, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
    check(net, RNG_IMAGES, (2, 9, 8))


def test_example_lenets():
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.resources import examples_dir

    images, _ = load_mnist_sample()
    for name in ("lenet_bm15_mnist.pt", "lenet_classical_mnist.pt"):
        errors = check(load_checkpoint(examples_dir() / name).model, images[:50])
        assert set(errors) == {"logits", "conv1", "conv2", "fc1", "fc2", "fc3"}


@pytest.mark.parametrize("neuron, reduce, alpha", [("bm4", "lmorph", 2.0), ("bm15", "smorph", 8.0)])
def test_lenet_variants(neuron, reduce, alpha):
    from bmhw.data import load_mnist_sample

    torch.manual_seed(7)
    check(lenet(neuron, reduce=reduce, alpha=alpha).eval(), load_mnist_sample()[0][:8])


@pytest.mark.parametrize("neuron", ["classical", "bm15"])
def test_resnet_blocks(neuron):
    """Residual adds, projection shortcuts, batch norm with real statistics, global average pooling."""
    torch.manual_seed(8)
    model = resnet22(neuron, reduce="max" if neuron == "classical" else "lse",
                     alpha=None if neuron == "classical" else 4.0, widths=(4, 6, 8), blocks=1).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    images = np.random.default_rng(1).integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
    errors = check(model, images)
    assert "stages.1.0.shortcut.0" in errors and "fc" in errors


def test_a_changed_model_is_caught():
    """The comparison can fail: the graph of one model against PyTorch's output of a changed one."""
    net = small_net(1.5, "lse", 4.0)
    graph = onnx_float.build(net, (2, 9, 8))
    with torch.no_grad():
        net[6].v[0, 0] += 0.5
    errors = onnx_float.max_error(net, graph, RNG_IMAGES)
    assert errors["6"] > onnx_float.TOLERANCE and errors["0"] <= onnx_float.TOLERANCE


def test_export_is_deterministic(tmp_path):
    net = small_net(4, "lse", 2.0)
    first = onnx_float.export(net, tmp_path / "a.onnx", (2, 9, 8)).read_bytes()
    second = onnx_float.export(small_net(4, "lse", 2.0), tmp_path / "b.onnx", (2, 9, 8)).read_bytes()
    assert first == second
    model = onnx.load(tmp_path / "a.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert metadata(model)["bmhw.kind"] == "float"
    assert {n.op_type for n in model.graph.node} >= {"Log", "Exp", "ReduceMax", "ReduceSum", "Gather", "Add"}


def test_logits_only_and_runner():
    net = small_net(1.5, "max", None)
    model = onnx_float.build(net, (2, 9, 8), layer_outputs=False)
    assert [o.name for o in model.graph.output] == ["logits"]
    session = session_from_model(model)
    with torch.no_grad():
        want = net(torch.from_numpy(RNG_IMAGES).float() / 255).argmax(1).numpy()
    assert np.array_equal(session.predict(RNG_IMAGES), want)


def test_unsupported_modules_are_named():
    with pytest.raises(BmhwError, match=r"layer 1 \(Sigmoid\)"):
        onnx_float.build(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid()), (1, 5, 5))
    with pytest.raises(BmhwError, match="input shape"):
        onnx_float.build(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(BmhwError, match="groups"):
        onnx_float.build(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)), (2, 5, 5))
