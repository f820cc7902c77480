"""ONNX import (bmhw.models.onnx_import): classical networks exported by PyTorch come back as bmhw models.

Round trips torch -> ONNX (``torch.onnx.export(..., dynamo=False)``) -> import on LeNets and small ResNet-22s,
with the graph variants exporters produce (dynamic or fixed batch, several opsets, a Reshape instead of a
Flatten, pooling before the ReLU, batch norm folded by the exporter or left as nodes, MatMul + Add instead
of Gemm); and the errors: unsupported operators by type and node, files that are not ONNX, graphs that are
none of bmhw's networks.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from bmhw.errors import BmhwError
from bmhw.models import LeNet, describe, lenet, resnet22
from bmhw.models.onnx_import import import_onnx


def export(model: nn.Module, path, shape, dynamic: bool = True, **kwargs):
    """``torch.onnx.export`` as a user would call it (the TorchScript exporter, which needs no onnxscript)."""
    options = dict(input_names=["image"], output_names=["logits"], dynamo=False)
    if dynamic:
        options["dynamic_axes"] = {"image": {0: "N"}, "logits": {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.rand(2, *shape), str(path), **{**options, **kwargs})
    return path


def outputs(model: nn.Module, shape, n: int = 5, seed: int = 0) -> np.ndarray:
    x = torch.from_numpy(np.random.default_rng(seed).random((n, *shape), dtype=np.float32))
    with torch.no_grad():
        return model.eval()(x).numpy()


def assert_close(a: np.ndarray, b: np.ndarray, rel: float = 1e-5) -> None:
    error = np.abs(a - b).max() / np.abs(b).max()
    assert error <= rel, f"relative error {error:.3g}"


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"widths": (4, 8, 32, 16), "input_size": 32, "num_classes": 5},
                                    {"in_channels": 3, "widths": (3, 5, 7, 6)}], ids=["lenet5", "wider", "rgb"])
def test_lenet_round_trip(kwargs, tmp_path):
    torch.manual_seed(0)
    model = lenet(**kwargs)
    shape = (kwargs.get("in_channels", 1), kwargs.get("input_size", 28), kwargs.get("input_size", 28))
    result = import_onnx(export(model, tmp_path / "lenet.onnx", shape))
    assert result.arch == "lenet" and isinstance(result.model, LeNet)
    assert describe(result.model) == describe(model)
    # The same weights in the same layers: PyTorch computes the same numbers.
    assert np.array_equal(outputs(result.model, shape), outputs(model, shape))
    assert result.error <= 1e-5 and "pytorch" in result.producer


class ViewLeNet(LeNet):
    """Flattens with ``h.view(h.size(0), -1)`` (Shape, Gather, Concat, Reshape in the graph)."""

    def layer_input(self, name, h):
        return h.view(h.size(0), -1) if name == "fc1" else h


class PoolFirstLeNet(LeNet):
    """Pools before the ReLU (the same function: they commute)."""

    def stage(self, name, h):
        h = getattr(self, name)(self.layer_input(name, h))
        if name in ("conv1", "conv2"):
            return F.relu(F.max_pool2d(h, 2))
        return h if name == "fc3" else F.relu(h)


@pytest.mark.parametrize("cls, dynamic, opset", [(LeNet, False, 17), (LeNet, True, 11), (LeNet, True, 13),
                                                 (ViewLeNet, True, 17), (ViewLeNet, False, 13),
                                                 (PoolFirstLeNet, True, 17)],
                         ids=["fixed-batch", "opset11", "opset13", "view-reshape", "view-fixed", "pool-first"])
def test_graph_variants_of_lenet(cls, dynamic, opset, tmp_path):
    torch.manual_seed(1)
    model = cls()
    result = import_onnx(export(model, tmp_path / "m.onnx", (1, 28, 28), dynamic, opset_version=opset))
    assert result.arch == "lenet"
    assert np.array_equal(outputs(result.model, (1, 28, 28)), outputs(model, (1, 28, 28)))


@pytest.mark.parametrize("fold", [True, False], ids=["folded-by-exporter", "batchnorm-nodes"])
def test_resnet_round_trip(fold, tmp_path):
    torch.manual_seed(2)
    model = randomize_batchnorm(resnet22(widths=(4, 8, 16), blocks=2))
    path = export(model, tmp_path / "resnet.onnx", (3, 32, 32), do_constant_folding=fold)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("BatchNormalization" in ops) != fold
    result = import_onnx(path)
    assert result.arch == "resnet22"
    assert result.args == {"widths": [4, 8, 16], "blocks": 2, "in_channels": 3, "num_classes": 10}
    assert_close(outputs(result.model, (3, 32, 32)), outputs(model, (3, 32, 32)))
    assert set(result.model.weight_layers()) == set(model.weight_layers())


# --- graph surgery: what other exporters write ---------------------------------------------------------------


def _edit(path, edit) -> onnx.ModelProto:
    model = onnx.load(path)
    edit(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def test_batchnorm_nodes_are_folded(tmp_path):
    """A BatchNormalization after conv1 (inserted by hand): folded into conv1's weights and bias."""
    torch.manual_seed(3)
    path = export(lenet(), tmp_path / "bn.onnx", (1, 28, 28))
    rng = np.random.default_rng(0)

    def insert(graph):
        conv = graph.node[0]
        assert conv.op_type == "Conv"
        stats = {"bn_scale": rng.uniform(0.5, 2, 6), "bn_bias": rng.normal(0, 1, 6), "bn_mean": rng.normal(0, 1, 6),
                 "bn_var": rng.uniform(0.2, 3, 6)}
        graph.initializer.extend(numpy_helper.from_array(v.astype(np.float32), k) for k, v in stats.items())
        old = conv.output[0]
        conv.output[0] = "conv1_raw"
        graph.node.insert(1, helper.make_node("BatchNormalization", ["conv1_raw", *stats], [old], name="bn1",
                                              epsilon=1e-3))

    _edit(path, insert)
    result = import_onnx(path)
    assert result.error <= 1e-5  # the import's own check against onnxruntime on the edited graph
    torch.manual_seed(3)
    original = lenet()
    assert not torch.allclose(result.model.conv1.weight, original.conv1.weight)
    assert torch.equal(result.model.conv2.weight, original.conv2.weight)


