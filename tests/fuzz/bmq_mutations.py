"""Semantic mutations of a valid ``.bmq`` file, and the property every mutant must satisfy.

A mutant changes what the file says, not its bytes at random: a field of model.json (a value, its type, its
absence), a table (a value, its dtype, its shape, its absence, an unexpected entry, a zip bomb), the order or
number of the layers; in a network with several maxima per output also its ``groups``, ``split_sign`` and
``weight_sign`` (values, whole rows of one sign, dtype, shape, absence, the fields on another layer). It is
re-zipped with valid checksums, so the zip layer never catches it. The property (``check_mutant``): ``load_bmq``
refuses it with exactly one line (``BmhwError``), or accepts it, and then the golden model runs on valid images with
every layer's output inside its proven range, and the integer ONNX graph (every family but BiSE) gives the same
numbers bit for bit. Used by ``tests/fuzz/test_bmq_fuzz.py`` (a fixed
budget in CI) and ``benchmarks/fuzz_bmq.py`` (any number, with the counts).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import resource
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ODD_VALUES = (None, True, False, -1, 0, 1, 2, 63, 64, 255, 256, 1 << 20, 1 << 40, 1 << 70, -(1 << 70), 3.5,
              float("nan"), "x", [], [1], [0, 0], [1, 1, 1], {}, {"a": 1})


@dataclass
class Mutant:
    what: str
    data: bytes


def read(data: bytes) -> tuple[dict, dict]:
    """model.json and the raw table entries of a .bmq."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        doc = json.loads(archive.read("model.json"))
        entries = {name: archive.read(name) for name in archive.namelist() if name != "model.json"}
    return doc, entries


def write(doc: dict, entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.json", json.dumps(doc, allow_nan=True))
        for name, raw in entries.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _nudge(value, rng):
    """A value near ``value`` of the same kind (the mutations most likely to be accepted, so checked deepest)."""
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, int):
        return value + int(rng.choice([-2, -1, 1, 2, value, -2 * value - 1]))
    if isinstance(value, float):
        return value * float(rng.choice([0.5, 2.0, -1.0]))
    if isinstance(value, list) and value:
        out = copy.deepcopy(value)
        i = int(rng.integers(len(out)))
        out[i] = _nudge(out[i], rng)
        return out
    if isinstance(value, dict) and value:
        out = copy.deepcopy(value)
        key = sorted(out)[int(rng.integers(len(out)))]
        out[key] = _nudge(out[key], rng)
        return out
    return ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]


def _mutate_field(doc: dict, rng) -> str:
    layer = doc["layers"][int(rng.integers(len(doc["layers"])))]
    keys = sorted(layer) + ["in_max", "out_max", "relu", "scores", "threshold"]
    key = keys[int(rng.integers(len(keys)))]
    action = rng.random()
    if action < 0.15:
        layer.pop(key, None)
        return f"layer {layer.get('name')}: {key} removed"
    new = _nudge(layer.get(key), rng) if action < 0.7 else ODD_VALUES[int(rng.integers(len(ODD_VALUES)))]
    layer[key] = new
    return f"layer {layer.get('name')}: {key} = {str(new)[:60]}"


def _mutate_document(doc: dict, rng) -> str:
    choice = int(rng.integers(6))
    layers = doc["layers"]
    if choice == 0:
        i = int(rng.integers(len(layers)))
        del layers[i]
        return f"layer {i} deleted"
    if choice == 1:
        i, j = (int(v) for v in rng.choice(len(layers), 2, replace=False))
        layers[i], layers[j] = layers[j], layers[i]
        return f"layers {i} and {j} swapped"
    if choice == 2:
        i = int(rng.integers(len(layers)))
        layers.insert(i, copy.deepcopy(layers[i]))
        return f"layer {i} duplicated"
    key = ("shape", "scale")[choice % 2]
    doc["input"][key] = _nudge(doc["input"][key], rng) if choice < 5 else ODD_VALUES[int(rng.integers(24))]
    return f"input {key} = {doc['input'][key]}"


def _mutate_table(entries: dict, rng) -> str:
    name = sorted(entries)[int(rng.integers(len(entries)))]
    array = np.load(io.BytesIO(entries[name]), allow_pickle=False)
    choice = int(rng.integers(9))
    if choice == 0:
        del entries[name]
        return f"{name} removed"
    if choice == 1:
        dtype = (np.int32, np.float64, np.uint8, np.bool_, np.int16)[int(rng.integers(5))]
        entries[name] = npy(array.astype(dtype))
        return f"{name} as {np.dtype(dtype).name}"
    if choice == 2:
        entries[name] = npy(array.reshape(-1)[:-1] if array.size > 1 else np.zeros(3, np.int64))
        return f"{name} reshaped"
    if choice == 3:
        entries[name.rsplit("/", 1)[0] + "/evil.npy" if rng.random() < 0.5 else "../evil.npy"] = npy(array)
        return f"extra entry beside {name}"
    if choice == 4:  # a zip bomb: far more values than the table's shape, all zero (a few KiB compressed)
        entries[name] = npy(np.zeros(max(4 << 20, 4 * array.size), np.int64))
        return f"{name} inflated"
    flat = array.reshape(-1).copy()
    i = int(rng.integers(flat.size))
    flat[i] = (flat[i] + 1, flat[i] - 1, -flat[i], 1 << 40, -(1 << 40), 0)[choice - 4]
    entries[name] = npy(flat.reshape(array.shape))
    return f"{name}[{i}] = {flat[i]}"


