"""The wheel ships everything bmhw needs at run time, and an installed (non-editable) bmhw finds it.

The wheel is built from a copy of the repository in a temporary folder, so that the build's
``build/`` and ``*.egg-info`` folders never land in (or go stale in) the working tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# Not part of a source tree: environments, caches and build outputs.
SKIP = {".git", ".venv", "venv", "build", "dist", "runs", ".pytest_cache", ".hypothesis", ".yowasp-cache",
        "__pycache__", ".benchmarks"}
# Files the test adds to the copy, to check that nested package data is shipped too.
PROBES = {"templates/probe_dir/probe.sv.j2": "bmhw/templates/probe_dir/probe.sv.j2",
          "hls/probe.h": "bmhw/hls/probe.h",
          "sim/probe_dir/test_probe.py": "bmhw/sim/probe_dir/test_probe.py",
          "examples/probe.pt": "bmhw/examples/probe.pt"}


def ignore(folder, names):
    return [n for n in names if n in SKIP or n.endswith(".egg-info") or n.endswith(".pyc")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=ignore)
    for rel in PROBES:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text("probe\n")
    out = root / "wheelhouse"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                           "."], cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        "pip wheel --no-build-isolation failed (are setuptools and wheel installed in the venv?)\n"
        + done.stdout[-3000:] + done.stderr[-3000:])
    wheels = list(out.glob("bmhw-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        assert z.testzip() is None
        return set(z.namelist())


def test_wheel_contains_the_package_and_its_resources(names):
    for package in ("bmhw", "bmhw/nn", "bmhw/models", "bmhw/data", "bmhw/train", "bmhw/quant", "bmhw/ir", "bmhw/backends",
                    "bmhw/backends/onnx", "bmhw/cost", "bmhw/cli", "bmhw/templates", "bmhw/hls", "bmhw/sim",
                    "bmhw/examples"):
        assert f"{package}/__init__.py" in names, package
    assert "bmhw/data/mnist_sample/t10k-images-idx3-ubyte.gz" in names
    assert "bmhw/data/mnist_sample/t10k-labels-idx1-ubyte.gz" in names
    for module in ("cli/parser", "cli/train", "models/checkpoint", "train/loop", "ir/bmq", "resources", "errors"):
        assert f"bmhw/{module}.py" in names
    # The Verilog blocks and template, and the cocotb benches with their harness.
    for shipped in ("bmhw/templates/verilog/bmhw_net.v.j2", "bmhw/templates/verilog/lib/bmhw_bm_layer.v",
                    "bmhw/sim/hdl/bmhw_net_tb.v", "bmhw/sim/test_network.py", "bmhw/sim/scoreboard.py",
                    "bmhw/nn/csrc/maxplus.cpp", "bmhw/templates/verilog/lib/bmhw_mac_layer.v"):
        assert shipped in names, shipped
    # Every module of the source tree is in the wheel.
    for path in (REPO / "bmhw").rglob("*.py"):
        assert path.relative_to(REPO).as_posix() in names, path
    # Nothing from the repository's top level leaks in as its own package.
    assert not any(n.startswith(("tests/", "templates/", "hls/", "sim/", "examples/", "benchmarks/")) for n in names)


def test_wheel_ships_nested_package_data(names):
    for shipped in PROBES.values():
        assert shipped in names, shipped


def test_wheel_declares_the_console_script(wheel, names):
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        text = z.read(entry_points).decode()
    assert "[console_scripts]" in text and "bmhw = bmhw.cli:main" in text


def test_installed_wheel_finds_its_resources(wheel, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    code = """
import json
import bmhw, bmhw.resources as r
from bmhw.data import builtin_mnist_dir, load_mnist_sample
images, labels = load_mnist_sample()
dirs = {name: str(getattr(r, name)()) for name in ("templates_dir", "hls_dir", "sim_dir", "examples_dir")}
dirs["builtin_mnist_dir"] = str(builtin_mnist_dir())
print(json.dumps({"package": bmhw.__file__, "dirs": dirs, "images": list(images.shape), "labels": len(labels)}))
"""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "HOME": str(tmp_path)}
    # -I would drop PYTHONPATH; -S is not wanted either (torch and numpy come from the venv's site-packages).
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    site = site.resolve()
    assert Path(result["package"]).resolve().is_relative_to(site), result["package"]
    for name, folder in result["dirs"].items():
        folder = Path(folder).resolve()
        assert folder.is_relative_to(site / "bmhw"), (name, folder)
        assert folder.is_dir(), (name, folder)
    assert (Path(result["dirs"]["templates_dir"]) / "probe_dir" / "probe.sv.j2").is_file()
    assert (Path(result["dirs"]["examples_dir"]) / "probe.pt").is_file()
    assert result["images"] == [500, 1, 28, 28] and result["labels"] == 500
