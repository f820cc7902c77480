"""Runner of the unit benches (sim/test_blocks.py): builds a harness around one BM layer of a generated
Verilog project with Verilator (cocotb's runner) and runs the block tests or the layer test on it.

    bench = build_blocks(project, "conv1", build_root)        # bmhw_blocks_tb with conv1's parameters
    results = run(bench)                                       # {test: BenchResult}
    bench = build_layer(project, "conv1", build_root)          # bmhw_layer_tb around conv1
    results = run(bench, codes=codes)                          # codes: (N, *in_shape) input codes

A build is reused by any number of runs, also on another project folder with the same network and PE
(``run(bench, project=...)``: the ROM files are read at the start of each simulation, from the project
folder the simulation runs in). The layer's parameters come from bmhw.backends.verilog.bm.plan with
the PE the project was exported with (design.json). NumPy only, never torch.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmhw.backends.project import layer_names
from bmhw.backends.verilog.rtlsim import lint as verilator_lint
from bmhw.backends.verilog.rtlsim import load_design, require_cocotb, verilator_bin, verilator_on_path
from bmhw.backends.verilog import TOP, verilog_value
from bmhw.backends.verilog.adder import plan as adder_layer_plan
from bmhw.backends.verilog.bise import plan as bise_layer_plan
from bmhw.backends.verilog.bm import plan as bm_layer_plan
from bmhw.ir import ADDER_OPS, BISE_OPS
from bmhw.errors import BmhwError
from bmhw.logs import first_problem_in
from bmhw.resources import sim_dir

BLOCKS_TB = "bmhw_blocks_tb"
LAYER_TB = "bmhw_layer_tb"
TEST_MODULE = "bmhw.sim.test_blocks"
ARRAY_PE = 4
CLOCK_NS = 10.0
# The cocotb tests of sim/test_blocks.py, by harness.
BLOCK_TESTS = ("rom_ln", "rom_exp", "exp_shift", "addmax_pe", "pe_array", "correction", "requantize")
LAYER_TESTS = ("bm_layer",)
# The AdderNet layer's blocks: the adder PE, an adder PE array and the requantization.
ADDER_BLOCKS_TB = "bmhw_adder_blocks_tb"
ADDER_BLOCK_TESTS = ("adder_pe", "adder_array", "adder_requantize")
ADDER_BLOCK_PARAMS = ("Q_W", "WT_W", "D_W", "ABS_W", "ACC_W", "Y_W", "RELU", "OUT_SHIFT", "YR_W", "OUT_D")
# The binarised BiSE layer's blocks: the BiSE PE and a BiSE PE array.
BISE_BLOCKS_TB = "bmhw_bise_blocks_tb"
BISE_BLOCK_TESTS = ("bise_pe", "bise_array")
# Parameters of bmhw_blocks_tb taken from the layer's plan.
BLOCK_PARAMS = ("Q_W", "LN_W", "WT_W", "M_W", "F", "EXP_W", "IMIN", "LMAX", "RS", "E_W", "S_W", "SC_W", "H",
                "CSUM", "C_W", "Y_W", "RELU", "OUT_SHIFT", "YR_W", "OUT_D", "LN_FILE", "EXP_FILE")


# Verilator's run-time library, compiled into every build folder the same way (same options, no traces):
# a new build folder gets the objects of an earlier one under the same build root, so that make compiles
# only the model (about 10 of the 20 s of a build on two cores).
RUNTIME_OBJECTS = ("verilated", "verilated_vpi", "verilated_dpi", "verilated_threads")


@dataclass
class Bench:
    """A built harness: the runner, what it was built for, and the tests it runs."""

    runner: object
    toplevel: str
    project: Path
    layer: str
    pe: int
    build_dir: Path
    tests: tuple


@dataclass
class BenchResult:
    test: str
    passed: bool
    message: str = ""  # the failure, naming block (or layer), layer and index
    detail: dict = field(default_factory=dict)


def _layer(project: Path, layer: str, adder: bool = False, bise: bool = False):
    """(design, net, IR layer, its identifier, PE) of the BM layer (``adder``: the AdderNet layer; ``bise``:
    the BiSE layer) named ``layer`` (IR or Verilog name)."""
    design, net = load_design(project)
    names = layer_names(net)
    for entry, name in zip(net.layers, names):
        if layer in (str(entry["name"]), name):
            ops, kind = ((ADDER_OPS, "an adder") if adder else (BISE_OPS, "a BiSE") if bise
                         else (("bm_conv2d", "bm_linear"), "a BM"))
            if entry["op"] not in ops:
                raise BmhwError(f"layer {layer} of {project} is a {entry['op']} layer, not {kind} layer")
            return design, net, entry, name, int(design["pe"][name])
    raise BmhwError(f"{project} has no layer {layer!r} (layers: {', '.join(names)})")


def parameters(project, layer: str, toplevel: str) -> dict:
    """The harness parameters (Verilog literals) for ``layer`` of ``project``."""
    adder, bise = toplevel == ADDER_BLOCKS_TB, toplevel == BISE_BLOCKS_TB
    _, net, entry, name, pe = _layer(Path(project), layer, adder, bise)
    params = (adder_layer_plan if adder else bise_layer_plan if bise else bm_layer_plan)(net, entry, name, pe)["params"]
    if bise:
        chosen = {"ACC_W": params["ACC_W"], "ARRAY_PE": ARRAY_PE}
    elif adder:
        chosen = {key: params[key] for key in ADDER_BLOCK_PARAMS}
        chosen["ARRAY_PE"] = ARRAY_PE
    elif toplevel == BLOCKS_TB:
        chosen = {key: params[key] for key in BLOCK_PARAMS}
        chosen["ARRAY_PE"] = ARRAY_PE
    elif toplevel == LAYER_TB:
        chosen = {"IN_DEPTH": int(np.prod(entry["in_shape"])), "OUT_DEPTH": int(np.prod(entry["out_shape"])),
                  **params}
    else:
        raise ValueError(f"unknown harness {toplevel}")
    # CSUM is a [63:0] parameter: a sized literal, or Verilator warns about the width of a -G value.
    return {key: f"64'd{int(value)}" if key == "CSUM" else verilog_value(value) for key, value in chosen.items()}


def _runtime_source(build_dir: Path) -> Path | None:
    """A build folder beside ``build_dir`` with the run-time objects, compiled by this Verilator (newer than
    its sources); None when ``build_dir`` has them already or none has."""
    if all((build_dir / f"{name}.o").is_file() for name in RUNTIME_OBJECTS):
        return None
    include = verilator_bin().parent / "include"
    newest_source = max((p.stat().st_mtime for p in include.glob("verilated*")), default=float("inf"))
    for other in sorted(build_dir.parent.iterdir()):
        objects = [other / f"{name}.{ext}" for name in RUNTIME_OBJECTS for ext in ("o", "d")]
        if other != build_dir and all(p.is_file() and p.stat().st_mtime > newest_source for p in objects):
            return other
    return None


def _verilator_runner(seed_from: Path | None):
    """cocotb's Verilator runner (with --public-flat-rw: the benches write the input RAM's memory). With
    ``seed_from``, the run-time objects are copied from there between the verilation and make, and
    touched, since make remakes them when they are older than the freshly written Vtop.mk."""
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            if seed_from is not None:
                objects = [seed_from / f"{name}.{ext}" for name in RUNTIME_OBJECTS for ext in ("o", "d")]
                copies = [str(self.build_dir / p.name) for p in objects]
                commands[1:1] = [["cp", *map(str, objects), str(self.build_dir)], ["touch", *copies]]
            return commands

    return Runner()


def _sources(project: Path, design: dict, toplevel: str) -> list:
    """The library modules of the project (not its generated top) and the harness."""
    return ([project / s for s in design["sources"] if not s.endswith(f"{TOP}.v")]
            + [sim_dir() / "hdl" / f"{toplevel}.v"])


def _build(project, layer: str, build_root, toplevel: str, tests: tuple) -> Bench:
    require_cocotb()
    project = Path(project).resolve()
    design, _, _, name, pe = _layer(project, layer, toplevel == ADDER_BLOCKS_TB, toplevel == BISE_BLOCKS_TB)
    build_dir = Path(build_root).resolve() / f"{toplevel}_{name}_pe{pe}"
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = _sources(project, design, toplevel)
    log = build_dir / "build.log"
    with verilator_on_path():
        runner = _verilator_runner(_runtime_source(build_dir))
        try:
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel, build_dir=str(build_dir),
                         parameters=parameters(project, name, toplevel),
                         build_args=["--x-assign", "fast", "--x-initial", "fast"], always=False,
                         log_file=str(log))
        except (SystemExit, RuntimeError, subprocess.CalledProcessError) as err:
            raise BmhwError(f"Verilator could not build {toplevel} for layer {name}: "
                            f"{first_problem_in(log, str(err))} (full log: {log})") from None
    return Bench(runner, toplevel, project, name, pe, build_dir, tests)


def lint(project, layer: str, toplevel: str) -> list:
    """``verilator --lint-only -Wall`` of the harness with the layer's parameters: the warnings and errors
    (empty when clean)."""
    project = Path(project).resolve()
    design, _, _, name, _ = _layer(project, layer, toplevel == ADDER_BLOCKS_TB, toplevel == BISE_BLOCKS_TB)
    code, output = verilator_lint(project, toplevel, _sources(project, design, toplevel),
                                  parameters(project, name, toplevel))
    problems = [line for line in output.splitlines() if line.startswith("%")]
    return problems or ([] if code == 0 else [f"verilator exited with {code}"])


def build_blocks(project, layer: str, build_root) -> Bench:
    """bmhw_blocks_tb with the parameters of ``layer``: for the block tests."""
    return _build(project, layer, build_root, BLOCKS_TB, BLOCK_TESTS)


def build_adder_blocks(project, layer: str, build_root) -> Bench:
    """bmhw_adder_blocks_tb with the parameters of the adder layer ``layer``: for the adder block tests."""
    return _build(project, layer, build_root, ADDER_BLOCKS_TB, ADDER_BLOCK_TESTS)


def build_bise_blocks(project, layer: str, build_root) -> Bench:
    """bmhw_bise_blocks_tb with the parameters of the BiSE layer ``layer``: for the BiSE block tests."""
    return _build(project, layer, build_root, BISE_BLOCKS_TB, BISE_BLOCK_TESTS)


def build_layer(project, layer: str, build_root) -> Bench:
    """bmhw_layer_tb around ``layer``: for the whole-layer test."""
    return _build(project, layer, build_root, LAYER_TB, LAYER_TESTS)


def random_codes(project, layer: str, images: int = 3, seed: int = 0) -> np.ndarray:
    """Input codes for ``layer``: the all-zero and the all-maximum image (the ends of the ranges of LN and
    S), then ``images`` random ones, uniform over the layer's input code range."""
    _, _, entry, _, _ = _layer(Path(project), layer)
    q_max, shape = int(entry["in_max"]), tuple(entry["in_shape"])
    rng = np.random.default_rng(seed)
    return np.concatenate([np.zeros((1, *shape), dtype=np.int64), np.full((1, *shape), q_max, dtype=np.int64),
                           rng.integers(0, q_max, size=(images, *shape), endpoint=True)])


