"""What every hardware backend shares: layer identifiers, the PE parallelism knob and the atomic write
of a generated project folder. NumPy only, never torch."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from bmhw import ir
from bmhw.atomic import current_umask, remove_stale
from bmhw.errors import BmhwError

MANIFEST = "bmhw-manifest.json"  # every file an export wrote: a re-export replaces only a folder of these
MANIFEST_FORMAT = "bmhw-project"
# Folders bmhw's tools write into a project after the export (bmhw csim: vectors and build; bmhw sim: build).
WORK_FOLDERS = ("tb_data", "csim", "sim_build")  # csim.DATA_DIR, csim.BUILD_DIR, rtlsim.BUILD_DIR


def layer_names(net: ir.QuantizedNet) -> list[str]:
    """A distinct C / Verilog identifier per layer, in order (IR names such as "0" or "fc.1" are not)."""
    names = []
    for layer in net.layers:
        name = re.sub(r"\W", "_", str(layer["name"]))
        if not re.match(r"[A-Za-z]", name):
            name = f"layer_{name}"
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def parse_pe_options(values) -> tuple[int, dict]:
    """``--pe N`` (every BM layer) and ``--pe LAYER=N`` (one layer), repeatable: (default, {layer: N})."""
    default, overrides = 1, {}
    for value in values or ():
        layer, sep, number = str(value).rpartition("=")
        try:
            n = int(number)
        except ValueError:
            raise BmhwError(f"--pe {value}: give N or LAYER=N with N a positive integer") from None
        if n <= 0:
            raise BmhwError(f"--pe {value}: the number of PEs must be a positive integer")
        if sep and not layer:
            raise BmhwError(f"--pe {value}: give N or LAYER=N with N a positive integer")
        if sep:
            overrides[layer] = n
        else:
            default = n
    return default, overrides


def resolve_pe(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None, cap_at_fan_in: bool = False) -> list:
    """The PE count of each layer (None for layers without PEs): ``pe`` for every weight layer (in a BiSE network,
    its BiSE layers), overridden per layer by ``pe_layers`` (keys: IR or identifier layer names), capped at the
    layer's output count (and at its fan-in K with ``cap_at_fan_in``, for the Verilog backend's serial output
    stage)."""
    if int(pe) <= 0:
        raise BmhwError(f"--pe {pe}: the number of PEs must be a positive integer")
    names = layer_names(net)
    by_name = {}
    for index, (layer, name) in enumerate(zip(net.layers, names)):
        by_name.setdefault(str(layer["name"]), index)
        by_name.setdefault(name, index)
    has_pes = [ir.OPS[layer["op"]].weighted for layer in net.layers]
    chosen = [int(pe) if weighted else None for weighted in has_pes]
    weight_names = ", ".join(str(layer["name"]) for layer, weighted in zip(net.layers, has_pes) if weighted)
    for key, value in sorted((pe_layers or {}).items()):
        if key not in by_name or not has_pes[by_name[key]]:
            raise BmhwError(f"--pe {key}={value}: no weight layer named {key!r} (weight layers: {weight_names})")
        if int(value) <= 0:
            raise BmhwError(f"--pe {key}={value}: the number of PEs must be a positive integer")
        chosen[by_name[key]] = int(value)
    out = []
    for n, layer in zip(chosen, net.layers):
        if n is not None:
            n = min(n, int(layer["out_count"]))
            if cap_at_fan_in:
                n = min(n, int(layer["fan_in"]))
        out.append(n)
    return out


def manifest(files: dict, what: str) -> bytes:
    """The manifest of a generated project: every file the export wrote, and the folders bmhw's tools write
    into it later (csim's vectors and build, sim's build); deterministic."""
    doc = {"format": MANIFEST_FORMAT, "version": 1, "project": what, "files": sorted(files),
           "work_folders": list(WORK_FOLDERS)}
    return (json.dumps(doc, indent=1) + "\n").encode()


def _foreign_entries(out_dir: Path) -> list[str]:
    """What in an existing project folder bmhw did not write: entries that neither its manifest lists nor lie in
    a work folder. Raises when the folder has no readable manifest."""
    try:
        doc = json.loads((out_dir / MANIFEST).read_text())
        listed = set(doc["files"]) | {MANIFEST}
        work = tuple(doc["work_folders"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError from None
    foreign = []
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir).as_posix()
        top = rel.split("/", 1)[0]
        if top in work or top.startswith(tuple(f".{w}" for w in work)):
            continue
        if path.is_dir() and not path.is_symlink():
            if any(name.startswith(rel + "/") for name in listed):
                continue
            if not any(path.iterdir()):
                foreign.append(rel + "/")
            continue
        if rel not in listed:
            foreign.append(rel)
    return foreign


def check_replaceable(out_dir: Path, what: str, example: str) -> None:
    """Refuse, before anything is written, to replace what is not ours: a file, a non-empty folder without a
    manifest, or a project holding files its manifest does not list (the user's own)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BmhwError(f"output {out_dir} exists and is not a folder: give a folder name such as {example}")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not (out_dir / MANIFEST).is_file():
        raise BmhwError(f"output {out_dir} is a non-empty folder that is not a bmhw {what} (no {MANIFEST}): choose "
                        "another -o, or empty it first")
    try:
        foreign = _foreign_entries(out_dir)
    except ValueError:
        raise BmhwError(f"output {out_dir} has a damaged {MANIFEST}: choose another -o, or delete the folder "
                        "first") from None
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise BmhwError(f"output {out_dir} holds {foreign[0]}{more}, which bmhw did not write: move them out of "
                        "the project, or choose another -o")


def write_project(files: dict, out_dir, what: str, example: str) -> Path:
    """Write ``files`` (relative path -> bytes) and their manifest as the folder ``out_dir`` atomically: built
    beside it, then renamed into place (an existing project is replaced only once the new one is complete, and
    only when it holds nothing but what bmhw wrote). ``what``/``example`` name the kind of project in error
    messages ("HLS project", "build/hls")."""
    out_dir = Path(out_dir)
    check_replaceable(out_dir, what, example)
    files = {**files, MANIFEST: manifest(files, what)}
    tmp = old = None
    prefix = f".{out_dir.name}.{os.getpid()}."
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out_dir, folders=True)
        tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=prefix, suffix=".tmp"))
        os.chmod(tmp, 0o777 & ~current_umask())
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=prefix, suffix=".old"))
            os.replace(out_dir, old / "project")
        os.replace(tmp, out_dir)
        tmp = None
    except OSError as err:
        if old is not None and (old / "project").exists() and not out_dir.exists():
            os.replace(old / "project", out_dir)  # put the previous project back
        raise BmhwError(f"cannot write {what} {out_dir}: {err.strerror or err}") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir
