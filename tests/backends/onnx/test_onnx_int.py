"""The integer ONNX export (bmhw.backends.onnx.integer) run by onnxruntime against the golden model, bit for bit.

The graph is a third executor of docs/datapath.md, written without the golden model's code; these tests
compare, with ``np.array_equal``, its logits and every layer's output with ``bmhw.golden.forward`` on random
BM and MAC networks (hypothesis, the shapes and precisions of tests/test_golden.py, mirrored outputs,
saturating calibration, the extreme codes 0 and 255) and on the example LeNet with the 500 images of the
built-in MNIST sample. The rounding helpers are checked against Python integers at the edges.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from golden_specs import EDGE_SPECS, mac_specs, net_specs, quantize_spec

from bmhw import golden
from bmhw.backends.onnx import integer as onnx_int
from bmhw.backends.onnx.graph import OPSET, PRODUCER, metadata
from bmhw.backends.onnx.run import golden_mismatch, session_from_model


def run_all(net, codes: np.ndarray) -> dict:
    """Every output of the exported graph on ``codes``, by onnxruntime."""
    session = session_from_model(onnx_int.build(net), threads=1)
    return session.run(codes, inputs_ready=True)


def assert_equal_to_golden(net, codes: np.ndarray, label: str = "") -> None:
    got = run_all(net, codes)
    want = golden.forward(net, codes, return_all=True)
    assert np.array_equal(got["logits"], want[net.layers[-1]["name"]]), f"{label}logits differ"
    for layer in net.layers:
        name = layer["name"]
        a, b = got[name], want[name]
        assert a.dtype == np.int64 and a.shape == b.shape, f"{label}layer {name}: {a.dtype} {a.shape} vs {b.shape}"
        if not np.array_equal(a, b):
            index = tuple(int(i) for i in np.argwhere(a != b)[0])
            raise AssertionError(f"{label}layer {name} ({layer['op']}): first mismatch at {index}: onnxruntime "
                                 f"{a[index]} != golden {b[index]} ({int((a != b).sum())} of {a.size} differ)")


def _check_spec(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _, net, _, codes = quantize_spec(spec, Path(tmp))
    assert_equal_to_golden(net, codes, f"spec {spec}: ")


# --- random networks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", EDGE_SPECS, ids=["fanin1-1x1", "stride2-pad-pool", "all-padding", "signed"])
def test_edge_networks(spec):
    _check_spec(spec)


@pytest.mark.parametrize("spec", EDGE_SPECS, ids=["fanin1-1x1", "stride2-pad-pool", "all-padding", "signed"])
def test_edge_mac_twins(spec):
    _check_spec({**spec, "classical": True, "weight_bits": 8})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=net_specs())
def test_random_bm_networks(spec):
    _check_spec(spec)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=mac_specs())
def test_random_mac_twins(spec):
    _check_spec(spec)


def test_all_mirrored_saturating_network():
    """Every output mirrored, a calibration on dim images (so bright inputs saturate at the top code), low
    precisions: the clamps, the signs and the exp shift at their extremes."""
    spec = {**EDGE_SPECS[3], "calib_max": 3, "act_bits": 4, "log_frac_bits": 4, "guard_bits": 2,
            "exp_frac_bits": 10}
    with tempfile.TemporaryDirectory() as tmp:
        _, net, _, codes = quantize_spec(spec, Path(tmp))
    for layer in net.bm_layers():
        net.arrays[f"{layer['name']}/sign"] = -np.ones(layer["out_count"], dtype=np.int64)
    out = golden.forward(net, codes, return_all=True)
    hidden = [layer["name"] for layer in net.bm_layers() if layer["relu"]]
    assert any((out[n] == 0).any() for n in hidden) and any((out[n] == 15).any() for n in hidden), \
        "the network does not reach both clamps; the test lost its point"
    assert_equal_to_golden(net, codes)


# --- the example LeNet ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_net():
    from bmhw.ir import load_bmq
    from bmhw.resources import examples_dir

    return load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")


def test_example_lenet_on_the_builtin_sample(lenet_net):
    """Acceptance: the example's integer ONNX export equals the golden model on all 500 images of the built-in
    MNIST sample, in every layer's output."""
    from bmhw.data import load_mnist_sample

    images, _ = load_mnist_sample()
    assert len(images) == 500
    assert_equal_to_golden(lenet_net, images.astype(np.int64), "example LeNet: ")


