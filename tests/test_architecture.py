"""The layout rules of docs/architecture.md, checked on the code: the integer side imports no torch, the modules
import each other without cycles, and the command line stays thin."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bmhw"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts}


def _imports(path: Path, modules: dict) -> set[str]:
    """Every bmhw module that ``path`` imports, at the top or inside a function (a lazy import still ties two
    modules together): ``from a.b import c`` counts as ``a.b.c`` where that is a module, else ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bmhw")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bmhw") and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def test_the_integer_side_leaves_torch_unloaded():
    """The IR, the golden model, every backend, the cost model and the argument parser run without PyTorch."""
    code = """
import importlib, pkgutil, sys
import bmhw.backends, bmhw.cost
names = ["bmhw.ir", "bmhw.ir.ops", "bmhw.ir.bmq", "bmhw.ir.widths", "bmhw.ir.intmath", "bmhw.golden", "bmhw.cli", "bmhw.cli.parser"]
for pkg in (bmhw.backends, bmhw.cost):
    names += [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for name in names:
    importlib.import_module(name)
assert len(names) > 15, names
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def find_cycles(graph: dict) -> list:
    """The import cycles of ``graph`` (module -> modules it imports), each as a closed path."""
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    # A package's __init__ that re-exports its own submodules is its face, not a cycle partner.
    graph = {name: {m for m in deps if not (m.startswith(name + ".") and modules[name].name == "__init__.py")}
             for name, deps in graph.items()}
    assert sum(len(d) for d in graph.values()) > 100  # the graph was really read
    assert find_cycles(graph) == []


def test_command_functions_stay_short():
    """The command line parses, calls the library and prints: no command function over 60 lines."""
    long = []
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
                if node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{path.name}:{node.name}")
    assert long == []


def test_the_cycle_check_can_fail(tmp_path):
    """Two modules importing each other, one of them lazily inside a function, are a cycle."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from bmhw.b import thing\n")
    b.write_text("def f():\n    from bmhw import a\n")
    modules = {"bmhw.a": a, "bmhw.b": b}
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    assert graph == {"bmhw.a": {"bmhw.b"}, "bmhw.b": {"bmhw.a"}}
    assert find_cycles(graph) == [["bmhw.a", "bmhw.b", "bmhw.a"]]


def test_modules_stay_small_and_the_top_holds_only_plumbing():
    """No Python module over 400 lines; at the top of bmhw/ only plumbing and the golden model."""
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400]
    assert long == []
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "atomic.py", "errors.py", "golden.py", "logs.py", "resources.py"]


def test_every_package_is_installed():
    """pyproject.toml lists the packages by hand: a new sub-package missing from it would import here (editable
    install) and fail for users of the wheel."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py") if "templates" not in p.parts}
    assert packages <= listed, f"add {sorted(packages - listed)} to [tool.setuptools] packages in pyproject.toml"