def run(bench: Bench, tests=None, project=None, codes: np.ndarray | None = None, seed: int = 0,
        samples: int = 2000) -> dict:
    """Run ``tests`` (default: all of the bench's) in the simulation folder ``project`` (default: the one
    built from). Returns {test: BenchResult}; a failure is in the result, not raised."""
    tests = tuple(tests or bench.tests)
    unknown = [t for t in tests if t not in bench.tests]
    if unknown:
        raise ValueError(f"{bench.toplevel} runs {', '.join(bench.tests)}, not {', '.join(unknown)}")
    project = Path(project or bench.project).resolve()
    with tempfile.TemporaryDirectory(prefix="job-", dir=bench.build_dir) as job:
        job = Path(job)
        (job / "job.json").write_text(json.dumps({"project": str(project), "layer": bench.layer, "seed": seed,
                                                  "samples": samples, "array_pe": ARRAY_PE, "clock_ns": CLOCK_NS}))
        if bench.toplevel == LAYER_TB:
            if codes is None:
                codes = random_codes(project, bench.layer, seed=seed)
            np.save(job / "codes.npy", np.asarray(codes, dtype=np.int64))
        log = job / "sim.log"
        try:
            with verilator_on_path():
                bench.runner.test(hdl_toplevel=bench.toplevel, test_module=TEST_MODULE, test_dir=str(project),
                                  build_dir=str(bench.build_dir), test_filter=r"(^|\.)(" + "|".join(tests) + ")$",
                                  extra_env={"BMHW_BLOCK_JOB": str(job)}, results_xml=str(job / "results.xml"),
                                  log_file=str(log))
        except (SystemExit, RuntimeError, subprocess.CalledProcessError):
            pass  # failing tests are read from results.json below
        recorded = json.loads((job / "results.json").read_text()) if (job / "results.json").is_file() else {}
        text = log.read_text(errors="replace") if log.is_file() else ""
    results = {}
    for test in tests:
        if test in recorded:
            results[test] = BenchResult(test, **recorded[test])
        else:
            results[test] = BenchResult(test, False, f"the test did not run: {_first_error_text(text)}")
    return results


def _first_error_text(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower() or "fail" in line.lower()]
    return lines[0] if lines else "no error message"
