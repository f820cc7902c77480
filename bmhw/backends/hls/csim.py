"""C-simulation of a generated HLS project (``bmhw csim``): golden vectors, a g++ build against the ap_int
headers of the hls4ml PyPI package, and the project's own testbench, which fails on any mismatch.

Vitis HLS is not needed: its headers are plain C++ (../shared/toolchain.md). NumPy only, never torch.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmhw import golden, ir
from bmhw.backends.project import layer_names as c_names
from bmhw.errors import BmhwError

DATA_DIR = "tb_data"
BUILD_DIR = "csim"
BINARY = "bmhw_tb"
SOURCES = ("firmware/bmhw_net.cpp", "tb/bmhw_tb.cpp")
BATCH = 100
_SUMMARY = re.compile(r"bmhw_tb: (\d+) images checked, (\d+) mismatches")
# The testbench's line per mismatch (tb/bmhw_tb.cpp); the first one printed is the first found.
_MISMATCH = re.compile(r"^MISMATCH image (?P<image>\d+) layer (?P<layer>\S+) index (?P<index>\d+): "
                       r"got (?P<got>-?\d+), expected (?P<expected>-?\d+)$", re.M)


@dataclass
class CsimResult:
    images: int
    mismatches: int
    returncode: int
    output: str  # the testbench's stdout and stderr

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.mismatches == 0 and self.images > 0

    @property
    def first_mismatch(self) -> dict | None:
        """The first mismatch the testbench printed: image, layer (its C name), index, got, expected; or None."""
        match = _MISMATCH.search(self.output)
        if match is None:
            return None
        return {key: value if key == "layer" else int(value) for key, value in match.groupdict().items()}


def ap_types_dir() -> Path:
    """The folder with ap_int.h and hls_stream.h: $BMHW_AP_TYPES, else the one in the hls4ml package."""
    env = os.environ.get("BMHW_AP_TYPES")
    if env:
        folder = Path(env)
    else:
        spec = importlib.util.find_spec("hls4ml")
        if spec is None or not spec.submodule_search_locations:
            raise BmhwError("bmhw csim needs the ap_int headers: pip install hls4ml (or set BMHW_AP_TYPES to a "
                            "folder with ap_int.h and hls_stream.h)")
        folder = Path(list(spec.submodule_search_locations)[0]) / "templates" / "vivado" / "ap_types"
    if not (folder / "ap_int.h").is_file() or not (folder / "hls_stream.h").is_file():
        raise BmhwError(f"no ap_int.h / hls_stream.h in {folder}: reinstall hls4ml or set BMHW_AP_TYPES")
    return folder


def compiler() -> str:
    """The C++ compiler: $CXX, else g++."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise BmhwError(f"bmhw csim needs a C++17 compiler: {name!r} not found (install g++ or set CXX)")
    return path


def load_project(project) -> ir.QuantizedNet:
    project = Path(project)
    if not (project / "model.bmq").is_file() or not all((project / s).is_file() for s in SOURCES):
        raise BmhwError(f"{project} is not an HLS project written by bmhw export (no model.bmq or sources): "
                        "run bmhw export MODEL --target hls -o DIR first")
    return ir.load_bmq(project / "model.bmq")


def _write_rows(path: Path, rows: np.ndarray) -> None:
    with open(path, "a") as file:
        for row in rows.reshape(rows.shape[0], -1).tolist():
            file.write(" ".join(map(str, row)))
            file.write("\n")


def write_vectors(project, images: np.ndarray) -> Path:
    """Input codes and every layer's golden output, one image per line, into PROJECT/tb_data/."""
    project = Path(project)
    net = load_project(project)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    data = project / DATA_DIR
    tmp = project / f".{DATA_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    names = c_names(net)
    try:
        for start in range(0, len(images), BATCH):
            batch = images[start:start + BATCH]
            outputs = golden.forward(net, batch, return_all=True)
            _write_rows(tmp / "input.txt", batch.astype(np.int64))
            for layer, name in zip(net.layers, names):
                _write_rows(tmp / f"{name}.txt", outputs[layer["name"]])
        shutil.rmtree(data, ignore_errors=True)
        os.replace(tmp, data)
    except OSError as err:
        raise BmhwError(f"cannot write test vectors in {data}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data


def build(project, optimize: str = "-O2") -> Path:
    """Compile the project and its testbench with g++; return the binary."""
    project = Path(project)
    load_project(project)
    out = project / BUILD_DIR
    out.mkdir(exist_ok=True)
    binary = out / BINARY
    cmd = [compiler(), "-std=c++17", optimize, "-isystem", str(ap_types_dir()), "-I", str(project / "firmware"),
           *[str(project / s) for s in SOURCES], "-o", str(binary)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "error" in line] or result.stderr.splitlines()
        raise BmhwError(f"g++ failed to compile {project}: {(lines or ['no output'])[0].strip()}")
    return binary


def run(project, binary=None) -> CsimResult:
    """Run the testbench on PROJECT/tb_data; the result holds its counts and output."""
    project = Path(project)
    binary = Path(binary or project / BUILD_DIR / BINARY)
    result = subprocess.run([str(binary), str(project / DATA_DIR)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    match = _SUMMARY.search(result.stdout)
    images, mismatches = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    return CsimResult(images, mismatches, result.returncode, output)


def read_result(project) -> np.ndarray:
    """The logits the streaming top computed in the last run (images x classes, int64)."""
    path = Path(project) / DATA_DIR / "result.txt"
    return np.loadtxt(path, dtype=np.int64, ndmin=2)


def csim(project, images: np.ndarray) -> CsimResult:
    """Vectors, build, run."""
    write_vectors(project, images)
    return run(project, build(project))
