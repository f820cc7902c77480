"""Fuzzing the .bmq loader with semantic mutations of the example networks of every family (issue: "nothing bad
gets in"): each mutant is refused in one line or accepted and then computed bit for bit alike by the golden model
and the integer ONNX graph, inside its proven ranges; the BM LeNet with several maxima per output also through
mutations of its groups and weight signs. Fixed seeds: the same mutants on every run."""

from __future__ import annotations

import numpy as np
import pytest

from bmq_mutations import check_mutant, memory_cap, mutants
from cli_runner import run_main
from bmhw.resources import examples_dir

CHECKPOINTS = {"classical": "lenet_classical_mnist.pt", "adder": "lenet_adder_pkkd_mnist.pt",
               "bise": "lenet_bise_mnist.pt", "bm15_maxima": "lenet_bm15_maxima_mnist.pt"}
# bm15_maxima: the BM LeNet with several maxima per output, every layer split by sign (grouped BM layers).
FAMILIES = ("bm15", "classical", "adder", "bise", "bm15_maxima")
# The address space one mutant's checks may take beyond what the test process holds (a larger demand is a MemoryError).
MEMORY_GIB = 6
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 1, 28, 28))


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> dict:
    """The .bmq bytes of each family's example network (the BM one as shipped, the others quantized here)."""
    folder = tmp_path_factory.mktemp("bmq")
    out = {"bm15": (examples_dir() / "lenet_bm15_mnist.bmq").read_bytes()}
    for family, name in CHECKPOINTS.items():
        code, _, err = run_main(["quantize", examples_dir() / name, "-o", folder / f"{family}.bmq"])
        assert code == 0, err
        out[family] = (folder / f"{family}.bmq").read_bytes()
    return out


def _run(examples, tmp_path, family: str, seed: int, count: int) -> dict:
    """Counts of the outcomes; any failure is an AssertionError naming the mutation, except that mutants whose checks
    ask for more than MEMORY_GIB are collected and raised as one MemoryError at the end, once all others passed."""
    counts = {"refused": 0, "accepted": 0}
    path, memory = tmp_path / "mutant.bmq", []
    with memory_cap(MEMORY_GIB):
        for mutant in mutants(examples[family], seed, count):
            path.write_bytes(mutant.data)
            try:
                counts[check_mutant(path, IMAGES)] += 1
            except MemoryError:
                memory.append(mutant.what)
            except Exception as err:  # noqa: BLE001 - any other exception is the finding; name the mutation
                raise AssertionError(f"{family} mutant ({mutant.what}): {type(err).__name__}: {err}") from err
    if memory:
        raise MemoryError(f"{family}: {len(memory)} mutant(s) asked for more than {MEMORY_GIB} GiB: {memory}")
    return counts


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_mutants_of_every_family(examples, tmp_path, family):
    counts = _run(examples, tmp_path, family, seed=1, count=25)
    # Both outcomes occur: the mutations reach the checks, and not every change is one they refuse.
    assert counts["refused"] > 0 and counts["accepted"] > 0, counts


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_250_mutants_of_every_family(examples, tmp_path, family):
    counts = _run(examples, tmp_path, family, seed=2, count=250)
    assert counts["refused"] + counts["accepted"] == 250


@pytest.mark.parametrize("family", FAMILIES)
def test_the_command_line_refuses_a_mutant_in_one_line_and_writes_nothing(examples, tmp_path, family):
    """Through bmhw export as a user would: exit 2, one line on stderr, no file written; or exit 0. (The network with
    several maxima through the integer ONNX export, which carries them.)"""
    outcomes = set()
    backend = "onnx-int" if family == "bm15_maxima" else "verilog"
    for n, mutant in enumerate(mutants(examples[family], 3, 12)):
        path, target = tmp_path / f"m{n}.bmq", tmp_path / f"m{n}.onnx"
        path.write_bytes(mutant.data)
        code, out, err = run_main(["export", path, "--target", backend, "-o",
                                   target if backend == "onnx-int" else tmp_path / f"m{n}"])
        if code == 2:
            assert err.count("\n") == 1 and "Traceback" not in out + err, (mutant.what, err)
            assert not (tmp_path / f"m{n}").exists() and not target.exists()
        else:
            assert code == 0, (mutant.what, code, err)
        outcomes.add(code)
    assert outcomes == {0, 2}, outcomes


def test_a_zip_bomb_is_refused_before_it_is_read(examples, tmp_path):
    from bmq_mutations import npy, read, write

    from bmhw.errors import BmhwError
    from bmhw.ir import load_bmq

    doc, entries = read(examples["bm15"])
    entries["conv1/bias.npy"] = npy(np.zeros(16 << 20, np.int64))  # 128 MiB of zeros, about 128 KiB zipped
    path = tmp_path / "bomb.bmq"
    path.write_bytes(write(doc, entries))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(BmhwError, match=r"entry 'conv1/bias.npy' unpacks to \d+ bytes, more than a \(6,\) table"):
        load_bmq(path)