def test_matmul_plus_bias_is_a_linear_layer(tmp_path):
    torch.manual_seed(4)
    model = lenet()
    path = export(model, tmp_path / "mm.onnx", (1, 28, 28))

    def replace(graph):
        nodes = []
        for node in graph.node:
            if node.op_type != "Gemm":
                nodes.append(node)
                continue
            weight = next(t for t in graph.initializer if t.name == node.input[1])
            w = numpy_helper.to_array(weight)
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w.T), weight.name + "_t"))
            nodes.append(helper.make_node("MatMul", [node.input[0], weight.name + "_t"], [node.output[0] + "_mm"],
                                          name=node.name + "_matmul"))
            nodes.append(helper.make_node("Add", [node.output[0] + "_mm", node.input[2]], [node.output[0]],
                                          name=node.name + "_bias"))
        del graph.node[:]
        graph.node.extend(nodes)

    _edit(path, replace)
    assert "Gemm" not in {n.op_type for n in onnx.load(path).graph.node}
    result = import_onnx(path)
    assert_close(outputs(result.model, (1, 28, 28)), outputs(model, (1, 28, 28)), 1e-6)


# --- errors --------------------------------------------------------------------------------------------------


@pytest.fixture()
def lenet_onnx(tmp_path):
    torch.manual_seed(5)
    return export(lenet(), tmp_path / "lenet.onnx", (1, 28, 28))


