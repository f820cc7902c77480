"""Your own network from ONNX (issue 23): the small CNNs a new user exports from PyTorch import as bmhw CNNs and
go through conversion, distillation, quantization and every backend bit for bit."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bmhw.models.checkpoint import load_checkpoint
from cli_runner import flat, ok

# The two graphs of the issue that the LeNet / ResNet-22 matching refused.
GRAPHS = {
    "one_conv": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                       nn.Linear(676, 10)), "conv4k3 relu pool2 flatten fc10"),
    "two_convs": (lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                        nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10)),
                  "conv8k3p1 relu pool2 conv16k3p1 relu pool2 flatten fc32 relu fc10"),
}


def export_onnx(model: nn.Module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.rand(2, 1, 28, 28), str(path), input_names=["image"],
                          output_names=["logits"], dynamo=False, dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return path


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_a_users_cnn_imports_with_its_layers_and_weights(name, tmp_path):
    from bmhw.models.cnn import stack_text

    make, text = GRAPHS[name]
    torch.manual_seed(0)
    model = make()
    out = flat(ok(["import-onnx", export_onnx(model, tmp_path / "m.onnx"), "-o", tmp_path / "m.pt"]))
    assert f"cnn (stack={text}" in out
    imported = load_checkpoint(tmp_path / "m.pt")
    assert stack_text(imported.config["args"]["stack"]) == text
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(imported.model(x), model(x), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_an_imported_cnn_through_the_whole_flow_bit_exact(tmp_path, synth_mnist):
    """import-onnx -> calibrate -> convert -> distil -> quantize -> export hls, verilog, onnx-int -> csim and sim."""
    make, _ = GRAPHS["two_convs"]
    torch.manual_seed(1)
    ok(["import-onnx", export_onnx(make(), tmp_path / "m.onnx"), "-o", tmp_path / "c.pt"])
    ok(["convert", tmp_path / "c.pt", "--neuron", "bm15", "--data", synth_mnist, "-o", tmp_path / "b.pt"])
    ok(["distill", "--teacher", tmp_path / "c.pt", "--student", tmp_path / "b.pt", "--method", "kd", "--data",
        synth_mnist, "--epochs", "1", "--quiet", "-o", tmp_path / "kd.pt"])
    ok(["quantize", tmp_path / "kd.pt", "-o", tmp_path / "kd.bmq"])
    assert "bit for bit" in flat(ok(["export", tmp_path / "kd.bmq", "--target", "onnx-int", "-o", tmp_path / "i.onnx"]))
    ok(["export", tmp_path / "kd.bmq", "--target", "hls", "--pe", "2", "-o", tmp_path / "hls"])
    assert "0 mismatches" in flat(ok(["csim", tmp_path / "hls", "--images", "20"]))
    ok(["export", tmp_path / "kd.bmq", "--target", "verilog", "--pe", "4", "-o", tmp_path / "rtl"])
    assert "0 mismatches" in flat(ok(["sim", tmp_path / "rtl", "--images", "3"]))


def _random_text(draw_convs, pool, fcs) -> str:
    parts = []
    for i, (c, k, s, p) in enumerate(draw_convs):
        parts.append(f"conv{c}k{k}" + (f"s{s}" if s > 1 else "") + (f"p{min(p, k - 1)}" if min(p, k - 1) else "")
                     + " relu" + (" pool2" if pool and i == 0 else ""))
    return " ".join(parts + ["flatten"] + [f"fc{f} relu" for f in fcs] + ["fc4"])


def test_random_cnns_survive_the_round_trip_through_onnx(tmp_path):
    """Random descriptions (Hypothesis: kernels 1-7, strides 1-2, padding, pooling, depths 2-6): built in PyTorch,
    exported to ONNX, imported, the same layers and outputs; then quantized, golden = integer ONNX bit for bit."""
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    import numpy as np

    from bmhw.backends.onnx import integer, run
    from bmhw.errors import BmhwError
    from bmhw.models import cnn
    from bmhw.models.cnn import stack_text
    from bmhw.models.onnx_import import import_onnx
    from bmhw.nn import to_bm
    from bmhw.quant import quantize

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(convs=st.lists(st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 2), st.integers(0, 3)),
                          min_size=1, max_size=4),
           pool=st.booleans(), fcs=st.lists(st.integers(2, 16), max_size=1), seed=st.integers(0, 50))
    def check(convs, pool, fcs, seed):
        text = _random_text(convs, pool, fcs)
        torch.manual_seed(seed)
        try:
            model = cnn(text, input_size=20)
        except BmhwError:
            assume(False)
        path = export_onnx_shape(model, tmp_path / "r.onnx", (1, 20, 20))
        imported = import_onnx(path)
        assert stack_text(imported.args["stack"]) == stack_text(model.arch_args["stack"])
        x = torch.rand(3, 1, 20, 20)
        with torch.no_grad():
            assert torch.allclose(imported.model(x), model(x), rtol=1e-4, atol=1e-5)
        images = np.random.default_rng(seed).integers(0, 256, (6, 1, 20, 20)).astype(np.uint8)
        net = quantize(to_bm(imported.model, branches=1.5), images)
        assert run.golden_mismatch(net, run.session_from_model(integer.build(net), threads=1), images) is None

    check()


def export_onnx_shape(model: nn.Module, path, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.rand(2, *shape), str(path), input_names=["image"],
                          output_names=["logits"], dynamo=False, dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("text", ["conv3k5s2p2 relu conv5k1 relu pool2 flatten fc6 relu fc4",
                                  "conv2k7p3 relu pool2 conv4k3s2 relu conv4k2 relu flatten fc4"])
def test_random_architectures_bit_exact_in_csim_and_rtl(text, tmp_path):
    """Untrained BM networks of unusual shapes (stride 2 with padding, 1x1 and 2x2 kernels, 7x7 with padding),
    quantized: the HLS C-simulation and the Verilog simulation equal the golden model."""
    import numpy as np

    from bmhw.backends import hls, verilog
    from bmhw.backends.hls import csim
    from bmhw.backends.verilog import rtlsim
    from bmhw.models import cnn
    from bmhw.nn import to_bm
    from bmhw.quant import quantize

    torch.manual_seed(3)
    images = np.random.default_rng(3).integers(0, 256, (16, 1, 20, 20)).astype(np.uint8)
    net = quantize(to_bm(cnn(text, input_size=20), branches=1.5), images)
    project = hls.export(net, tmp_path / "hls", pe=2)
    csim.write_vectors(project, images[:6])
    assert csim.run(project, csim.build(project)).passed
    project = verilog.export(net, tmp_path / "rtl", pe=3)
    result = rtlsim.run(project, images[:3])
    assert result.passed and result.images == 3, result.mismatch
