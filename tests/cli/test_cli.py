"""Tests for the ``bmhw`` command line, on the synthetic MNIST of conftest.py (no real dataset)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bmhw.models.checkpoint import load_checkpoint
from bmhw.models import lenet
from cli_runner import BMHW_SCRIPT, accuracy_of, assert_one_line_error, flat, ok, run_main

COMMANDS = ("train", "convert", "quantize", "eval", "export", "csim", "sim", "gates", "demo")
# Small, fast and still well above chance on the synthetic data.
FAST_TRAIN = ["--epochs", "2", "--batch-size", "32", "--lr", "1e-2", "--quiet"]


def neuron_of(spec: dict) -> dict:
    """A layer spec from a checkpoint config without its ``bias`` entry."""
    return {k: v for k, v in spec.items() if k != "bias"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def small_mnist(workdir, mnist_writer) -> Path:
    """64 train and 32 test images: for the (slow on CPU) BM runs, whose train command also evaluates."""
    return mnist_writer(workdir / "small_mnist", n_train=64, n_test=32)


@pytest.fixture(scope="module")
def classical_ckpt(workdir, synth_mnist) -> Path:
    """A classical LeNet trained by ``bmhw train`` on the synthetic data (shared, read-only)."""
    path = workdir / "classical.pt"
    ok(["train", "--data", synth_mnist, *FAST_TRAIN, "-o", path])
    return path


# --------------------------------------------------------------------------------------------
# help and version


def test_help_exits_zero_and_lists_commands():
    code, out, err = run_main(["--help"])
    assert code == 0 and err == ""
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    code, out, err = run_main([command, "--help"])
    assert code == 0 and err == ""
    assert out.startswith(f"usage: bmhw {command}")


def test_version():
    from bmhw import __version__

    code, out, _ = run_main(["--version"])
    assert code == 0 and out.strip() == f"bmhw {__version__}"


def test_no_command_is_a_usage_error():
    code, out, err = run_main([])
    assert code == 2 and "usage: bmhw" in err and "Traceback" not in err


def test_console_script(tmp_path):
    """The installed ``bmhw`` entry point, in a real process, in a folder outside the repository."""
    assert BMHW_SCRIPT.exists(), f"no console script at {BMHW_SCRIPT}: is bmhw installed in this venv?"
    done = subprocess.run([str(BMHW_SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "usage: bmhw" in done.stdout
    for command in COMMANDS:
        done = subprocess.run([str(BMHW_SCRIPT), command, "--help"], capture_output=True, text=True, cwd=tmp_path,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    done = subprocess.run([str(BMHW_SCRIPT), "eval", str(bad)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    line = assert_one_line_error(done.returncode, done.stderr)
    assert "bad.pt" in line
    assert sorted(os.listdir(tmp_path)) == ["bad.pt"]


def test_help_does_not_import_torch():
    code = ("import sys\nfrom bmhw.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


# --------------------------------------------------------------------------------------------
# train and eval


def test_train_writes_a_checkpoint_that_eval_scores(classical_ckpt, synth_mnist):
    ckpt = load_checkpoint(classical_ckpt)
    assert all(neuron_of(spec) == {"neuron": "classical"} for spec in ckpt.config["layers"].values())
    meta = ckpt.metadata
    assert meta["dataset"] == "mnist" and meta["method"] == "direct"
    assert meta["train_images"] == 512 and meta["test_images"] == 256
    assert meta["seed"] == 0 and meta["epochs"] == 2 and "bmhw_version" in meta
    out = ok(["eval", classical_ckpt, "--data", synth_mnist])
    accuracy = accuracy_of(out)
    assert accuracy > 50.0, f"synthetic classes should be learnable, got {accuracy}%"
    assert f"{meta['accuracy'] * 100:.2f}" == f"{accuracy:.2f}"  # train evaluated the same test split
    assert "256 test images" in flat(out)
    # The same numbers in another run: evaluation is deterministic.
    assert accuracy_of(ok(["eval", classical_ckpt, "--data", synth_mnist])) == accuracy


def test_eval_train_split_and_limit(classical_ckpt, synth_mnist):
    out = ok(["eval", classical_ckpt, "--data", synth_mnist, "--split", "train", "--limit", "100"])
    assert "100 train images" in flat(out)
    assert 0.0 <= accuracy_of(out) <= 100.0


def test_eval_builtin_sample(classical_ckpt):
    out = ok(["eval", classical_ckpt])
    accuracy_of(out)
    text = flat(out)
    assert "500 test images" in text and "built-in MNIST sample" in text


def test_train_is_reproducible(small_mnist, tmp_path):
    argv = ["train", "--data", small_mnist, "--epochs", "1", "--batch-size", "16", "--shift", "2", "--quiet"]
    ok(argv + ["-o", tmp_path / "a.pt"])
    ok(argv + ["-o", tmp_path / "b.pt"])
    ok(argv + ["--seed", "1", "-o", tmp_path / "c.pt"])
    a, b, c = (load_checkpoint(tmp_path / f"{n}.pt").model.state_dict() for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_train_bm15_round_trip(small_mnist, tmp_path):
    path = tmp_path / "bm15.pt"
    out = ok(["train", "--data", small_mnist, "--neuron", "bm15", "--limit", "48", "--epochs", "1",
              "--batch-size", "16", "--quiet", "-o", path])
    assert "on 48 mnist images" in flat(out)
    ckpt = load_checkpoint(path)
    assert all(neuron_of(spec) == {"neuron": "bm15", "reduce": "max"} for spec in ckpt.config["layers"].values())
    assert ckpt.metadata["train_images"] == 48 and ckpt.metadata["test_images"] == 32
    out = ok(["eval", path, "--data", small_mnist])
    assert f"{ckpt.metadata['accuracy'] * 100:.2f}" == f"{accuracy_of(out):.2f}"
    assert sorted(os.listdir(tmp_path)) == ["bm15.pt"]


def test_train_lse_options_reach_the_checkpoint(small_mnist, tmp_path):
    path = tmp_path / "lse.pt"
    ok(["train", "--data", small_mnist, "--neuron", "bm15", "--reduce", "lse", "--alpha", "8", "--learn-alpha",
        "--limit", "32", "--epochs", "1", "--batch-size", "32", "--quiet", "-o", path])
    specs = load_checkpoint(path).config["layers"]
    assert all(s["neuron"] == "bm15" and s["reduce"] == "lse" and s["learn_alpha"] for s in specs.values())


def test_train_default_output_name(small_mnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ok(["train", "--data", small_mnist, "--epochs", "1", "--quiet"])
    assert sorted(os.listdir(tmp_path)) == ["lenet_classical.pt"]
    load_checkpoint(tmp_path / "lenet_classical.pt")


def test_train_without_test_split(tmp_path, mnist_writer):
    data = mnist_writer(tmp_path / "data", n_train=64, n_test=8)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (data / name).unlink()
    path = tmp_path / "m.pt"
    out = ok(["train", "--data", data, "--epochs", "1", "--quiet", "-o", path])
    assert "no test split evaluated" in flat(out)
    meta = load_checkpoint(path).metadata
    assert "accuracy" not in meta and "test_images" not in meta


def test_train_from_init_checkpoint(classical_ckpt, small_mnist, tmp_path):
    path = tmp_path / "finetuned.pt"
    ok(["train", "--data", small_mnist, "--init", classical_ckpt, "--neuron", "bm15", "--limit", "32",
        "--epochs", "1", "--batch-size", "32", "--quiet", "-o", path])
    ckpt = load_checkpoint(path)
    assert all(s["neuron"] == "bm15" for s in ckpt.config["layers"].values())
    assert ckpt.metadata["init"] == str(classical_ckpt) and "from --init" in ckpt.metadata["method"]


def test_kd_continues_from_a_bm_student(classical_ckpt, small_mnist, tmp_path):
    grown = tmp_path / "grown.pt"
    ok(["distill", "--teacher", classical_ckpt, "--method", "lwkd", "--signed", "--epochs-per-layer", "0.2",
        "--data", small_mnist, "--batch-size", "32", "--quiet", "-o", grown])
    before = load_checkpoint(grown).model.state_dict()
    out = tmp_path / "tuned.pt"
    ok(["distill", "--teacher", classical_ckpt, "--method", "kd", "--student", grown, "--epochs", "1",
        "--data", small_mnist, "--batch-size", "32", "--quiet", "-o", out])
    tuned = load_checkpoint(out)
    assert tuned.metadata["student"] == str(grown)
    after = tuned.model.state_dict()
    # The same network trained further: the signs chosen by the lwkd re-fit stay, the log-weights move.
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.endswith(".sign"))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.endswith(".v"))


@pytest.mark.parametrize("argv, method, reduce", [
    (["train", "--method", "layerwise-freeze", "--neuron", "bm4", "--epochs-per-layer", "0.5"], "layerwise-freeze",
     "max"),
    (["distill", "--method", "kd", "--neuron", "bm4", "--reduce", "lse", "--alpha", "2", "--learn-alpha-epochs",
      "0.5", "--epochs", "1"], "kd", "lse"),
    (["distill", "--method", "lse-max", "--base", "lwkd", "--alpha", "2", "--epochs-per-layer", "0.2",
      "--finetune-epochs", "0.5"], "lse-max", "max"),
    (["distill", "--method", "lwkd", "--surrogate-alpha", "8", "--epochs-per-layer", "0.2"], "lwkd", "max"),
])
def test_methods_from_the_command_line(argv, method, reduce, classical_ckpt, small_mnist, tmp_path):
    path = tmp_path / "student.pt"
    teacher = ["--init" if argv[0] == "train" else "--teacher", classical_ckpt]
    out = ok([*argv, *teacher, "--data", small_mnist, "--batch-size", "32", "--quiet", "-o", path])
    assert "test accuracy" in out
    ckpt = load_checkpoint(path)
    assert ckpt.metadata["method"] == method and ckpt.metadata["config"]["lr"] > 0
    assert all(s["neuron"] in ("bm4", "bm15") and s["reduce"] == reduce for s in ckpt.config["layers"].values())
    if method == "kd":
        # alpha learned for half an epoch, then frozen: a fixed value per layer, no longer a parameter.
        assert all(s["learn_alpha"] is False and s["alpha"] > 0 for s in ckpt.config["layers"].values())


# --------------------------------------------------------------------------------------------
# convert


@pytest.mark.parametrize("neuron,calibrate", [("bm15", False), ("bm15", True), ("bm4", False)])
def test_convert(classical_ckpt, small_mnist, tmp_path, neuron, calibrate):
    path = tmp_path / "converted.pt"
    argv = ["convert", classical_ckpt, "--neuron", neuron, "-o", path]
    if calibrate:
        argv += ["--data", small_mnist, "--calib-images", "40"]
    out = ok(argv)
    assert str(path.name) in out
    ckpt = load_checkpoint(path)
    assert all(neuron_of(spec) == {"neuron": neuron, "reduce": "max"} for spec in ckpt.config["layers"].values())
    assert ckpt.metadata["source"] == str(classical_ckpt)
    assert ckpt.metadata["dataset"] == "mnist"
    assert ("calibration re-fit" in ckpt.metadata["method"]) == calibrate
    if calibrate:
        assert ckpt.metadata["calib_images"] == 40
        assert "re-fit conv1" in out and "re-fit fc3" in out
    eval_out = ok(["eval", path, "--data", small_mnist])
    accuracy_of(eval_out)
    assert sorted(os.listdir(tmp_path)) == ["converted.pt"]


def test_convert_changes_only_what_it_should(classical_ckpt, tmp_path):
    # The 4-branch conversion stands for the same weights: its classical weights are the teacher's.
    path = tmp_path / "bm4.pt"
    ok(["convert", classical_ckpt, "--neuron", "bm4", "-o", path])
    teacher = load_checkpoint(classical_ckpt).model
    student = load_checkpoint(path).model
    for name, layer in student.weight_layers().items():
        torch.testing.assert_close(layer.classical_weight(), teacher.weight_layers()[name].weight,
                                   rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# errors: exit 2, one line on stderr, no traceback, no output file


@pytest.fixture()
def bad_files(tmp_path):
    files = tmp_path / "in"
    files.mkdir()
    (files / "random.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.manual_seed(0)
    torch.save(lenet().state_dict(), files / "bare.pt")
    (files / "empty_dir").mkdir()
    return files


ERROR_CASES = {
    "eval missing": ["eval", "{in}/missing.pt"],
    "eval random bytes": ["eval", "{in}/random.pt"],
    "eval bare state dict": ["eval", "{in}/bare.pt"],
    "eval empty data folder": ["eval", "{ckpt}", "--data", "{in}/empty_dir"],
    "eval missing data folder": ["eval", "{ckpt}", "--data", "{in}/nowhere"],
    "eval builtin train split": ["eval", "{ckpt}", "--split", "train"],
    "eval limit 0": ["eval", "{ckpt}", "--data", "{data}", "--limit", "0"],
    "train without data": ["train", "--epochs", "1", "-o", "{out}"],
    "train empty data folder": ["train", "--data", "{in}/empty_dir", "-o", "{out}"],
    "train resnet22 on mnist": ["train", "--model", "resnet22", "--data", "{data}", "-o", "{out}"],
    "train zero epochs": ["train", "--data", "{data}", "--epochs", "0", "-o", "{out}"],
    "train missing init": ["train", "--data", "{data}", "--init", "{in}/missing.pt", "-o", "{out}"],
    "train init random bytes": ["train", "--data", "{data}", "--init", "{in}/random.pt", "-o", "{out}"],
    "train alpha with max": ["train", "--data", "{data}", "--neuron", "bm15", "--alpha", "2", "-o", "{out}"],
    "train layerwise without init": ["train", "--data", "{data}", "--method", "layerwise", "--neuron", "bm4",
                                     "-o", "{out}"],
    "train layerwise classical": ["train", "--data", "{data}", "--method", "layerwise", "--init", "{ckpt}",
                                  "-o", "{out}"],
    "distill missing teacher": ["distill", "--teacher", "{in}/missing.pt", "--data", "{data}", "-o", "{out}"],
    "distill without data": ["distill", "--teacher", "{ckpt}", "-o", "{out}"],
    "distill lwkd bm4": ["distill", "--teacher", "{ckpt}", "--neuron", "bm4", "--data", "{data}", "-o", "{out}"],
    "distill student is classical": ["distill", "--teacher", "{ckpt}", "--method", "kd", "--student", "{ckpt}",
                                     "--data", "{data}", "-o", "{out}"],
    "distill lse-max without alpha": ["distill", "--teacher", "{ckpt}", "--method", "lse-max", "--data", "{data}",
                                      "-o", "{out}"],
    "distill zero surrogate alpha": ["distill", "--teacher", "{ckpt}", "--surrogate-alpha", "0", "--data", "{data}",
                                     "-o", "{out}"],
    "train negative surrogate alpha": ["train", "--data", "{data}", "--neuron", "bm15", "--surrogate-alpha", "-2",
                                       "-o", "{out}"],
    "convert missing": ["convert", "{in}/missing.pt", "-o", "{out}"],
    "convert random bytes": ["convert", "{in}/random.pt", "-o", "{out}"],
    "convert bare state dict": ["convert", "{in}/bare.pt", "-o", "{out}"],
    "convert to classical": ["convert", "{ckpt}", "--neuron", "classical", "-o", "{out}"],
    "convert empty calibration folder": ["convert", "{ckpt}", "--data", "{in}/empty_dir", "-o", "{out}"],
    "convert zero calibration images": ["convert", "{ckpt}", "--data", "{data}", "--calib-images", "0",
                                        "-o", "{out}"],
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_user_errors(case, bad_files, classical_ckpt, synth_mnist, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    values = {"in": bad_files, "ckpt": classical_ckpt, "data": synth_mnist, "out": out_dir / "result.pt"}
    argv = [arg.format(**values) for arg in ERROR_CASES[case]]
    inputs_before = sorted(os.listdir(bad_files))
    code, out, err = run_main(argv)
    assert_one_line_error(code, err)
    assert "Traceback" not in out
    assert os.listdir(out_dir) == [], "a failed command left files behind"
    assert sorted(os.listdir(bad_files)) == inputs_before


def test_convert_of_a_bm_checkpoint_is_refused(classical_ckpt, tmp_path):
    bm = tmp_path / "bm.pt"
    ok(["convert", classical_ckpt, "-o", bm])
    code, _, err = run_main(["convert", bm, "-o", tmp_path / "again.pt"])
    assert "already has BM layers" in assert_one_line_error(code, err)
    assert sorted(os.listdir(tmp_path)) == ["bm.pt"]


def test_error_messages_name_the_problem(bad_files, classical_ckpt):
    code, _, err = run_main(["eval", bad_files / "bare.pt"])
    assert "bare state dict" in assert_one_line_error(code, err)
    code, _, err = run_main(["train", "--epochs", "1"])
    assert "--data" in assert_one_line_error(code, err)
    code, _, err = run_main(["eval", classical_ckpt, "--data", bad_files / "empty_dir"])
    assert "t10k-images-idx3-ubyte" in assert_one_line_error(code, err)


def test_output_that_is_a_folder(classical_ckpt, tmp_path):
    # Once a traceback (IsADirectoryError from os.replace).
    folder = tmp_path / "a_folder"
    folder.mkdir()
    code, _, err = run_main(["convert", classical_ckpt, "-o", folder])
    assert "a_folder" in assert_one_line_error(code, err)
    assert os.listdir(folder) == [] and sorted(os.listdir(tmp_path)) == ["a_folder"]


# --- quantize and eval of .bmq files ----------------------------------------------------------------

def test_quantize_then_eval_bmq(classical_ckpt, synth_mnist, tmp_path):
    bm15 = tmp_path / "bm15.pt"
    ok(["convert", classical_ckpt, "--neuron", "bm15", "-o", bm15])
    bmq = tmp_path / "model.bmq"
    ok(["quantize", bm15, "--data", synth_mnist, "--calib-images", "64", "-o", bmq])
    first = bmq.read_bytes()
    ok(["quantize", bm15, "--data", synth_mnist, "--calib-images", "64", "-o", bmq])
    assert bmq.read_bytes() == first  # deterministic
    out = ok(["eval", bmq, "--data", synth_mnist])
    assert 0 <= accuracy_of(out) <= 100
    assert "500 test images" in flat(ok(["eval", bmq]))


@pytest.mark.parametrize("argv_tail, fragment", [
    (["--act-bits", "1"], "--act-bits must be between"),
    (["--exp-frac-bits", "60", "--guard-bits", "40"], "needs"),
])
def test_quantize_errors(classical_ckpt, synth_mnist, tmp_path, argv_tail, fragment):
    bm15 = tmp_path / "bm15.pt"
    ok(["convert", classical_ckpt, "--neuron", "bm15", "-o", bm15])
    code, _, err = run_main(["quantize", bm15, "--data", synth_mnist, "-o", tmp_path / "m.bmq", *argv_tail])
    assert fragment in assert_one_line_error(code, err)
    assert not (tmp_path / "m.bmq").exists()


def test_quantize_refuses_a_network_mixing_bm_and_classical_layers(tmp_path):
    from bmhw.models.checkpoint import save_checkpoint
    from bmhw.models import lenet

    mixed = save_checkpoint(tmp_path / "mixed.pt", lenet("bm15", layers={"fc3": {"neuron": "classical"}}))
    code, _, err = run_main(["quantize", mixed, "-o", tmp_path / "m.bmq"])
    assert "layer fc3 is a classical Linear in a BM network" in assert_one_line_error(code, err)
    assert not (tmp_path / "m.bmq").exists()


def test_eval_of_a_damaged_bmq(tmp_path):
    bad = tmp_path / "bad.bmq"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = run_main(["eval", bad])
    assert "not a valid .bmq file" in assert_one_line_error(code, err)


def test_quantize_of_a_bmq_says_it_is_already_quantized(tmp_path):
    from bmhw.resources import examples_dir

    code, _, err = run_main(["quantize", examples_dir() / "lenet_bm15_mnist.bmq", "-o", tmp_path / "m.bmq"])
    assert "already a quantized network" in assert_one_line_error(code, err)


# --------------------------------------------------------------------------------------------
# AdderNet checkpoints: quantize / eval / export (docs/datapath.md, "The adder layer")


@pytest.fixture(scope="module")
def adder_ckpt(workdir, synth_mnist) -> Path:
    """A random adder LeNet (batch norms away from the identity, one negative gamma each) as a checkpoint."""
    from bmhw.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = lenet("adder")
    g = torch.Generator().manual_seed(0)
    for mod in model.modules():
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(-torch.rand(n, generator=g) * 20 - 5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 50 + 1)
                mod.weight.copy_(torch.randn(n, generator=g))
                mod.weight[0] = -abs(mod.weight[0]) - 0.1
    path = save_checkpoint(workdir / "adder.pt", model.eval())
    ok(["calibrate", path, "--data", synth_mnist, "--calib-images", "64"])  # its ranges, recorded as training does
    return path


def test_adder_quantize_eval_export(adder_ckpt, tmp_path):
    from bmhw import golden
    from bmhw.data import load_dataset
    from bmhw.ir import load_bmq

    bmq = tmp_path / "adder.bmq"
    out = flat(ok(["quantize", adder_ckpt, "--calib-images", "64", "--scale-bits", "12", "-o", bmq]))
    assert "R = " in out and f"wrote {bmq}" in out
    net = load_bmq(bmq)
    assert net.is_adder and [layer["scale_bits"] for layer in net.weight_layers()] == [12] * 5
    images, labels = load_dataset("mnist", None, "test")
    want = float((golden.predict(net, images[:40]) == labels[:40]).mean()) * 100
    assert accuracy_of(ok(["eval", bmq, "--limit", "40"])) == pytest.approx(want, abs=0.005)
    # export of the checkpoint quantizes it with the same options: the same IR, byte for byte
    ok(["export", adder_ckpt, "--calib-images", "64", "--scale-bits", "12", "--target", "hls", "-o", tmp_path / "hls"])
    assert (tmp_path / "hls" / "model.bmq").read_bytes() == bmq.read_bytes()
    onnx_out = flat(ok(["export", bmq, "--target", "onnx-int", "-o", tmp_path / "adder.onnx"]))
    assert "bit for bit" in onnx_out
    assert accuracy_of(ok(["eval", tmp_path / "adder.onnx", "--limit", "40"])) == pytest.approx(want, abs=0.005)


@pytest.mark.slow
def test_adder_csim_from_the_command_line(adder_ckpt, tmp_path):
    ok(["export", adder_ckpt, "--calib-images", "32", "--target", "hls", "--pe", "4", "-o", tmp_path / "hls"])
    out = flat(ok(["csim", tmp_path / "hls", "--images", "4"]))
    assert "0 mismatches" in out and "bit-exact" in out


@pytest.mark.parametrize("bits", ["1", "33", "0"])
def test_adder_bad_scale_bits(adder_ckpt, tmp_path, bits):
    code, _, err = run_main(["quantize", adder_ckpt, "--scale-bits", bits, "-o", tmp_path / "m.bmq"])
    assert "--scale-bits must be an integer between 2 and 32" in assert_one_line_error(code, err)
    assert not (tmp_path / "m.bmq").exists()


def test_quantize_refuses_a_network_mixing_adder_and_bm_layers(tmp_path):
    from bmhw.models.checkpoint import save_checkpoint

    mixed = save_checkpoint(tmp_path / "mixed.pt", lenet("adder", layers={"fc3": {"neuron": "bm15"}}))
    code, _, err = run_main(["quantize", mixed, "-o", tmp_path / "m.bmq"])
    assert "layer fc3 is a BMLinear layer in an AdderNet network" in assert_one_line_error(code, err)
    assert not (tmp_path / "m.bmq").exists()


def test_piped_output_never_cuts_a_number_a_name_or_a_path(tmp_path):
    """Off a terminal (a pipe, a file) tables are laid out at the width they need and lines do not wrap: no
    ellipsis in a table cell, a long output path stays on one line, a command named in a message stays whole."""
    from bmhw.resources import examples_dir

    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "twin"
    done = subprocess.run([str(BMHW_SCRIPT), "gates", str(examples_dir() / "lenet_bm15_mnist.bmq"), "--twin",
                           str(examples_dir() / "lenet_classical_mnist.pt")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and "classical" in done.stdout
    done = subprocess.run([str(BMHW_SCRIPT), "export", str(examples_dir() / "lenet_classical_mnist.pt"), "--target",
                           "verilog", "-o", str(deep)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(str(deep) in line for line in lines)  # the path whole on one line
    assert any(f"bmhw sim {deep}" in line for line in lines)  # the next command whole on one line
    assert "…" not in done.stdout
