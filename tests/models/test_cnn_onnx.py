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
