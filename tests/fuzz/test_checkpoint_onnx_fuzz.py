"""Fuzzing the command line with semantic mutations of checkpoints (every family's example) and of ONNX files
(the integer graph through bmhw eval, a classical CNN through bmhw import-onnx): each run exits 0, or exits 2 with
one line and no traceback. Fixed seeds: the same mutants on every run."""

from __future__ import annotations

import warnings

import pytest
import torch

from checkpoint_mutations import check_command, checkpoint_mutants, onnx_mutants
from cli_runner import ok
from bmhw.models.checkpoint import load_checkpoint
from bmhw.resources import examples_dir

EXAMPLES = ("lenet_bm15_mnist.pt", "lenet_classical_mnist.pt", "lenet_adder_pkkd_mnist.pt", "lenet_bise_mnist.pt")


def _run(mutants, tmp_path, suffix: str, command) -> set:
    codes = set()
    for n, (what, data) in enumerate(mutants):
        path = tmp_path / f"m{n}{suffix}"
        path.write_bytes(data)
        try:
            codes.add(check_command(command(path)))
        except Exception as err:  # noqa: BLE001 - name the mutation that found it
            raise AssertionError(f"{path.name} ({what}): {type(err).__name__}: {err}") from err
    return codes


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("command", ["eval", "quantize"])
def test_checkpoint_mutants(tmp_path, name, command):
    count = 40 if command == "eval" else 25
    codes = _run(checkpoint_mutants(examples_dir() / name, seed=11, count=count), tmp_path, ".pt",
                 lambda p: ["eval", p, "--limit", "20"] if command == "eval" else ["quantize", p, "-o", p.with_suffix(
                     ".bmq")])
    assert codes == {0, 2}  # the mutations reach the checks, and some leave a network that still runs


def test_integer_onnx_mutants(tmp_path):
    import onnx

    ok(["export", examples_dir() / "lenet_bm15_mnist.bmq", "--target", "onnx-int", "-o", tmp_path / "int.onnx"])
    model = onnx.load(tmp_path / "int.onnx")
    assert _run(onnx_mutants(model, seed=12, count=60), tmp_path, ".onnx", lambda p: ["eval", p, "--limit", "20"]) \
        == {0, 2}


def test_classical_onnx_mutants_through_import(tmp_path):
    import onnx

    model = load_checkpoint(examples_dir() / "lenet_classical_mnist.pt").model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.rand(2, 1, 28, 28), str(tmp_path / "lenet.onnx"), input_names=["image"],
                          output_names=["logits"], dynamo=False, dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    mutants = onnx_mutants(onnx.load(tmp_path / "lenet.onnx"), seed=13, count=80)
    assert _run(mutants, tmp_path, ".onnx", lambda p: ["import-onnx", p, "-o", p.with_suffix(".pt")]) == {0, 2}
