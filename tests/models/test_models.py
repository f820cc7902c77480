"""Tests for bmhw.models: the reference networks' shapes, per-layer neuron specs and configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.models import build, create, describe, lenet, make_spec, resnet22
from bmhw.nn import BMConv2d, BMLinear
from bmhw.nn.layers import _BMNeuron

NEURONS = ("classical", "bm4", "bm15")
# Smaller ResNet-22 widths for the BM forward checks: same code paths, a fraction of the max-plus work.
SMALL = {"widths": (4, 8, 16)}


def weight_shape(layer: nn.Module) -> tuple[int, ...]:
    """The classical weight shape a weight layer has or stands for."""
    if isinstance(layer, _BMNeuron):
        return tuple(layer.classical_weight().shape)
    return tuple(layer.weight.shape)


def kind_of(layer: nn.Module) -> str:
    if isinstance(layer, _BMNeuron):
        return "bm15" if layer.branches == 1.5 else "bm4"
    assert isinstance(layer, (nn.Conv2d, nn.Linear)), type(layer)
    return "classical"


def all_weight_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every convolution / linear / BM layer found by walking the module tree."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear, _BMNeuron))}


def neuron_of(spec: dict) -> dict:
    """A layer spec without its ``bias`` entry: what make_spec calls the neuron spec."""
    return {k: v for k, v in spec.items() if k != "bias"}


def outputs_equal(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    a.eval()
    b.eval()
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# --------------------------------------------------------------------------------------------
# LeNet


LENET_SHAPES = {"conv1": (6, 1, 5, 5), "conv2": (16, 6, 5, 5), "fc1": (120, 256), "fc2": (84, 120),
                "fc3": (10, 84)}


@pytest.mark.parametrize("neuron", NEURONS)
def test_lenet_logits_shape(neuron):
    torch.manual_seed(0)
    model = lenet(neuron).eval()
    with torch.no_grad():
        y = model(torch.rand(3, 1, 28, 28))
    assert y.shape == (3, 10)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("neuron", NEURONS)
def test_lenet_weight_layers_documented_shapes(neuron):
    model = lenet(neuron)
    layers = model.weight_layers()
    assert list(layers) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert {name: weight_shape(layer) for name, layer in layers.items()} == LENET_SHAPES
    assert all(kind_of(layer) == neuron for layer in layers.values())
    # weight_layers() is the complete list: nothing else in the tree is a weight layer.
    assert set(all_weight_modules(model)) == set(layers)
    conv_types = (nn.Conv2d,) if neuron == "classical" else (BMConv2d,)
    linear_types = (nn.Linear,) if neuron == "classical" else (BMLinear,)
    assert isinstance(layers["conv1"], conv_types) and isinstance(layers["conv2"], conv_types)
    assert all(isinstance(layers[n], linear_types) for n in ("fc1", "fc2", "fc3"))


def test_lenet_describe():
    config = describe(lenet("bm15"))
    assert config["arch"] == "lenet"
    assert config["args"] == {"widths": [6, 16, 120, 84], "in_channels": 1, "input_size": 28, "num_classes": 10}
    assert {n: neuron_of(spec) for n, spec in config["layers"].items()} == \
        {name: {"neuron": "bm15", "reduce": "max"} for name in LENET_SHAPES}
    assert {n: neuron_of(spec) for n, spec in describe(lenet())["layers"].items()} == \
        {name: {"neuron": "classical"} for name in LENET_SHAPES}
    # The config records whether each layer has a bias (a 1.5-branch re-fit may add one).
    assert all(spec.get("bias") is True for spec in config["layers"].values())


def test_resnet22_describe_records_bias_free_convolutions():
    layers = describe(resnet22("bm15", **SMALL))["layers"]
    assert len(layers) == 22
    assert all(spec.get("bias") is False for name, spec in layers.items() if name != "fc")
    assert layers["fc"].get("bias") is True


def test_bias_override_round_trips():
    torch.manual_seed(0)
    model = resnet22("bm15", **SMALL, layers={"stem": {"neuron": "bm15", "bias": True},
                                             "fc": {"neuron": "classical", "bias": False}})
    assert model.stem.bias is not None and model.fc.bias is None
    assert model.stages[0][0].conv1.bias is None
    with torch.no_grad():
        model.stem.bias.uniform_(-0.5, 0.5)
    rebuilt = build(describe(model))
    assert rebuilt.stem.bias is not None and rebuilt.fc.bias is None
    rebuilt.load_state_dict(model.state_dict())
    assert outputs_equal(rebuilt, model, torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("neuron", NEURONS)
def test_lenet_forward_range_composes(neuron):
    torch.manual_seed(1)
    model = lenet(neuron).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        full = model(x)
        features = {}
        assert torch.equal(model.forward_range(x, 0, None, features), full)
        assert list(features) == list(LENET_SHAPES)
        assert features["conv1"].shape == (4, 6, 12, 12)
        assert features["conv2"].shape == (4, 16, 4, 4)
        assert features["fc1"].shape == (4, 120) and features["fc2"].shape == (4, 84)
        assert torch.equal(features["fc3"], full)
        for k in range(6):
            h = model.forward_range(x, 0, k)
            if k == 0:
                assert torch.equal(h, x)
            else:
                assert torch.equal(h, features[list(LENET_SHAPES)[k - 1]])
            assert torch.equal(model.forward_range(h, k), full), f"split at {k}"


def test_lenet_hidden_activations_are_non_negative():
    # The docstring promises every weight layer sees non-negative inputs (ReLU before each).
    torch.manual_seed(2)
    model = lenet().eval()
    features = {}
    with torch.no_grad():
        model.forward_range(torch.rand(2, 1, 28, 28), features=features)
    for name in ("conv1", "conv2", "fc1", "fc2"):
        assert (features[name] >= 0).all(), name
    assert (features["fc3"] < 0).any(), "logits are not passed through a ReLU"


# --------------------------------------------------------------------------------------------
# ResNet-22


def test_resnet22_has_22_weight_layers_and_documented_widths():
    model = resnet22()
    layers = model.weight_layers()
    assert len(layers) == 22
    assert set(all_weight_modules(model)) == set(layers)
    assert list(layers)[0] == "stem" and list(layers)[-1] == "fc"
    shortcuts = [name for name in layers if "shortcut" in name]
    assert shortcuts == ["stages.1.0.shortcut.0", "stages.2.0.shortcut.0"]
    assert weight_shape(layers["stem"]) == (16, 3, 3, 3)
    assert weight_shape(layers["fc"]) == (10, 256)
    assert len(model.stages) == 3
    for stage, width in zip(model.stages, (16, 64, 256)):
        assert len(stage) == 3
        for block in stage:
            assert block.conv1.out_channels == width and block.conv2.out_channels == width
            assert weight_shape(block.conv2) == (width, width, 3, 3)
    assert weight_shape(layers["stages.1.0.shortcut.0"]) == (64, 16, 1, 1)
    assert weight_shape(layers["stages.2.0.shortcut.0"]) == (256, 64, 1, 1)
    assert model.stages[1][0].conv1.stride == (2, 2) and model.stages[2][0].conv1.stride == (2, 2)
    assert model.stages[0][0].conv1.stride == (1, 1)


def test_resnet22_classical_logits_shape():
    torch.manual_seed(0)
    model = resnet22().eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("neuron", ["bm4", "bm15"])
def test_resnet22_bm_layers_and_logits(neuron):
    full = resnet22(neuron)
    assert len(full.weight_layers()) == 22
    assert all(kind_of(layer) == neuron for layer in full.weight_layers().values())
    assert set(all_weight_modules(full)) == set(full.weight_layers())
    torch.manual_seed(0)
    model = resnet22(neuron, **SMALL).eval()
    with torch.no_grad():
        y = model(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.slow
def test_resnet22_bm15_full_width_logits():
    # Full widths on CPU take seconds (the 4-branch one several times longer): one image, 1.5 branches.
    torch.manual_seed(0)
    model = resnet22("bm15").eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 32, 32))
    assert y.shape == (1, 10) and torch.isfinite(y).all()


# --------------------------------------------------------------------------------------------
# configs: describe / build


OVERRIDE = {"conv1": {"neuron": "bm15", "reduce": "lse", "alpha": 4.0}}


@pytest.mark.parametrize("make", [
    lambda: lenet("classical"),
    lambda: lenet("bm4"),
    lambda: lenet("bm15"),
    lambda: lenet("bm15", reduce="smorph", alpha=2.5, learn_alpha=True),
    lambda: lenet("classical", layers=OVERRIDE),
    lambda: lenet("bm4", layers={"fc3": {"neuron": "classical"}, "conv2": {"neuron": "bm15", "reduce": "lmorph"}}),
    lambda: resnet22("classical"),
    lambda: resnet22("bm15", **SMALL, layers={"fc": {"neuron": "classical"}, "stem": {"neuron": "bm4"}}),
], ids=["classical", "bm4", "bm15", "bm15-smorph-learned", "override", "mixed", "resnet22", "resnet22-mixed"])
def test_describe_build_round_trip(make):
    torch.manual_seed(3)
    model = make()
    # Make the BatchNorm statistics non-trivial so that a lost buffer would show.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    config = describe(model)
    torch.manual_seed(4)  # a different initialisation: only load_state_dict may make them equal
    rebuilt = build(config)
    assert type(rebuilt) is type(model)
    assert describe(rebuilt) == config
    x = torch.rand(2, 1, 28, 28) if config["arch"] == "lenet" else torch.rand(2, 3, 32, 32)
    assert not outputs_equal(rebuilt, model, x)
    rebuilt.load_state_dict(model.state_dict())
    assert outputs_equal(rebuilt, model, x)


def test_config_is_plain_data():
    config = describe(lenet("bm15", reduce="lse", alpha=2.0))
    assert neuron_of(config["layers"]["fc1"]) == {"neuron": "bm15", "reduce": "lse", "alpha": 2.0,
                                                  "learn_alpha": False}

    def plain(value):
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(config)
    assert plain(describe(resnet22("bm4", **SMALL)))


def test_per_layer_override():
    torch.manual_seed(0)
    model = lenet("classical", layers=OVERRIDE)
    layers = model.weight_layers()
    conv1 = layers["conv1"]
    assert isinstance(conv1, BMConv2d)
    assert conv1.branches == 1.5 and conv1.reduce == "lse"
    assert float(conv1.alpha) == 4.0 and not conv1.learn_alpha
    assert weight_shape(conv1) == (6, 1, 5, 5)
    for name in ("conv2", "fc1", "fc2", "fc3"):
        assert kind_of(layers[name]) == "classical", name
    config = describe(model)
    assert neuron_of(config["layers"]["conv1"]) == {"neuron": "bm15", "reduce": "lse", "alpha": 4.0,
                                                    "learn_alpha": False}
    assert neuron_of(config["layers"]["fc2"]) == {"neuron": "classical"}
    with torch.no_grad():
        assert model.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)

    # An override replaces the default for that layer only, including when the default is BM.
    model = lenet("bm4", layers={"fc3": {"neuron": "classical"}})
    assert [kind_of(layer) for layer in model.weight_layers().values()] == ["bm4"] * 4 + ["classical"]

    # ResNet layers are named by their dotted module path.
    model = resnet22("classical", **SMALL, layers={"stages.1.0.shortcut.0": {"neuron": "bm15"}})
    assert isinstance(model.stages[1][0].shortcut[0], BMConv2d)
    assert sum(kind_of(layer) == "bm15" for layer in model.weight_layers().values()) == 1


def test_learned_alpha_is_a_parameter():
    model = lenet("bm15", reduce="lse", alpha=3.0, learn_alpha=True)
    names = {name for name, _ in model.named_parameters()}
    assert {f"{layer}.alpha" for layer in LENET_SHAPES} <= names
    fixed = lenet("bm15", reduce="lse", alpha=3.0)
    assert not any(name.endswith("alpha") for name, _ in fixed.named_parameters())
    assert all(f"{layer}.alpha" in fixed.state_dict() for layer in LENET_SHAPES)


@pytest.mark.parametrize("factory,name", [(lenet, "conv3"), (lenet, "fc"), (resnet22, "stages.0.0.shortcut.0"),
                                          (resnet22, "layer1")])
def test_unknown_layer_name_raises(factory, name):
    with pytest.raises(BmhwError) as info:
        factory("classical", layers={name: {"neuron": "bm15"}})
    message = str(info.value)
    assert name in message and "\n" not in message


def test_build_rejects_bad_configs():
    good = describe(lenet())
    bad_configs = [
        {**good, "arch": "vgg"},
        {k: v for k, v in good.items() if k != "arch"},
        {**good, "layers": {**good["layers"], "fc9": {"neuron": "classical"}}},
        {**good, "layers": {**good["layers"], "fc1": {"neuron": "bm7"}}},
        {**good, "layers": {**good["layers"], "fc1": {"neuron": "bm15", "reduce": "mean"}}},
        {**good, "args": {**good["args"], "depth": 3}},
        {**good, "args": {**good["args"], "input_size": 8}},
    ]
    for config in bad_configs:
        with pytest.raises(BmhwError) as info:
            build(config)
        assert "\n" not in str(info.value)


def test_make_spec_and_create():
    assert make_spec() == {"neuron": "classical"}
    assert make_spec("bm4") == {"neuron": "bm4", "reduce": "max"}
    assert make_spec("bm15", "lse") == {"neuron": "bm15", "reduce": "lse", "alpha": 1.0, "learn_alpha": False}
    for args in (("bm3",), ("bm15", "min"), ("bm15", "max", 2.0), ("bm4", "max", None, True)):
        with pytest.raises(BmhwError):
            make_spec(*args)
    assert isinstance(create("lenet", "bm4").conv1, BMConv2d)
    assert len(create("resnet22", **SMALL).weight_layers()) == 22
    with pytest.raises(BmhwError):
        create("alexnet")
