"""Grouped BM layers (several maxima per output, docs/datapath.md "Several maxima per neuron") in the integer ONNX
graph, run by onnxruntime against the golden model bit for bit: every layer's output of the grouped test specs
(tests/golden_specs.py: G from 1 to K, the sign split, fan-in 1, mirrored outputs, saturation), of random grouped
networks drawn by hypothesis, and of the example LeNet with several maxima on the built-in MNIST sample; the pair
tables of the graph against the definition of the groups, empty pairs, a changed weight sign caught, and the one-max
graph unchanged.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from golden_specs import EDGE_SPECS, GROUPED_IDS, GROUPED_SPECS, grouped_specs, quantize_spec
from test_onnx_int import assert_equal_to_golden

from bmhw import golden
from bmhw.backends.onnx import integer as onnx_int
from bmhw.backends.onnx.graph import OPSET
from bmhw.backends.onnx.run import golden_mismatch, session_from_model


def _quantized(spec: dict):
    with tempfile.TemporaryDirectory() as tmp:
        _, net, _, codes = quantize_spec(spec, Path(tmp))
    return net, codes


@pytest.mark.parametrize("spec", GROUPED_SPECS, ids=GROUPED_IDS)
def test_grouped_specs(spec):
    net, codes = _quantized(spec)
    assert any(layer.get("groups", 1) > 1 or layer.get("split_sign") for layer in net.bm_layers())
    assert_equal_to_golden(net, codes, f"spec {spec}: ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=grouped_specs())
def test_random_grouped_networks(spec):
    net, codes = _quantized(spec)
    assert_equal_to_golden(net, codes, f"spec {spec}: ")


def test_groups_one_written_out_is_the_one_max_graph():
    """N = 1 without a split written out (groups 1, split_sign false) is not grouped: the same graph, byte for byte."""
    from bmhw.ir import QuantizedNet

    net, _ = _quantized(EDGE_SPECS[1])
    layers = [dict(layer, groups=1, split_sign=False) if layer["op"].startswith("bm_") else layer
              for layer in net.layers]
    written = QuantizedNet(net.input_shape, net.input_scale, layers, net.arrays, net.meta)
    assert onnx_int.build(written).SerializeToString() == onnx_int.build(net).SerializeToString()


def test_empty_pairs_and_one_signed_rows():
    """Rows of weight signs all +1, all -1 and alternating, in every split layer: whole groups without one sign,
    whose pairs are empty and add nothing."""
    net, codes = _quantized(GROUPED_SPECS[1])
    split = [layer for layer in net.bm_layers() if layer.get("split_sign")]
    assert split
    for layer in split:
        key = f"{layer['name']}/weight_sign"
        sign = net.arrays[key].copy()
        sign[0] = 1
        if len(sign) > 1:
            sign[1] = -1
        if len(sign) > 2:
            sign[2] = np.where(np.arange(sign.shape[1]) % 2, 1, -1)
        net.arrays[key] = sign
        _, _, coefficient = onnx_int.pair_tables(net, layer)
        assert (coefficient[0] >= 0).all() and (coefficient[0, 1::2] == 0).all()
    assert_equal_to_golden(net, codes, "one-signed rows: ")


def test_pair_tables_follow_the_groups():
    """K = 7 in N = 3 groups (b = 0, 2, 4, 7), split by sign: slots padded to 3, FLOOR outside each pair."""
    from bmhw.ir import QuantizedNet

    w = np.arange(14, dtype=np.int64).reshape(2, 7) * 10
    sign = np.array([[1, -1, 1, 1, -1, -1, -1], [1, 1, 1, 1, 1, 1, 1]], dtype=np.int64)
    layer = {"name": "fc", "op": "bm_linear", "fan_in": 7, "out_count": 2, "groups": 3, "split_sign": True}
    net = QuantizedNet((7,), (1, 255), [layer], {"fc/log_weights": w, "fc/weight_sign": sign}, {})
    index, weights, coefficient = onnx_int.pair_tables(net, layer)
    assert index.tolist() == [[0, 1, 1], [0, 1, 1], [2, 3, 3], [2, 3, 3], [4, 5, 6], [4, 5, 6]]
    f = onnx_int.FLOOR
    assert weights[0].tolist() == [[0, f, f], [f, 10, f], [20, 30, f], [f, f, f], [f, f, f], [40, 50, 60]]
    assert weights[1].tolist() == [[70, 80, f], [f, f, f], [90, 100, f], [f, f, f], [110, 120, 130], [f, f, f]]
    assert coefficient.tolist() == [[1, -1, 1, 0, 0, -1], [1, 0, 1, 0, 1, 0]]
    # Without the split: one positive pair per group, the whole group in it.
    plain = dict(layer, split_sign=False)
    index, weights, coefficient = onnx_int.pair_tables(net, plain)
    assert index.tolist() == [[0, 1, 1], [2, 3, 3], [4, 5, 6]] and (coefficient == 1).all()
    assert weights[0].tolist() == [[0, 10, f], [20, 30, f], [40, 50, 60]]


# --- the example LeNet with several maxima -------------------------------------------------------------------


@pytest.fixture(scope="module")
def maxima_net():
    from bmhw.data import load_mnist_sample
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.quant import quantize
    from bmhw.resources import examples_dir

    images, _ = load_mnist_sample()
    net = quantize(load_checkpoint(examples_dir() / "lenet_bm15_maxima_mnist.pt").model, images[:200])
    assert all(layer.get("split_sign") for layer in net.bm_layers())
    return net


def test_example_lenet_with_several_maxima_on_the_builtin_sample(maxima_net):
    from bmhw.data import load_mnist_sample

    images, _ = load_mnist_sample()
    codes = np.concatenate([images.astype(np.int64), np.zeros((1, 1, 28, 28), np.int64),
                            np.full((1, 1, 28, 28), 255, np.int64)])
    assert_equal_to_golden(maxima_net, codes, "LeNet with several maxima: ")


def test_a_changed_weight_sign_is_caught(maxima_net):
    """One weight sign of the logits layer flipped in the exported copy shows as a mismatch in that logit."""
    from bmhw.data import load_mnist_sample

    images, _ = load_mnist_sample()
    changed = copy.deepcopy(maxima_net)
    sign = changed.arrays["fc3/weight_sign"].copy()
    sign[3, :] = -sign[3, :]
    changed.arrays["fc3/weight_sign"] = sign
    session = session_from_model(onnx_int.build(changed), threads=1)
    message = golden_mismatch(maxima_net, session, images[:4])
    assert message is not None and "'logits', image 0, index (3,)" in message
    assert golden_mismatch(changed, session, images[:4]) is None


def test_grouped_graph_file(maxima_net, tmp_path):
    first = onnx_int.export(maxima_net, tmp_path / "a.onnx").read_bytes()
    assert onnx_int.export(copy.deepcopy(maxima_net), tmp_path / "b.onnx").read_bytes() == first
    model = onnx.load(tmp_path / "a.onnx")
    onnx.checker.check_model(model, full_check=True)
    for node in model.graph.node:
        assert node.domain == ""
        onnx.defs.get_schema(node.op_type, OPSET)
    assert {t.data_type for t in model.graph.initializer} <= {onnx.TensorProto.INT64, onnx.TensorProto.UINT64}
    # The batch is sized by the pairs' slots: conv1 (K = 25, one group split by sign) holds 2 x 25 per output.
    assert onnx_int.elements_per_image(maxima_net) >= 24 * 24 * 6 * 2 * 25