def test_unsupported_operator_is_named_with_its_node(lenet_onnx):
    def swap(graph):
        relu = next(n for n in graph.node if n.op_type == "Relu")
        relu.op_type = "Sigmoid"

    _edit(lenet_onnx, swap)
    with pytest.raises(BmhwError, match=r"node '/Relu' is a Sigmoid operator, which bmhw does not import") as err:
        import_onnx(lenet_onnx)
    assert "\n" not in str(err.value)


def test_operator_of_another_domain(lenet_onnx):
    def custom(graph):
        relu = next(n for n in graph.node if n.op_type == "Relu")
        relu.domain = "com.example"

    model = onnx.load(lenet_onnx)
    custom(model.graph)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, lenet_onnx)
    with pytest.raises(BmhwError, match=r"com\.example\.Relu"):
        import_onnx(lenet_onnx)


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", bytes(range(256)) * 8, "checkpoint"],
                         ids=["empty", "text", "bytes", "checkpoint"])
def test_not_onnx(content, tmp_path):
    path = tmp_path / "model.onnx"
    if content == "checkpoint":
        from bmhw.models.checkpoint import save_checkpoint

        save_checkpoint(path, lenet())
    else:
        path.write_bytes(content)
    with pytest.raises(BmhwError, match="is not an ONNX model") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)
    with pytest.raises(BmhwError, match="not found"):
        import_onnx(tmp_path / "missing.onnx")


def test_graphs_that_are_not_the_lenet_import_as_a_cnn_and_what_bmhw_lacks_is_explained(tmp_path):
    """A graph close to the LeNet but not it is a feed-forward CNN of its own layers (bmhw.models.cnn); a layer no
    bmhw network has is named."""
    torch.manual_seed(6)
    three = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 120), nn.ReLU(), nn.Linear(120, 84),
                          nn.ReLU(), nn.Linear(84, 10))
    result = import_onnx(export(three, tmp_path / "three.onnx", (1, 27, 27)))
    assert result.arch == "cnn" and result.args["input_size"] == 27
    longer = nn.Sequential(*lenet_layers(), nn.ReLU(), nn.Linear(10, 10))
    assert import_onnx(export(longer, tmp_path / "longer.onnx", (1, 28, 28))).arch == "cnn"
    assert import_onnx(export(nn.Sequential(*lenet_layers()), tmp_path / "lenet.onnx", (1, 28, 28))).arch == "lenet"
    oblong = nn.Sequential(nn.Conv2d(1, 4, (3, 5)), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 24, 10))
    with pytest.raises(BmhwError, match=r"a 3x5 convolution .*: bmhw.s convolutions have square kernels"):
        import_onnx(export(oblong, tmp_path / "oblong.onnx", (1, 28, 28)))
    strided = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(3, stride=2), nn.Flatten(),
                            nn.Linear(4 * 12 * 12, 10))
    with pytest.raises(BmhwError, match="bmhw pools with stride = kernel"):
        import_onnx(export(strided, tmp_path / "strided.onnx", (1, 28, 28)))


def lenet_layers():
    return [nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(256, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)]


def test_batchnorm_that_cannot_be_folded(tmp_path):
    layers = lenet_layers()
    layers.insert(2, nn.BatchNorm2d(6))  # after the ReLU: nothing to fold it into
    with pytest.raises(BmhwError, match=r"BatchNormalization\): bmhw folds batch normalisation into the Conv or "
                                        r"Gemm right before it, but this one reads a ReLU"):
        import_onnx(export(nn.Sequential(*layers), tmp_path / "bn.onnx", (1, 28, 28), do_constant_folding=False))


def test_sequential_lenet_is_a_lenet(tmp_path):
    """A plain nn.Sequential with LeNet's layers is bmhw's LeNet: the names do not matter, the structure does."""
    torch.manual_seed(7)
    model = nn.Sequential(*lenet_layers())
    result = import_onnx(export(model, tmp_path / "seq.onnx", (1, 28, 28)))
    assert result.arch == "lenet"
    assert np.array_equal(outputs(result.model, (1, 28, 28)), outputs(model, (1, 28, 28)))


