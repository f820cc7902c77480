"""The ONNX commands: ``bmhw import-onnx``, ``bmhw export --target onnx | onnx-int``, ``bmhw eval MODEL.onnx``.

The acceptance path end to end: a classical LeNet trained in PyTorch, exported by ``torch.onnx.export``,
imported, converted to 1.5-branch BM, distilled from the imported teacher, and the result exported again as
an integer ONNX graph that onnxruntime runs to the golden model's accuracy. On the synthetic MNIST of
conftest.py: seconds, no real dataset.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import onnx
import pytest
import torch
from cli_runner import accuracy_of, assert_one_line_error, flat, ok, run_main

from bmhw.models.checkpoint import load_checkpoint
from bmhw.models import lenet
from bmhw.resources import examples_dir

EXAMPLE_BMQ = examples_dir() / "lenet_bm15_mnist.bmq"
EXAMPLE_PT = examples_dir() / "lenet_bm15_mnist.pt"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx_cli")


@pytest.fixture(scope="module")
def teacher_onnx(workdir, synth_arrays):
    """A classical LeNet trained in PyTorch on the synthetic MNIST and exported by torch.onnx.export: (its path,
    the PyTorch model)."""
    from bmhw.train.loop import train_classifier

    torch.manual_seed(0)
    model = lenet()
    train_classifier(model, *synth_arrays["train"], epochs=2, batch_size=32, lr=1e-2, seed=0, quiet=True)
    path = workdir / "teacher.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.rand(1, 1, 28, 28), str(path), dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    return path, model


def test_help_shows_the_onnx_commands():
    assert "import-onnx" in ok(["--help"])
    assert "onnx-int" in ok(["export", "--help"])
    assert ok(["import-onnx", "--help"]).startswith("usage: bmhw import-onnx")


def test_classical_onnx_to_a_working_bm_network(teacher_onnx, synth_mnist, workdir):
    """Acceptance: PyTorch -> ONNX -> bmhw import-onnx -> convert -> distill: a working 1.5-branch network."""
    from bmhw.train.loop import evaluate

    path, model = teacher_onnx
    teacher = workdir / "teacher.pt"
    out = flat(ok(["import-onnx", path, "-o", teacher]))
    assert "lenet" in out and "next: bmhw convert" in out
    ckpt = load_checkpoint(teacher)
    assert ckpt.config["arch"] == "lenet" and ckpt.metadata["method"] == "import-onnx"
    assert ckpt.metadata["dataset"] == "mnist" and ckpt.metadata["source"] == str(path)
    teacher_accuracy = accuracy_of(ok(["eval", teacher, "--data", synth_mnist]))
    test_images, test_labels = load_mnist_test(synth_mnist)
    assert teacher_accuracy == round(100 * evaluate(model, test_images, test_labels), 2)
    assert teacher_accuracy >= 90

    converted = workdir / "converted.pt"
    ok(["convert", teacher, "--neuron", "bm15", "--data", synth_mnist, "--calib-images", "64", "-o", converted])
    student = workdir / "student.pt"
    ok(["distill", "--teacher", teacher, "--method", "kd", "--student", converted, "--epochs", "8",
        "--data", synth_mnist, "--batch-size", "32", "--quiet", "-o", student])
    bm = load_checkpoint(student)
    assert all(spec["neuron"] == "bm15" and spec["reduce"] == "max" for spec in bm.config["layers"].values())
    assert bm.metadata["teacher"] == str(teacher)
    accuracy = accuracy_of(ok(["eval", student, "--data", synth_mnist]))
    assert accuracy >= 50, f"the distilled BM network reaches {accuracy}% (chance: 10%)"

    # ... and out again: the integer network as ONNX, run by onnxruntime, scores what the golden model scores.
    bmq, graph = workdir / "student.bmq", workdir / "student_int.onnx"
    ok(["quantize", student, "--data", synth_mnist, "--calib-images", "64", "-o", bmq])
    assert "bit for bit" in flat(ok(["export", bmq, "--target", "onnx-int", "-o", graph]))
    assert accuracy_of(ok(["eval", graph, "--data", synth_mnist])) == accuracy_of(ok(["eval", bmq, "--data",
                                                                                       synth_mnist]))


def load_mnist_test(folder):
    from bmhw.data import load_mnist

    return load_mnist(folder, "test")


def test_export_onnx_int_and_eval(tmp_path):
    """The example .bmq as an integer graph: checked against the golden model at export, the same accuracy by
    onnxruntime as by the golden model, a deterministic file."""
    path = tmp_path / "lenet_int.onnx"
    out = flat(ok(["export", EXAMPLE_BMQ, "--target", "onnx-int", "-o", path]))
    assert "onnxruntime equals the golden model bit for bit" in out and "bmhw eval" in out
    model = onnx.load(path)
    assert [o.name for o in model.graph.output][:3] == ["logits", "conv1", "pool1"]
    first = path.read_bytes()
    ok(["export", EXAMPLE_BMQ, "--target", "onnx-int", "-o", path])
    assert path.read_bytes() == first
    onnx_out = ok(["eval", path])
    assert "onnxruntime, integer graph" in flat(onnx_out) and "500 test images" in flat(onnx_out)
    assert accuracy_of(onnx_out) == accuracy_of(ok(["eval", EXAMPLE_BMQ]))
    ok(["export", EXAMPLE_BMQ, "--target", "onnx-int", "--logits-only", "-o", path])
    assert [o.name for o in onnx.load(path).graph.output] == ["logits"]


def test_export_onnx_int_of_a_checkpoint_quantizes_first(tmp_path):
    path = tmp_path / "from_pt.onnx"
    out = flat(ok(["export", EXAMPLE_PT, "--target", "onnx-int", "-o", path]))
    assert "calibration recorded in" in out and "bit for bit" in out
    assert 0 <= accuracy_of(ok(["eval", path, "--limit", "100"])) <= 100


def test_export_float_onnx_and_eval(tmp_path):
    path = tmp_path / "lenet_float.onnx"
    out = flat(ok(["export", EXAMPLE_PT, "--target", "onnx", "-o", path]))
    assert "onnxruntime matches PyTorch" in out
    onnx_accuracy = accuracy_of(ok(["eval", path]))
    assert abs(onnx_accuracy - accuracy_of(ok(["eval", EXAMPLE_PT]))) <= 0.2  # at most one near-tie of 500


@pytest.fixture()
def bad_inputs(tmp_path, teacher_onnx):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "text.onnx").write_text("not a model\n")
    model = onnx.load(teacher_onnx[0])
    next(n for n in model.graph.node if n.op_type == "Relu").op_type = "Softsign"
    onnx.save(model, folder / "softsign.onnx")
    from bmhw.models import onnx_export as onnx_float
    from torch import nn

    onnx_float.export(nn.Sequential(nn.Flatten(), nn.Linear(12, 3)), folder / "small.onnx", (3, 2, 2))
    onnx_float.export(nn.Sequential(nn.Conv2d(3, 2, (1, 2)), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3)),
                      folder / "oblong.onnx", (3, 2, 2))
    torch.manual_seed(0)
    from bmhw.models.checkpoint import save_checkpoint

    save_checkpoint(folder / "bm4.pt", lenet("bm4"))
    # External data that points out of the model's folder, at a file that really holds the weights.
    onnx.save(model, tmp_path / "escape.onnx", save_as_external_data=True, location="secret.bin", size_threshold=0)
    escape = onnx.load(tmp_path / "escape.onnx", load_external_data=False)
    for tensor in escape.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.bin"
    (folder / "escape.onnx").write_bytes(escape.SerializeToString())
    nan = onnx.load(teacher_onnx[0])
    nan.graph.initializer[0].float_data[:] = []
    nan.graph.initializer[0].raw_data = np.full(onnx.numpy_helper.to_array(nan.graph.initializer[0]).shape, np.nan,
                                                np.float32).tobytes()
    onnx.save(nan, folder / "nan.onnx")
    return folder


ERROR_CASES = {
    "import random bytes": (["import-onnx", "{in}/random.onnx", "-o", "{out}"], "is not an ONNX model"),
    "import text": (["import-onnx", "{in}/text.onnx", "-o", "{out}"], "is not an ONNX model"),
    "import missing": (["import-onnx", "{in}/missing.onnx", "-o", "{out}"], "not found"),
    "import a checkpoint": (["import-onnx", str(EXAMPLE_PT), "-o", "{out}"], "is not an ONNX model"),
    "import unsupported op": (["import-onnx", "{in}/softsign.onnx", "-o", "{out}"],
                              "node '/Relu' is a Softsign operator"),
    "import not a bmhw architecture": (["import-onnx", "{in}/oblong.onnx", "-o", "{out}"],
                                       "bmhw's convolutions have square kernels"),
    "import external data outside its folder": (["import-onnx", "{in}/escape.onnx", "-o", "{out}"],
                                                "keeps its data in '../secret.bin', outside the model's folder"),
    "import NaN weights": (["import-onnx", "{in}/nan.onnx", "-o", "{out}"], "holds NaN or infinite values"),
    "eval random bytes": (["eval", "{in}/random.onnx"], "is not an ONNX model"),
    "eval missing": (["eval", "{in}/missing.onnx"], "not found"),
    "eval wrong input shape": (["eval", "{in}/small.onnx"], "takes inputs of shape 3x2x2"),
    "export float of a bmq": (["export", str(EXAMPLE_BMQ), "--target", "onnx", "-o", "{out}"], "--target onnx-int"),
    "export int of a 4-branch network": (["export", "{in}/bm4.pt", "--target", "onnx-int", "-o", "{out}"],
                                         "1.5 branches"),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_onnx_errors(case, bad_inputs, tmp_path):
    argv, fragment = ERROR_CASES[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [a.format(**{"in": bad_inputs, "out": out_dir / "result"}) for a in argv]
    before = sorted(os.listdir(bad_inputs))
    code, _, err = run_main(argv)
    assert fragment in assert_one_line_error(code, err)
    assert os.listdir(out_dir) == [], "a failed command left files behind"
    assert sorted(os.listdir(bad_inputs)) == before