def test_example_lenet_extreme_images(lenet_net):
    codes = np.stack([np.zeros((1, 28, 28)), np.full((1, 28, 28), 255),
                      np.indices((28, 28)).sum(0)[None] * 255 // 54]).astype(np.int64)
    assert_equal_to_golden(lenet_net, codes, "extremes: ")


def test_mac_twin_of_the_example(lenet_net):
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.quant import quantize_classical
    from bmhw.resources import examples_dir

    images, _ = load_mnist_sample()
    twin = quantize_classical(load_checkpoint(examples_dir() / "lenet_classical_mnist.pt").model, images[:100])
    assert_equal_to_golden(twin, images[:100].astype(np.int64), "MAC twin: ")


def test_a_changed_table_is_caught(lenet_net):
    """The comparison can fail: one bias entry of the logits layer moved by one in the exported copy shows as
    a mismatch named by output, image and index."""
    from bmhw.data import load_mnist_sample

    images, _ = load_mnist_sample()
    changed = copy.deepcopy(lenet_net)
    changed.arrays["fc3/bias"] = changed.arrays["fc3/bias"].copy()
    changed.arrays["fc3/bias"][3] += 1
    session = session_from_model(onnx_int.build(changed), threads=1)
    message = golden_mismatch(lenet_net, session, images[:4])
    assert message is not None and "'logits', image 0, index (3,)" in message
    assert golden_mismatch(changed, session, images[:4]) is None


# --- the rounding helpers at their edges ---------------------------------------------------------------------


def _spec_round_shift(a: int, n: int) -> int:
    """docs/datapath.md: n > 0: floor_div(a + 2^(n-1), 2^n); n = 0: a; n < 0: a * 2^-n (Python ints)."""
    if n > 0:
        return (a + (1 << (n - 1))) // (1 << n)
    return a * (1 << -n)


def _run_helper(build, values: np.ndarray, *extra) -> np.ndarray:
    g = onnx_int._IntGraph("helper", reserved=("x", "y", "n"))
    x = g.add_input("x", np.int64, ["L"])
    inputs = {"x": values}
    if extra:
        g.add_input("n", np.int64, ["L"])
        inputs["n"] = extra[0]
    g.add_output(build(g, x), "y", np.int64, ["L"])
    import onnxruntime as ort

    from bmhw.backends.onnx.run import session_options

    session = ort.InferenceSession(g.model("test", {}).SerializeToString(), session_options(1),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


EDGE_VALUES = [0, 1, -1, 2, -2, 3, -3, 7, -7, 8, -8, 9, -9, 1023, -1024, 1025, -1025, 2**40 + 1, -(2**40) - 1,
               2**60 - 1, -(2**60)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 16, 40, 60, -1, -3])
def test_round_shift_by_a_constant(n):
    values = [v for v in EDGE_VALUES if abs(v) < 2**61 >> max(0, -n)]
    got = _run_helper(lambda g, x: g.round_shift(x, n, "rs"), np.array(values, dtype=np.int64))
    assert got.tolist() == [_spec_round_shift(v, n) for v in values]


@pytest.mark.parametrize("n", [1, 4, 10, 62])
def test_floor_div_of_negative_values(n):
    values = np.array(EDGE_VALUES, dtype=np.int64)
    got = _run_helper(lambda g, x: g.floor_div_pow2(x, n, "fd"), values)
    assert got.tolist() == [v // (1 << n) for v in EDGE_VALUES]  # Python's // is the floor division


def test_round_shift_by_a_tensor_of_amounts():
    """The exp step's shift: amounts from -20 to 70 (beyond 62 the result is 0) on table-like values 0 .. 2^61."""
    rng = np.random.default_rng(0)
    amounts = np.arange(-20, 71)
    values = [int(v) for v in rng.integers(0, 2**17, size=len(amounts))]
    values[:4] = [0, 1, 2**17, 2**61 - 1]
    values, amounts = values * 2, np.concatenate([amounts, amounts[::-1]])
    keep = [i for i, (v, n) in enumerate(zip(values, amounts)) if n >= 0 or v << -int(n) < 2**62]
    # The top of the range: entries up to 2^62 - 1 shifted by 62 (rounds up to 1) and by more (0).
    edges = [(2**62 - 1, 62), (2**62 - 1, 63), (2**61, 63), (2**61, 70), (2**62 - 1, 100), (2**61 - 1, 62)]
    a = np.array([values[i] for i in keep] + [v for v, _ in edges], dtype=np.int64)
    n = np.array([amounts[i] for i in keep] + [s for _, s in edges], dtype=np.int64)
    got = _run_helper(lambda g, x: g.round_shift_by(x, "n", "rsb"), a, n)
    assert got.tolist() == [_spec_round_shift(int(v), int(s)) for v, s in zip(a, n)]


def test_a_shift_beyond_the_datapath_is_refused():
    from bmhw.errors import BmhwError

    g = onnx_int._IntGraph("helper")
    with pytest.raises(BmhwError, match="beyond"):
        g.round_shift("x", 63, "rs")


# --- the file ------------------------------------------------------------------------------------------------


def test_export_is_deterministic_and_checked(lenet_net, tmp_path):
    first = onnx_int.export(lenet_net, tmp_path / "a.onnx").read_bytes()
    second = onnx_int.export(copy.deepcopy(lenet_net), tmp_path / "b.onnx").read_bytes()
    assert first == second
    model = onnx.load(tmp_path / "a.onnx")
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == PRODUCER and [o.version for o in model.opset_import] == [OPSET]
    assert metadata(model)["bmhw.kind"] == "integer"
    assert [i.name for i in model.graph.input] == ["codes"]
    assert [o.name for o in model.graph.output] == ["logits"] + [layer["name"] for layer in lenet_net.layers]
    ops = {node.op_type for node in model.graph.node}
    assert {"Gather", "ReduceMax", "BitShift", "Clip", "Mod"} <= ops
    types = {t.data_type for t in model.graph.initializer}
    assert types <= {onnx.TensorProto.INT64, onnx.TensorProto.UINT64}


def test_logits_only(lenet_net):
    model = onnx_int.build(lenet_net, layer_outputs=False)
    assert [o.name for o in model.graph.output] == ["logits"]


def test_graph_ops_are_standard_onnx(lenet_net):
    """Only the default ONNX domain, and every node's op in the opset's schema."""
    model = onnx_int.build(lenet_net)
    for node in model.graph.node:
        assert node.domain == ""
        onnx.defs.get_schema(node.op_type, OPSET)
    assert onnx.printer.to_text(model.graph)  # prints: well-formed
