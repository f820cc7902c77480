"""Nothing bad gets in: checkpoints with non-finite tensors or absurd sizes, raw pickles, clock periods that are not
numbers, training lengths a method would ignore, and a missing build tool of bmhw sim are each refused with exit
status 2 and one line on stderr, before any output is written."""

from __future__ import annotations

import os
import pickle
import subprocess

import pytest
import torch

from bmhw.resources import examples_dir
from cli_runner import BMHW_SCRIPT, assert_one_line_error, ok, run_main

CLASSICAL = examples_dir() / "lenet_classical_mnist.pt"
BM15 = examples_dir() / "lenet_bm15_mnist.pt"
BMQ = examples_dir() / "lenet_bm15_mnist.bmq"


def damaged(tmp_path, source, edit, name="damaged.pt"):
    """``source`` with ``edit(data)`` applied to its loaded contents, saved as ``tmp_path / name``."""
    data = torch.load(source, weights_only=True)
    edit(data)
    path = tmp_path / name
    torch.save(data, path)
    return path


def refused(argv, *fragments) -> str:
    """Run ``argv``; expect exit 2 and one line holding every fragment; return the line."""
    code, out, err = run_main(argv)
    line = assert_one_line_error(code, err)
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in out
    return line


# --- checkpoints --------------------------------------------------------------------------------------------


def poison(data):
    data["state_dict"]["conv1.v"][0, 0] = float("nan")


@pytest.mark.parametrize("command", [["eval"], ["quantize"]])
def test_a_nan_checkpoint_is_refused_not_scored_or_quantized(tmp_path, command):
    # Once: eval printed "accuracy: 0.00%" and exited 0; quantize ended in tracebacks.
    path = damaged(tmp_path, BM15, poison, "nan.pt")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [*command, path] + (["-o", out_dir / "net.bmq"] if command == ["quantize"] else [])
    refused(argv, f"{path}: tensor 'conv1.v' holds NaN or infinite values; re-train or restore the checkpoint")
    assert os.listdir(out_dir) == []


def test_a_checkpoint_asking_for_huge_layers_is_refused_before_building(tmp_path):
    def widen(data):
        data["config"]["args"]["widths"] = [6, 16, 100_000, 84]  # 25.6 million weights in fc1 alone

    path = damaged(tmp_path, CLASSICAL, widen)
    refused(["eval", path], "args.widths[2] = 100000 is outside the allowed range 1..4096")


def test_a_raw_pickle_gives_one_line_and_no_warning(tmp_path):
    # torch warns about the pickle protocol before failing; in a real process that warning reached stderr.
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"weights": torch.zeros(3)}, protocol=4))
    done = subprocess.run([str(BMHW_SCRIPT), "eval", str(path)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    line = assert_one_line_error(done.returncode, done.stderr)
    assert "raw.pt" in line and done.stdout == ""


# --- clock periods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clock", ["inf", "nan", "0", "-5", "-inf"])
@pytest.mark.parametrize("target", ["hls", "verilog"])
def test_export_refuses_a_clock_that_is_not_a_positive_number(tmp_path, clock, target):
    # Once: --clock inf wrote create_clock -period inf into run_hls.tcl.
    refused(["export", BMQ, "--target", target, f"--clock={clock}", "-o", tmp_path / "project"],
            f"--clock must be a positive finite number, got {float(clock)}")
    assert os.listdir(tmp_path) == []


def test_sim_refuses_an_infinite_clock(tmp_path):
    refused(["sim", tmp_path, "--clock", "inf"], "--clock must be a positive finite number, got inf")


# --- training lengths that a method would ignore ---------------------------------------------------------------


@pytest.mark.parametrize("argv, option, lengths", [
    (["train", "--method", "layerwise", "--neuron", "bm15", "--init", CLASSICAL, "--epochs", "3"], "--epochs",
     "--method layerwise, which would ignore it: its training length is set by --epochs-per-layer"),
    (["train", "--method", "layerwise-freeze", "--neuron", "bm4", "--init", CLASSICAL, "--epochs", "3"], "--epochs",
     "set by --epochs-per-layer"),
    (["train", "--epochs-per-layer", "2"], "--epochs-per-layer", "--method direct, which would ignore it: its "
     "training length is set by --epochs"),
    (["distill", "--teacher", CLASSICAL, "--method", "lwkd", "--epochs", "2"], "--epochs",
     "set by --epochs-per-layer, --max-epochs"),
    (["distill", "--teacher", CLASSICAL, "--epochs", "2"], "--epochs", "--method lwkd"),  # lwkd is the default
    (["distill", "--teacher", CLASSICAL, "--method", "kd", "--epochs-per-layer", "1"], "--epochs-per-layer",
     "set by --epochs"),
    (["distill", "--teacher", CLASSICAL, "--method", "pkkd", "--finetune-epochs", "1"], "--finetune-epochs",
     "set by --epochs"),
    (["distill", "--teacher", CLASSICAL, "--method", "lse-max", "--base", "lwkd", "--alpha", "2", "--epochs", "1"],
     "--epochs", "--method lse-max --base lwkd, which would ignore it: its training length is set by "
     "--finetune-epochs, --epochs-per-layer, --max-epochs"),
])
def test_a_training_length_the_method_ignores_is_refused(argv, option, lengths, synth_mnist, tmp_path):
    out = tmp_path / "out.pt"
    refused([*argv, "--data", synth_mnist, "--quiet", "-o", out], f"{option} does not apply to", lengths)
    assert not out.exists()


def test_without_epochs_direct_training_runs_its_default(mnist_writer, tmp_path):
    data = mnist_writer(tmp_path / "data", n_train=32, n_test=16)
    path = tmp_path / "m.pt"
    ok(["train", "--data", data, "--batch-size", "32", "--quiet", "-o", path])
    assert torch.load(path, weights_only=True)["metadata"]["epochs"] == 6  # the documented default


# --- bmhw sim without the tools Verilator's build runs -------------------------------------------------------------


@pytest.fixture(scope="module")
def rtl_project(tmp_path_factory):
    from bmhw.backends import verilog
    from bmhw.ir import load_bmq

    return verilog.export(load_bmq(BMQ), tmp_path_factory.mktemp("rtl") / "lenet")


@pytest.mark.parametrize("missing, package", [("perl", "perl"), ("make", "make"), ("c++", "g++")])
def test_sim_names_the_missing_build_tool(rtl_project, tmp_path, monkeypatch, missing, package):
    # A PATH of stand-ins for the tools present: the test needs none of them installed, nor any of them absent.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in {"perl", "make", "c++"} - {missing}:
        (tools / tool).write_text("#!/bin/sh\nexit 0\n")
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    line = refused(["sim", rtl_project, "--images", "1"], f"bmhw sim needs {missing} ",
                   "there is none on PATH", f"install {package}")
    assert "return code" not in line
    assert not (rtl_project / "sim_build" / "plain" / "bmhw_net_tb").exists()
