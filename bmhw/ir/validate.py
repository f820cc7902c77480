"""A ``.bmq`` is checked before anything runs on it: the archive's entries (only the expected names, each no
larger than the table model.json declares: no zip bombs), every layer's fields (``bmhw.ir.fields``), every
table's dtype, shape and values, and the declared ranges and widths against those proven again from the tables,
so that an IR whose datapath could overflow, or whose backends would size a signal too small, is refused.

``validate(net)`` runs the checks that need no archive on a network in memory (a quantizer's output passes them
by construction; the tests check that it does). NumPy only.
"""

from __future__ import annotations

import math
import zipfile

import numpy as np

from bmhw.ir.fields import MAX_ELEMENTS, check_layers, invalid, is_int
from bmhw.ir.intmath import width
from bmhw.ir.ops import FAMILIES, OPS
from bmhw.ir.widths import MAX_WIDTH
from bmhw.ir.widths import proven_ranges as widths_proven_ranges

MAX_JSON_BYTES = 16 << 20
NPY_HEADER_BYTES = 4096  # np.save writes a header of a few hundred bytes before the values
MAX_TOTAL_ELEMENTS = 1 << 26  # every table together: 512 MiB of int64


def table_shapes(layer: dict) -> dict:
    """``table -> shape`` of a weighted layer whose fields have been checked (optional tables included)."""
    return {table: dims for table, (dims, _) in FAMILIES[OPS[layer["op"]].family].shapes(layer).items()}


def expected_entries(layers: list, path) -> dict:
    """``entry name -> (shape, required)`` of every table the checked layers call for."""
    out = {}
    for layer in layers:
        spec = OPS[layer["op"]]
        if spec.weighted:
            for table, entry in FAMILIES[spec.family].shapes(layer).items():
                out[f"{layer['name']}/{table}.npy"] = entry
    if sum(math.prod(dims) for dims, _ in out.values()) > MAX_TOTAL_ELEMENTS:
        raise invalid(path, f"its tables hold more than {MAX_TOTAL_ELEMENTS} values")
    return out


def check_entries(infos: list, layers: list, path) -> dict:
    """The archive's entries against the checked layers: ``entry -> shape`` of the tables to read."""
    expected = expected_entries(layers, path)
    seen = set()
    for info in infos:
        if info.filename == "model.json":
            continue
        if info.filename not in expected or info.filename in seen:
            raise invalid(path, f"unexpected entry {info.filename[:80]!r}")
        seen.add(info.filename)
        dims = expected[info.filename][0]
        if info.file_size > 8 * math.prod(dims) + NPY_HEADER_BYTES:
            raise invalid(path, f"entry {info.filename!r} unpacks to {info.file_size} bytes, more than a {dims} "
                                "table of int64 takes")
    missing = sorted(name for name, (_, required) in expected.items() if required and name not in seen)
    if missing:
        raise invalid(path, f"the table {missing[0]!r} is missing")
    return {name: expected[name][0] for name in seen}


def read_model_json(archive: zipfile.ZipFile, path) -> bytes:
    infos = archive.infolist()
    if len({info.filename for info in infos}) != len(infos):
        raise invalid(path, "an entry appears twice in the archive")
    info = next((info for info in infos if info.filename == "model.json"), None)
    if info is None:
        raise invalid(path, "no model.json entry")
    if info.file_size > MAX_JSON_BYTES:
        raise invalid(path, f"model.json unpacks to {info.file_size} bytes, more than {MAX_JSON_BYTES}")
    return archive.read(info)


def check_table(array: np.ndarray, name: str, dims: tuple, path) -> None:
    if array.dtype != np.int64 or array.shape != tuple(dims):
        layer, table = name.split("/")
        raise invalid(path, f"layer {layer!r}: its {table!r} table is {array.dtype} of shape {array.shape}, expected "
                            f"int64 of shape {tuple(dims)}")


def proven_ranges(net, layer: dict) -> dict:
    """``signal -> [lo, hi]`` proven from the layer's tables and constants (the quantizer's own derivation)."""
    names = (f"{layer['name']}/{t}" for t in table_shapes(layer))
    return widths_proven_ranges(layer, {name.split("/")[1]: net.arrays[name] for name in names if name in net.arrays})


def _check_ranges(net, layer: dict, path) -> None:
    ranges = proven_ranges(net, layer)
    widths = {name: width(lo, hi) for name, (lo, hi) in ranges.items()}
    for what, declared, proven in (("ranges", layer.get("ranges"), ranges), ("widths", layer.get("widths"), widths)):
        if not isinstance(declared, dict) or set(declared) != set(proven):
            raise invalid(path, f"layer {layer['name']!r}: its {what} do not name the signals {sorted(proven)}")
        for signal, value in proven.items():
            got = declared[signal]
            exact = is_int(got) if what == "widths" else isinstance(got, list) and all(map(is_int, got))
            if not exact or got != value:
                raise invalid(path, f"layer {layer['name']!r}: signal {signal} is declared {what[:-1]} {got!r}, its "
                                    f"tables prove {value!r}")
    over = [s for s, bits in widths.items() if bits > MAX_WIDTH]
    if over:
        raise invalid(path, f"layer {layer['name']!r}: signal {over[0]} needs {widths[over[0]]} bits, more than the "
                            f"{MAX_WIDTH} of the datapath")
    if OPS[layer["op"]].family == "bm" and layer["relu"]:
        shift = int(layer["G"]) + int(layer["out_scale_exp"])  # a left shift of Y before the clamp
        if shift < 0 and widths["Y"] - shift > MAX_WIDTH:
            raise invalid(path, f"layer {layer['name']!r}: Y shifted left by {-shift} needs more than {MAX_WIDTH} bits")


def check_values(net, path="the network") -> None:
    """The checks that need the tables in place, of the right dtype and shape: what each family's range proof and
    the golden model assume of the values, and the declared ranges and widths against those proven again."""
    for layer in net.layers:
        if OPS[layer["op"]].weighted:
            family = FAMILIES[OPS[layer["op"]].family]
            if family.check is not None:
                family.check(net, layer, path)
            _check_ranges(net, layer, path)


def validate(net, path="the network") -> None:
    """Every check of a loaded file on a network in memory: fields, tables (dtype, shape, values), ranges."""
    check_layers(path, {"input": {"shape": list(net.input_shape), "scale": list(net.input_scale)},
                        "layers": net.layers})
    expected = expected_entries(net.layers, path)
    known = {name[:-4] for name in expected}
    extra = sorted(set(net.arrays) - known)
    if extra:
        raise invalid(path, f"unexpected table {extra[0]!r}")
    for entry, (dims, required) in expected.items():
        name = entry[:-4]
        if name in net.arrays:
            check_table(np.asarray(net.arrays[name]), name, dims, path)
        elif required:
            raise invalid(path, f"the table {entry!r} is missing")
    check_values(net, path)


__all__ = ["MAX_ELEMENTS", "check_entries", "check_table", "check_values", "proven_ranges", "read_model_json",
           "table_shapes", "validate"]
