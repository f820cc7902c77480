"""Semantic mutations of a bmhw checkpoint and of ONNX files, and the property every mutant must satisfy.

A checkpoint mutant changes what the file says, not its bytes at random: a config field (a width, a neuron, a
layer spec; its type or its absence), a tensor of the state dict (NaN, inf, another shape or dtype, missing or
extra), the calibration record, the format tag or version. It is saved again with ``torch.save``. An ONNX
mutant changes an initializer (values, shape, dtype), a node's attribute, input or type, or the graph's input.
The property (``check_command``): the bmhw command given the mutant exits 0, or exits 2 with exactly one line on
stderr and no traceback.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import torch

from cli_runner import run_main

ODD = (None, True, -1, 0, 1, 3, 100_000, 1 << 40, 2.5, float("nan"), "x", [], [4], {}, "bm15", "classical", "adder")


def _pick(rng, items):
    items = list(items)
    return items[int(rng.integers(len(items)))]


def _nudge(value, rng):
    if isinstance(value, bool) or value is None:
        return _pick(rng, ODD)
    if isinstance(value, int):
        return value + int(rng.choice([-value, -1, 1, value, 10 * value + 7]))
    if isinstance(value, list) and value:
        out, i = copy.deepcopy(value), int(rng.integers(len(value)))
        out[i] = _nudge(out[i], rng)
        return out
    return _pick(rng, ODD)


def _mutate_tensor(state: dict, rng) -> str:
    name = _pick(rng, sorted(state))
    tensor = state[name]
    choice = int(rng.integers(7))
    if choice == 0:
        del state[name]
        return f"{name} removed"
    if choice == 1:
        state[name + "_extra"] = tensor.clone()
        return f"{name}_extra added"
    if choice == 2:
        state[name] = tensor.reshape(-1)[:-1].clone() if tensor.numel() > 1 else torch.zeros(3)
        return f"{name} reshaped"
    if choice == 3:
        state[name] = tensor.to(_pick(rng, (torch.float64, torch.int64, torch.float16, torch.bool)))
        return f"{name} as another dtype"
    flat = tensor.reshape(-1).clone().float()
    flat[int(rng.integers(max(1, flat.numel())))] = (float("nan"), float("inf"), -1e30, 0.0)[choice - 3]
    state[name] = flat.reshape(tensor.shape).to(tensor.dtype) if tensor.is_floating_point() else flat.reshape(
        tensor.shape)
    return f"{name}: one value changed"


def _mutate_config(config: dict, rng) -> str:
    if rng.random() < 0.5:
        key = _pick(rng, sorted(config["args"]) + ["widths"])
        config["args"][key] = _nudge(config["args"].get(key), rng) if rng.random() < 0.7 else _pick(rng, ODD)
        return f"args.{key} = {str(config['args'][key])[:40]}"
    layer = _pick(rng, sorted(config["layers"]))
    spec = config["layers"][layer]
    key = _pick(rng, sorted(spec) + ["maxima", "alpha"])
    spec[key] = _pick(rng, ODD + ("max", "lse", "6s", 2))
    return f"layers.{layer}.{key} = {spec[key]!r}"


def checkpoint_mutants(path, seed: int, count: int):
    """``count`` mutated copies of the checkpoint at ``path`` as (what, bytes), the same for the same seed."""
    rng = np.random.default_rng(seed)
    original = torch.load(path, weights_only=True)
    for _ in range(count):
        data = copy.deepcopy(original)
        kind = rng.random()
        if kind < 0.4:
            what = _mutate_tensor(data["state_dict"], rng)
        elif kind < 0.8:
            what = _mutate_config(data["config"], rng)
        elif kind < 0.9 and "calibration" in data["metadata"]:
            record = data["metadata"]["calibration"]
            key = _pick(rng, sorted(record))
            record[key] = _nudge(record[key], rng) if key != "maxima" else {k: _pick(rng, (-1.0, float("inf"), "x"))
                                                                              for k in record["maxima"]}
            what = f"calibration.{key} changed"
        else:
            key = _pick(rng, ("format", "version", "config", "state_dict", "metadata"))
            data[key] = _pick(rng, ODD)
            what = f"{key} = {str(data[key])[:40]}"
        buffer = io.BytesIO()
        torch.save(data, buffer)
        yield what, buffer.getvalue()


def onnx_mutants(model, seed: int, count: int):
    """``count`` mutated copies of the ``onnx.ModelProto`` ``model`` as (what, bytes)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    for _ in range(count):
        m = copy.deepcopy(model)
        graph = m.graph
        choice = int(rng.integers(6))
        if choice <= 1 and graph.initializer:
            init = _pick(rng, graph.initializer)
            array = numpy_helper.to_array(init).copy()
            if choice == 0 and array.size and array.dtype.kind == "f":
                array.reshape(-1)[int(rng.integers(array.size))] = _pick(rng, (np.nan, np.inf, -1e30))
            elif array.size > 1:
                array = array.reshape(-1)[:-1]
            init.CopyFrom(numpy_helper.from_array(array, init.name))
            what = f"initializer {init.name} changed"
        elif choice == 2 and graph.node:
            node = _pick(rng, graph.node)
            if node.attribute:
                attr = _pick(rng, node.attribute)
                if attr.ints:
                    attr.ints[int(rng.integers(len(attr.ints)))] = int(_pick(rng, (0, -1, 7, 1 << 20)))
                elif attr.type == attr.INT:
                    attr.i = int(_pick(rng, (0, -1, 7, 1 << 20)))
                what = f"node {node.name}: attribute {attr.name}"
            else:
                what = f"node {node.name}: untouched"
        elif choice == 3 and graph.node:
            node = _pick(rng, graph.node)
            if node.input:
                node.input[int(rng.integers(len(node.input)))] = _pick(rng, ["missing", graph.input[0].name])
            what = f"node {node.name}: an input renamed"
        elif choice == 4 and graph.node:
            node = _pick(rng, graph.node)
            node.op_type = _pick(rng, ("Relu", "Conv", "Gemm", "MaxPool", "Foo", "Identity"))
            what = f"node {node.name}: op type {node.op_type}"
        else:
            dims = graph.input[0].type.tensor_type.shape.dim
            dim = dims[int(rng.integers(len(dims)))]
            dim.dim_value = int(_pick(rng, (1, 3, 29, 1 << 16)))
            what = "graph input shape changed"
        yield what, m.SerializeToString()


def check_command(argv) -> int:
    """Run bmhw with ``argv``: exit 0, or 2 with one line on stderr and no traceback; returns the exit code."""
    code, out, err = run_main(argv)
    assert "Traceback" not in out + err, f"a traceback: {err[-400:]}"
    if code != 0:
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("bmhw: error: "), \
            f"exit {code}, stderr: {err[-400:]}"
    return code