def _grouped(doc: dict) -> list:
    return [layer for layer in doc["layers"] if "groups" in layer or "split_sign" in layer]


def _mutate_grouping(doc: dict, entries: dict, rng) -> str:
    """The fields and the table of several maxima per output (docs/datapath.md, "Several maxima per neuron"):
    ``groups``, ``split_sign``, ``weight_sign`` (a value, a whole row, its dtype, shape or absence), and the fields
    moved to a layer of one max."""
    layers = _grouped(doc)
    layer = layers[int(rng.integers(len(layers)))]
    name, k = layer["name"], int(layer["fan_in"])
    key = f"{name}/weight_sign.npy"
    choice = int(rng.integers(13))
    if choice == 0:
        new = (1, 2, k - 1, k, k + 1, 0, -1, layer.get("groups", 1) + 1, layer.get("groups", 1) - 1,
               True, 2.0, None)[int(rng.integers(12))]
        layer["groups"] = new
        return f"layer {name}: groups = {new}"
    if choice == 1:
        new = (False, True, 0, 1, None, "true")[int(rng.integers(6))]
        layer["split_sign"] = new
        return f"layer {name}: split_sign = {new}"
    if choice == 2:
        field = ("groups", "split_sign")[int(rng.integers(2))]
        layer.pop(field, None)
        return f"layer {name}: {field} removed"
    if choice == 3:
        entries.pop(key, None)
        return f"{key} removed"
    if key not in entries:  # a layer without a sign table: give it one
        entries[key] = npy(np.ones((int(layer.get("out_count", 1)), k), np.int64))
        return f"{key} added"
    sign = np.load(io.BytesIO(entries[key]), allow_pickle=False)
    if choice == 4:
        entries[key] = npy(sign.T if rng.random() < 0.5 else sign[:, :-1])
        return f"{key} of shape {np.load(io.BytesIO(entries[key])).shape}"
    if choice == 5:
        entries[key] = npy(sign.astype((np.int32, np.float64, np.int8)[int(rng.integers(3))]))
        return f"{key} as another dtype"
    if choice == 6:  # a whole row of one sign: empty pairs
        row = int(rng.integers(sign.shape[0]))
        value = int(rng.choice([1, -1]))
        sign[row] = value
        entries[key] = npy(sign)
        return f"{key} row {row} all {value}"
    if choice == 7:  # the fields of this layer on another BM layer (of one max, or grouped otherwise)
        others = [other for other in doc["layers"] if other.get("op", "").startswith("bm_") and other is not layer]
        others = others or [layer]
        target = others[int(rng.integers(len(others)))]
        target.update(groups=layer.get("groups", 1), split_sign=layer.get("split_sign"))
        return f"layer {target.get('name')}: groups and split_sign of {name}"
    flat = sign.reshape(-1)
    i = int(rng.integers(flat.size))
    flat[i] = (-flat[i], -flat[i], 0, 2, -2)[choice - 8]
    entries[key] = npy(flat.reshape(sign.shape))
    return f"{key}[{i}] = {flat[i]}"


def mutants(data: bytes, seed: int, count: int):
    """``count`` mutants of the .bmq bytes ``data``, the same ones for the same seed. A network with several maxima
    per output also gets the mutations of its groups and signs (a third of its mutants)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        doc, entries = read(data)
        if _grouped(doc) and rng.random() < 1 / 3:
            what = _mutate_grouping(doc, entries, rng)
            yield Mutant(what, write(doc, entries))
            continue
        kind = rng.random()
        if kind < 0.5:
            what = _mutate_field(doc, rng)
        elif kind < 0.65:
            what = _mutate_document(doc, rng)
        else:
            what = _mutate_table(entries, rng)
        yield Mutant(what, write(doc, entries))


@contextlib.contextmanager
def memory_cap(gib: float):
    """Limit the address space to what the process maps now plus ``gib`` GiB while the block runs (Linux; elsewhere
    no limit): a mutant whose checks ask for more raises MemoryError instead of exhausting the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except OSError:
        mapped = None
    cap = None if mapped is None else mapped + int(gib * (1 << 30))
    if cap is not None and (hard == resource.RLIM_INFINITY or cap < hard):
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_mutant(path, images: np.ndarray) -> str:
    """The property for the mutant at ``path``: "refused" or "accepted", else raises AssertionError."""
    from bmhw import golden
    from bmhw.errors import BmhwError
    from bmhw.ir import OPS, load_bmq

    try:
        net = load_bmq(path)
    except BmhwError as err:
        assert "\n" not in str(err), f"a refusal of more than one line: {err}"
        return "refused"
    outputs = golden.forward(net, images, return_all=True)
    for layer in net.layers:
        if OPS[layer["op"]].weighted:
            lo, hi = layer["ranges"]["q_out"]
            out = outputs[layer["name"]]
            assert lo <= int(out.min()) and int(out.max()) <= hi, \
                f"layer {layer['name']}: outputs [{out.min()}, {out.max()}] outside the proven [{lo}, {hi}]"
    if net.family != "bise":
        from bmhw.backends.onnx import integer, run

        model = run.session_from_model(integer.build(net), threads=1)
        mismatch = run.golden_mismatch(net, model, images)
        assert mismatch is None, f"integer ONNX graph and golden model differ: {mismatch}"
    return "accepted"
