"""A small, deterministic builder of ONNX graphs, shared by the ONNX writers (docs/onnx.md).

Every name is chosen here from a hint and a counter, never from ids or the clock, and every model gets
the same opset, IR version, producer name and version: the same network gives byte-identical ``.onnx``
files. Models are checked with ``onnx.checker.check_model`` (with shape inference) before they are
returned. NumPy and onnx only, never torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bmhw import __version__
from bmhw.atomic import write_atomically
from bmhw.errors import BmhwError

# Opset 18: every reduction takes its axes as an input. IR version 9 is what opset 18 came with, and
# what every onnxruntime since 1.14 reads.
OPSET = 18
IR_VERSION = 9
PRODUCER = "bmhw"

ELEM_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
              np.dtype(np.uint64): TensorProto.UINT64, np.dtype(np.bool_): TensorProto.BOOL}


class Graph:
    """Nodes, initializers, inputs and outputs of one graph, with unique deterministic names."""

    def __init__(self, name: str, reserved=()):
        """``reserved``: names that :meth:`fresh` never hands out, kept for the graph's inputs and outputs."""
        self.name = name
        self.nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.outputs: list = []
        self._reserved: set = set(reserved)
        self._used: set = set()  # names handed out: values, nodes, inputs, outputs
        self._constants: dict = {}

    def fresh(self, hint: str) -> str:
        """``hint`` itself if unused, else ``hint_1``, ``hint_2``, ... (the first one free)."""
        name, n = hint, 0
        while name in self._used or name in self._reserved:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def _claim(self, name: str) -> None:
        if name in self._used:
            raise ValueError(f"graph input or output name {name!r} is already taken")
        self._used.add(name)

    def const(self, value, dtype, hint: str = "const") -> str:
        """An initializer holding ``value`` as ``dtype``; equal constants are stored once."""
        array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def i64(self, value, hint: str = "const") -> str:
        return self.const(value, np.int64, hint)

    def f32(self, value, hint: str = "const") -> str:
        return self.const(value, np.float32, hint)

    def op(self, op_type: str, inputs, hint: str, **attrs) -> str:
        """Append one node with a single output; returns the output's name (the node's name too)."""
        name = self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def patches(self, x: str, in_shape, kernel, stride, padding, hint: str) -> tuple[str, tuple]:
        """The patches of a convolution, (N, L, K), read from x (N, C, H, W) by one Gather, zero padded; and
        the output's (Ho, Wo). See :func:`patch_indices` for the order."""
        (ph, pw) = padding
        indices, out_hw = patch_indices(in_shape, kernel, stride, padding)
        if ph or pw:
            x = self.op("Pad", [x, self.i64([0, 0, ph, pw, 0, 0, ph, pw], f"{hint}_pads")], f"{hint}/pad",
                        mode="constant")
        flat = self.op("Reshape", [x, self.i64([0, -1], "shape_n_flat")], f"{hint}/flat")
        return self.op("Gather", [flat, self.i64(indices, f"{hint}_patch_index")], f"{hint}/patches", axis=1), out_hw

    def add_input(self, name: str, dtype, shape) -> str:
        self._claim(name)
        self.inputs.append(helper.make_tensor_value_info(name, ELEM_TYPES[np.dtype(dtype)], list(shape)))
        return name

    def add_output(self, value: str, name: str, dtype, shape) -> None:
        """Expose ``value`` as the graph output ``name`` (through an Identity node, so that one value can
        be exposed under several names)."""
        self._claim(name)
        self.nodes.append(helper.make_node("Identity", [value], [name], name=self.fresh(f"output/{name}")))
        self.outputs.append(helper.make_tensor_value_info(name, ELEM_TYPES[np.dtype(dtype)], list(shape)))

    def model(self, doc: str, metadata: dict) -> onnx.ModelProto:
        """The checked model: fixed opset, IR version and producer; ``metadata`` in sorted order."""
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                                  producer_name=PRODUCER, producer_version=__version__, doc_string=doc)
        helper.set_model_props(model, {str(k): str(v) for k, v in sorted(metadata.items())})
        onnx.checker.check_model(model, full_check=True)
        return model


def patch_indices(in_shape, kernel, stride, padding) -> tuple[np.ndarray, tuple]:
    """Positions in the zero-padded input (C x Hp x Wp, flattened) of every patch element: an (L, K) table,
    L output positions in raster order, K in the order channel, kernel row, kernel column."""
    c, h, w = (int(v) for v in in_shape)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    ch, ky, kx = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    oy, ox = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    rows = (oy.reshape(-1, 1) * sh + ky.reshape(1, -1))
    cols = (ox.reshape(-1, 1) * sw + kx.reshape(1, -1))
    return (ch.reshape(1, -1) * hp * wp + rows * wp + cols).astype(np.int64), (ho, wo)


def save_model(model: onnx.ModelProto, path) -> Path:
    """Write ``model`` to ``path`` atomically (a temporary file renamed into place)."""
    data = model.SerializeToString(deterministic=True)
    if len(data) >= 2**31:
        raise BmhwError(f"the ONNX model is {len(data)} bytes, beyond protobuf's 2 GiB limit")
    return write_atomically(path, lambda tmp: Path(tmp).write_bytes(data), "ONNX model", "model.onnx")


def metadata(model: onnx.ModelProto) -> dict:
    """The model's metadata properties as a dict."""
    return {prop.key: prop.value for prop in model.metadata_props}


def load_model(path) -> onnx.ModelProto:
    """Read an ``.onnx`` file; a missing file or one that is not an ONNX model is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise BmhwError(f"{path} not found: give an ONNX model file (.onnx)")
    try:
        model = onnx.load_model_from_string(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeError, ... on garbage
        raise BmhwError(f"{path} is not an ONNX model (the file does not parse as one: {type(err).__name__})") from None
    graph = model.graph
    if model.ir_version < 1 or not model.opset_import or not graph.node or not graph.input or not graph.output:
        raise BmhwError(f"{path} is not an ONNX model (no IR version, opset, nodes, inputs or outputs in it)")
    return model