def test_dynamic_image_size_is_refused(tmp_path):
    torch.manual_seed(8)
    path = export(resnet22(widths=(4, 8, 16), blocks=1), tmp_path / "r.onnx", (3, 32, 32), dynamic=False,
                  dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}})
    with pytest.raises(BmhwError, match="fixed image shape"):
        import_onnx(path)


class PooledStemResNet(nn.Module):
    """A torchvision-like ResNet: a max-pool after the stem, which bmhw's ResNet-22 does not have."""

    def __init__(self):
        super().__init__()
        self.net = resnet22(widths=(4, 8, 16), blocks=1)

    def forward(self, x):
        net = self.net
        h = F.max_pool2d(F.relu(net.stem_bn(net.stem(x))), 2)
        return net.fc(F.adaptive_avg_pool2d(net.stages(h), 1).flatten(1))


def test_resnet_differences_are_explained(tmp_path):
    torch.manual_seed(9)
    path = export(PooledStemResNet(), tmp_path / "pooled.onnx", (3, 32, 32))
    with pytest.raises(BmhwError, match=r"as its ResNet-22 .* layer 3 is a max-pool 2 \(stride 2\) \('/MaxPool'\), "
                                        r"where a residual block followed by a ReLU belongs"):
        import_onnx(path)


# --- untrusted contents: external data and non-finite weights ---------------------------------------------------


def _with_external_data(source, folder, location="weights.bin"):
    """``source`` saved again into ``folder`` with every initializer in the file ``location`` beside it."""
    folder.mkdir(exist_ok=True)
    model = onnx.load(source)
    path = folder / "external.onnx"
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=0)
    return path


def _relocate(path, location):
    """Point every external tensor of ``path`` at ``location`` (the data itself is left where it is)."""
    model = onnx.load(path, load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def test_external_data_beside_the_model_is_read(lenet_onnx, tmp_path):
    path = _with_external_data(lenet_onnx, tmp_path / "model")
    assert (tmp_path / "model" / "weights.bin").stat().st_size > 40_000  # the weights really moved out
    result = import_onnx(path)
    assert np.array_equal(outputs(result.model, (1, 28, 28)), outputs(import_onnx(lenet_onnx).model, (1, 28, 28)))


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused(lenet_onnx, tmp_path, where):
    path = _with_external_data(lenet_onnx, tmp_path / "model")
    data = tmp_path / "model" / "weights.bin"
    # The right bytes sit where the model points: only the place, not a missing or short file, is refused.
    secret = tmp_path / "secret.bin"
    data.rename(secret)
    if where == "symlink":
        data.symlink_to(secret)
        location = "weights.bin"
    else:
        location = "../secret.bin" if where == "parent" else str(secret)
    _relocate(path, location)
    with pytest.raises(BmhwError) as info:
        import_onnx(path)
    message = str(info.value)
    assert "\n" not in message
    assert "outside the model's folder" in message and repr(location) in message
    assert "tensor 'conv1.weight'" in message or "tensor 'onnx::" in message


def test_missing_external_data_is_one_line(lenet_onnx, tmp_path):
    path = _with_external_data(lenet_onnx, tmp_path / "model")
    (tmp_path / "model" / "weights.bin").unlink()
    with pytest.raises(BmhwError, match="'weights.bin', which is missing") as info:
        import_onnx(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_initializer_is_named(lenet_onnx, value):
    model = onnx.load(lenet_onnx)
    tensor = next(t for t in model.graph.initializer if t.name == "conv2.bias")
    array = numpy_helper.to_array(tensor).copy()
    array[3] = value
    tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    onnx.save(model, lenet_onnx)
    with pytest.raises(BmhwError) as info:
        import_onnx(lenet_onnx)
    assert str(info.value) == (f"{lenet_onnx}: initializer 'conv2.bias' holds NaN or infinite values; re-export the "
                               "model from trained weights")
