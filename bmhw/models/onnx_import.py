"""A classical CNN from ONNX to a bmhw checkpoint (``bmhw import-onnx``; docs/onnx.md).

The graph is read into a few kinds of layer (convolution, linear, ReLU, max pooling, flatten, residual
add, global average pooling), batch normalisation and constant bias additions folded into the Conv or
Gemm / MatMul before them. That structure is then matched against the project's reference networks
(bmhw's LeNet and ResNet-22, with whatever widths the graph has) and its weights loaded into the
matching model, so that the checkpoint works with ``bmhw convert``, ``bmhw distill --teacher`` and
``bmhw eval`` like one that bmhw trained. Finally onnxruntime runs the ONNX graph and PyTorch the new
model on the same random images, which must agree (``IMPORT_TOLERANCE``).

An operator outside that set is an error naming its type and node; a graph the reference networks
cannot express is an error saying what differs; a file that is not ONNX is a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from bmhw.backends.onnx.graph import load_model
from bmhw.errors import BmhwError

SUPPORTED = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool", "Flatten", "Reshape", "Add", "BatchNormalization",
             "GlobalAveragePool", "ReduceMean", "Squeeze", "Identity", "Dropout")
# Largest |onnxruntime - PyTorch| of the logits, relative to their largest magnitude, that the import accepts.
IMPORT_TOLERANCE = 1e-4
# The batch size in evaluated shape arithmetic (Shape of the input, then Gather, Concat, ... for a Reshape).
BATCH = 7919
LENET_TEXT = "conv 5x5, ReLU, max-pool 2, conv 5x5, ReLU, max-pool 2, flatten, linear, ReLU, linear, ReLU, linear"


@dataclass(eq=False)
class Layer:
    """One layer of the imported network; ``inputs`` are the layers whose outputs it reads."""

    kind: str  # input, conv, linear, relu, maxpool, flatten, add, gap
    node: str  # the ONNX node it came from (for messages)
    inputs: list = field(default_factory=list)
    shape: tuple = ()  # output shape per image
    weight: np.ndarray | None = None  # float64; conv: (O, C, kh, kw), linear: (O, K)
    bias: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "conv":
            a = self.attrs
            return (f"a {a['kernel'][0]}x{a['kernel'][1]} convolution {self.weight.shape[1]} -> {self.weight.shape[0]} "
                    f"(stride {a['stride'][0]}, padding {a['padding'][0]})")
        if self.kind == "linear":
            return f"a linear layer {self.weight.shape[1]} -> {self.weight.shape[0]}"
        if self.kind == "maxpool":
            return f"a max-pool {self.attrs['kernel']} (stride {self.attrs['stride']})"
        return {"relu": "a ReLU", "flatten": "a flatten", "add": "a residual add", "gap": "a global average pool",
                "input": "the input"}[self.kind]


@dataclass
class Block:
    """A residual block: ``main`` and ``shortcut`` (maybe empty) branches from one input, summed by ``add``."""

    main: list
    shortcut: list
    add: Layer


def _where(node, index: int) -> str:
    return repr(node.name) if node.name else f"#{index} (output {node.output[0]!r})"


class _Reader:
    """The data path of an ONNX graph as :class:`Layer` objects."""

    def __init__(self, model: onnx.ModelProto, path: Path):
        self.path = path
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        self.consts = {t.name: numpy_helper.to_array(t) for t in self.graph.initializer}
        self.shapes: dict = {}  # values computed from the data's shape (BATCH standing for the batch size)
        self.values: dict = {}  # ONNX value name -> Layer producing it
        self.users: dict = {}  # ONNX value name -> how many nodes (and graph outputs) read it
        for node in self.graph.node:
            for name in node.input:
                self.users[name] = self.users.get(name, 0) + 1
        for out in self.graph.output:
            self.users[out.name] = self.users.get(out.name, 0) + 1
        self.inferred = self._inferred_shapes(model)

    def error(self, text: str) -> BmhwError:
        return BmhwError(f"{self.path}: {text}")

    @staticmethod
    def _inferred_shapes(model) -> dict:
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:  # noqa: BLE001 - shape inference is a help for Reshape only
            return {}
        shapes = {}
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            dims = info.type.tensor_type.shape.dim
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        return shapes

    # --- reading ---------------------------------------------------------------------------------------------

    def read(self) -> Layer:
        inputs = [i for i in self.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise self.error(f"the graph has {len(inputs)} data inputs; bmhw imports networks with one (the images)")
        dims = inputs[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if len(shape) != 4 or not all(shape[1:]):
            raise self.error(f"the graph input {inputs[0].name!r} has shape {_text(shape)}; bmhw imports image "
                             "networks with a fixed image shape (N, C, H, W)")
        self.batch = shape[0]
        self.values[inputs[0].name] = Layer("input", inputs[0].name, shape=shape[1:])
        for index, node in enumerate(self.graph.node):
            self._node(node, index)
        output = self.graph.output[0].name
        if output not in self.values:
            raise self.error(f"the graph output {output!r} does not depend on the input")
        return self.values[output]

    def _const(self, name: str, node, index: int, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.error(f"node {_where(node, index)} ({node.op_type}): its {what} is not a constant")
        return self.consts[name]

    def _node(self, node, index: int) -> None:
        op = node.op_type
        data = [name for name in node.input if name in self.values]
        if node.domain not in ("", "ai.onnx"):
            raise self.error(f"node {_where(node, index)} is a {node.domain}.{op} operator, which bmhw does not "
                             f"import (it imports {', '.join(SUPPORTED)})")
        if not data or op == "Shape":  # a constant, a tensor's shape, or arithmetic on shapes and constants
            self._fold(node)
            return
        if op not in SUPPORTED:
            raise self.error(f"node {_where(node, index)} is a {op} operator, which bmhw does not import (it "
                             f"imports {', '.join(SUPPORTED)})")
        if len(node.output) != 1 and not (op == "Dropout" and not any(node.output[1:])) \
                and not (op == "BatchNormalization" and not any(node.output[1:])):
            raise self.error(f"node {_where(node, index)} ({op}) has {len(node.output)} outputs; bmhw imports "
                             "single-output layers")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        where = f"node {_where(node, index)} ({op})"
        src = self.values[data[0]]
        if op != "Add" and (node.input[0] not in self.values or len(data) > 1):
            raise self.error(f"{where}: bmhw imports layers whose first input is the data and whose other inputs "
                             "are constants (weights)")
        handler = getattr(self, f"_{op.lower()}")
        out = handler(node, index, src, attrs, where)
        self.values[node.output[0]] = out

    def _fold(self, node) -> None:
        """Evaluate constant and shape arithmetic (Constant, Identity, Cast; Shape of the data and the ops that
        compute on shapes): constants go to ``consts``, anything that depends on a shape to ``shapes``, where a
        Reshape may read its target. The batch size is the stand-in ``BATCH`` there."""
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        op, out = node.op_type, node.output[0] if node.output else None
        if op == "Constant":
            if "value" in attrs:
                self.consts[out] = numpy_helper.to_array(attrs["value"])
            else:
                for key in ("value_float", "value_floats", "value_int", "value_ints"):
                    if key in attrs:
                        self.consts[out] = np.asarray(attrs[key])
            return
        if op == "Shape" and node.input[0] in self.values:
            shape = np.array((BATCH, *self.values[node.input[0]].shape), dtype=np.int64)
            self.shapes[out] = shape[attrs.get("start", 0):attrs.get("end", len(shape))]
            return
        args = [self.consts.get(name, self.shapes.get(name)) if name else None for name in node.input]
        if any(a is None for a, name in zip(args, node.input) if name):
            return  # not computable here: only a Reshape could need it, and it says so
        try:
            value = _evaluate(op, args, attrs)
        except Exception:  # noqa: BLE001 - an op this little evaluator does not know, or odd inputs
            return
        if value is not None:
            into = self.shapes if any(name in self.shapes for name in node.input) else self.consts
            into[out] = value

    def _alone(self, layer: Layer, node, index: int) -> bool:
        """Whether ``node`` is the only reader of its data input (so that it can be folded into ``layer``)."""
        return self.users.get(node.input[0], 0) == 1 and layer.kind in ("conv", "linear")

    # --- one handler per operator ------------------------------------------------------------------------------

    def _conv(self, node, index, src, attrs, where):
        weight = self._const(node.input[1], node, index, "weight").astype(np.float64)
        bias = self._const(node.input[2], node, index, "bias").astype(np.float64) if len(node.input) > 2 \
            and node.input[2] else None
        if weight.ndim != 4:
            raise self.error(f"{where}: only 2-D convolutions are imported (weight of shape {weight.shape})")
        if attrs.get("group", 1) != 1 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise self.error(f"{where}: grouped or dilated convolutions are not imported (group "
                             f"{attrs.get('group', 1)}, dilations {attrs.get('dilations', [1, 1])})")
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise self.error(f"{where}: auto_pad {attrs['auto_pad']!r} is not imported; export with explicit pads")
        kh, kw = weight.shape[2:]
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[0] != pads[2] or pads[1] != pads[3]:
            raise self.error(f"{where}: asymmetric padding {pads} is not imported")
        stride = tuple(attrs.get("strides", [1, 1]))
        c, h, w = self._image(src, where)
        if weight.shape[1] != c:
            raise self.error(f"{where}: weight for {weight.shape[1]} input channels, input has {c}")
        shape = (weight.shape[0], (h + 2 * pads[0] - kh) // stride[0] + 1, (w + 2 * pads[1] - kw) // stride[1] + 1)
        return Layer("conv", node.name or node.output[0], [src], shape, weight, bias,
                     {"kernel": (kh, kw), "stride": stride, "padding": (pads[0], pads[1])})

    def _gemm(self, node, index, src, attrs, where):
        if attrs.get("transA", 0):
            raise self.error(f"{where}: transA=1 is not imported")
        weight = self._const(node.input[1], node, index, "weight").astype(np.float64) * attrs.get("alpha", 1.0)
        weight = weight if attrs.get("transB", 0) else weight.T
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self._const(node.input[2], node, index, "bias").astype(np.float64)
                                   * attrs.get("beta", 1.0), (weight.shape[0],)).copy()
        return self._linear(node, src, weight, bias, where)

    def _matmul(self, node, index, src, attrs, where):
        weight = self._const(node.input[1], node, index, "weight").astype(np.float64)
        if weight.ndim != 2:
            raise self.error(f"{where}: a MatMul with a {weight.ndim}-D weight is not imported")
        return self._linear(node, src, weight.T, None, where)

    def _linear(self, node, src, weight, bias, where):
        if len(src.shape) != 1 or src.shape[0] != weight.shape[1]:
            raise self.error(f"{where}: a linear layer of {weight.shape[1]} inputs reads a tensor of shape "
                             f"{_text(src.shape)}; flatten it first")
        return Layer("linear", node.name or node.output[0], [src], (weight.shape[0],), weight, bias)

    def _relu(self, node, index, src, attrs, where):
        return Layer("relu", node.name or node.output[0], [src], src.shape)

    def _maxpool(self, node, index, src, attrs, where):
        kernel = tuple(attrs.get("kernel_shape", ()))
        stride = tuple(attrs.get("strides", [1] * len(kernel)))
        if len(kernel) != 2 or kernel[0] != kernel[1] or stride[0] != stride[1] or any(attrs.get("pads", [0])) \
                or attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])) \
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            raise self.error(f"{where}: only square max pooling without padding, dilation or ceil_mode is imported "
                             f"(kernel {list(kernel)}, strides {list(stride)}, pads {list(attrs.get('pads', []))})")
        c, h, w = self._image(src, where)
        k, s = kernel[0], stride[0]
        return Layer("maxpool", node.name or node.output[0], [src], (c, (h - k) // s + 1, (w - k) // s + 1),
                     attrs={"kernel": k, "stride": s})

    def _flatten(self, node, index, src, attrs, where):
        if attrs.get("axis", 1) != 1:
            raise self.error(f"{where}: only Flatten with axis 1 (keeping the batch) is imported")
        return self._flat(node, src)

    def _flat(self, node, src):
        if len(src.shape) == 1:
            return src
        return Layer("flatten", node.name or node.output[0], [src], (int(np.prod(src.shape)),))

    def _reshape(self, node, index, src, attrs, where):
        size = int(np.prod(src.shape))
        known = self.consts.get(node.input[1], self.shapes.get(node.input[1]))
        if known is not None:
            target = [int(v) for v in np.asarray(known).reshape(-1)]
            flat = len(target) == 2 and target[1] in (-1, size) and target[0] in (-1, 0, BATCH, self.batch)
        else:
            out = self.inferred.get(node.output[0])
            flat = out is not None and len(out) == 2 and out[1] == size
            target = out
        if not flat:
            raise self.error(f"{where}: only a Reshape that flattens each image (to (N, {size})) is imported, "
                             f"not one to {target}")
        return self._flat(node, src)

    def _squeeze(self, node, index, src, attrs, where):
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = [int(v) for v in self._const(node.input[1], node, index, "axes")]
        axes = sorted(a % 4 for a in axes or ())
        if len(src.shape) != 3 or axes != [2, 3] or src.shape[1:] != (1, 1):
            raise self.error(f"{where}: only a Squeeze of the 1x1 spatial axes after global pooling is imported")
        return self._flat(node, src)

    def _globalaveragepool(self, node, index, src, attrs, where):
        c, _, _ = self._image(src, where)
        return Layer("gap", node.name or node.output[0], [src], (c, 1, 1))

    def _reducemean(self, node, index, src, attrs, where):
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = [int(v) for v in self._const(node.input[1], node, index, "axes")]
        if sorted(a % 4 for a in axes or ()) != [2, 3] or len(src.shape) != 3:
            raise self.error(f"{where}: only a ReduceMean over the spatial axes (global average pooling) is imported")
        gap = Layer("gap", node.name or node.output[0], [src], (src.shape[0], 1, 1))
        return gap if attrs.get("keepdims", 1) else self._flat(node, gap)

    def _identity(self, node, index, src, attrs, where):
        return src

    _dropout = _identity  # inference: the identity

    def _add(self, node, index, src, attrs, where):
        data = [self.values[name] for name in node.input if name in self.values]
        if len(data) == 2:
            a, b = data
            if a.shape != b.shape:
                raise self.error(f"{where}: a residual add of shapes {_text(a.shape)} and {_text(b.shape)} is not "
                                 "imported")
            return Layer("add", node.name or node.output[0], [a, b], a.shape)
        data_name = next(name for name in node.input if name in self.values)
        const_name = next(name for name in node.input if name != data_name)
        value = self._const(const_name, node, index, "second operand").astype(np.float64)
        out = src.shape[0] if src.shape else 0
        shapes = {"conv": {(out, 1, 1), (1, out, 1, 1)}, "linear": {(out,), (1, out)}}.get(src.kind, set())
        if not shapes or self.users.get(data_name, 0) != 1 or not (value.shape in shapes or value.size == 1):
            raise self.error(f"{where}: bmhw imports an Add of a constant only as the bias of the Conv, Gemm or "
                             "MatMul right before it (one value per output channel)")
        value = np.broadcast_to(value.reshape(-1), (out,))
        src.bias = (src.bias if src.bias is not None else 0) + value.reshape(-1)
        return src

    def _batchnormalization(self, node, index, src, attrs, where):
        if attrs.get("training_mode", 0):
            raise self.error(f"{where}: batch normalisation in training mode is not imported; export in eval mode")
        if not self._alone(src, node, index):
            raise self.error(f"{where}: bmhw folds batch normalisation into the Conv or Gemm right before it, but "
                             f"this one reads {src.describe()} ({src.node!r})")
        scale, shift, mean, var = (self._const(node.input[i], node, index, what).astype(np.float64)
                                   for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
        factor = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
        src.weight = src.weight * factor.reshape((-1,) + (1,) * (src.weight.ndim - 1))
        src.bias = ((src.bias if src.bias is not None else 0) - mean) * factor + shift
        return src

    def _image(self, layer: Layer, where: str) -> tuple:
        if len(layer.shape) != 3:
            raise self.error(f"{where}: expects an image tensor (N, C, H, W), gets shape {_text(layer.shape)}")
        return layer.shape


def _evaluate(op: str, args: list, attrs: dict):
    """The value of one node of constant or shape arithmetic (the ops exporters emit around a Reshape), or
    None for another op."""
    def axes(default=None):
        value = attrs.get("axes", args[1] if len(args) > 1 and args[1] is not None else default)
        return None if value is None else [int(a) for a in np.asarray(value).reshape(-1)]

    if op in ("Identity", "Cast"):
        value = args[0]
        return value.astype(onnx.helper.tensor_dtype_to_np_dtype(attrs["to"])) if op == "Cast" else value
    if op == "Gather":
        return np.take(args[0], args[1].astype(np.int64), axis=attrs.get("axis", 0))
    if op == "Unsqueeze":
        value = args[0]
        for a in sorted(a % (value.ndim + len(axes())) for a in axes()):
            value = np.expand_dims(value, a)
        return value
    if op == "Squeeze":
        return np.squeeze(args[0], axis=tuple(axes()) if axes() else None)
    if op == "Concat":
        return np.concatenate([np.atleast_1d(a) for a in args], axis=attrs.get("axis", 0))
    if op == "Slice":
        starts, ends = (attrs.get(k, args[i] if len(args) > i else None) for k, i in (("starts", 1), ("ends", 2)))
        slice_axes = axes() if "axes" in attrs else ([int(a) for a in args[3]] if len(args) > 3 and args[3] is not None
                                                     else list(range(len(starts))))
        steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
        index = [slice(None)] * args[0].ndim
        for a, b, e, st in zip(slice_axes, starts, ends, steps):
            index[a] = slice(int(b), int(e), int(st))
        return args[0][tuple(index)]
    binary = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.floor_divide}
    if op in binary:
        return binary[op](args[0], args[1])
    if op == "ReduceProd":
        return np.prod(args[0], keepdims=bool(attrs.get("keepdims", 1)))
    return None


def _text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


# --- structure: chains and residual blocks -------------------------------------------------------------------


def _reachable(output: Layer) -> dict:
    """Every layer the output depends on, with its readers among them."""
    readers, stack, seen = {}, [output], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        readers.setdefault(id(layer), [])
        for src in layer.inputs:
            readers.setdefault(id(src), []).append(layer)
            stack.append(src)
    return readers


def _program(output: Layer, start: Layer, error) -> list:
    """The network from ``start`` to ``output`` as a list of layers and :class:`Block` objects."""
    readers = _reachable(output)
    if id(start) not in readers:
        raise error("the graph output does not depend on its input")
    items, cur = [], start
    while cur is not output:
        users = readers[id(cur)]
        if len(users) == 1 and users[0].kind != "add":
            cur = users[0]
            items.append(cur)
            continue
        branches = [_branch(u, readers, error) for u in users] if len(users) == 2 else []
        if len({id(add) for _, add in branches}) != 1:
            raise error(f"the output of {cur.describe()} ({cur.node!r}) is read by {len(users)} layers that do not "
                        "form a residual block (two branches summed by one Add)")
        add = branches[0][1]
        chains = sorted((chain for chain, _ in branches), key=len, reverse=True) + [[]]
        items.append(Block(main=chains[0], shortcut=chains[1], add=add))
        cur = add
    return items


def _branch(first: Layer, readers: dict, error) -> tuple[list, Layer]:
    """A chain of single-reader layers from ``first`` to the residual Add it ends in."""
    chain, cur = [], first
    while cur.kind != "add":
        chain.append(cur)
        users = readers[id(cur)]
        if len(users) != 1:
            raise error(f"{cur.describe()} ({cur.node!r}) starts a branch inside a residual block; bmhw's ResNet "
                        "has none")
        cur = users[0]
    return chain, cur


# --- matching the reference networks -----------------------------------------------------------------------


def _kinds(items) -> list:
    return ["block" if isinstance(i, Block) else i.kind for i in items]


def _swap_pool_relu(items: list) -> list:
    """Max pooling then ReLU is ReLU then max pooling (they commute): the order bmhw's models use."""
    items = list(items)
    for i in range(len(items) - 1):
        if _kinds(items[i:i + 2]) == ["maxpool", "relu"]:
            items[i], items[i + 1] = items[i + 1], items[i]
    return items


def _match_lenet(items: list, in_shape: tuple, error):
    """(arch args, {weight layer name: Layer}) of a LeNet, or an error saying what differs."""
    items = _swap_pool_relu(items)
    want = ["conv", "relu", "maxpool", "conv", "relu", "maxpool", "flatten", "linear", "relu", "linear", "relu",
            "linear"]
    have = _kinds(items)
    for i, kind in enumerate(want):
        if i >= len(have) or have[i] != kind:
            found = f"{items[i].describe()} ({items[i].node!r})" if i < len(have) else "the end of the graph"
            raise error(f"the graph is not a network bmhw has: as its LeNet ({LENET_TEXT}) it has {found} where "
                        f"the LeNet has a {kind} (layer {i + 1})")
    if len(have) > len(want):
        raise error(f"the graph is not a network bmhw has: it goes on after the LeNet's last layer with "
                    f"{items[len(want)].describe()} ({items[len(want)].node!r})")
    conv1, _, pool1, conv2, _, pool2, _, fc1, _, fc2, _, fc3 = items
    for conv in (conv1, conv2):
        if conv.attrs != {"kernel": (5, 5), "stride": (1, 1), "padding": (0, 0)}:
            raise error(f"node {conv.node!r} is {conv.describe()}; bmhw's LeNet has 5x5 convolutions with stride 1 "
                        "and no padding")
    for pool in (pool1, pool2):
        if pool.attrs != {"kernel": 2, "stride": 2}:
            raise error(f"node {pool.node!r} is {pool.describe()}; bmhw's LeNet pools 2x2 with stride 2")
    c, h, w = in_shape
    if h != w:
        raise error(f"the input images are {h}x{w}; bmhw's LeNet takes square images")
    args = {"widths": [conv1.weight.shape[0], conv2.weight.shape[0], fc1.weight.shape[0], fc2.weight.shape[0]],
            "in_channels": c, "input_size": h, "num_classes": fc3.weight.shape[0]}
    return "lenet", args, {"conv1": conv1, "conv2": conv2, "fc1": fc1, "fc2": fc2, "fc3": fc3}


def _match_resnet(items: list, in_shape: tuple, error):
    """(arch args, {weight layer name: Layer}) of a ResNet-22, or an error saying what differs."""
    def fail(text):
        return error(f"the graph is not a network bmhw has: as its ResNet-22 (stem conv 3x3, ReLU, residual blocks "
                     f"of two 3x3 convolutions, global average pool, flatten, linear) {text}")

    have = _kinds(items)
    if have[:2] != ["conv", "relu"] or have[-3:] != ["gap", "flatten", "linear"]:
        raise fail(f"it starts with {', '.join(have[:2])} and ends with {', '.join(have[-3:])}")
    layers = {"stem": items[0]}
    body = items[2:-3]
    blocks = []
    for i in range(0, len(body), 2):
        block = body[i]
        relu = body[i + 1] if i + 1 < len(body) else None
        if not isinstance(block, Block) or relu is None or isinstance(relu, Block) or relu.kind != "relu":
            what = "a residual block" if isinstance(block, Block) else f"{block.describe()} ({block.node!r})"
            raise fail(f"layer {i + 3} is {what}, where a residual block followed by a ReLU belongs")
        if _kinds(block.main) != ["conv", "relu", "conv"] or _kinds(block.shortcut) not in ([], ["conv"]):
            raise fail(f"the block ending in {block.add.node!r} has branches {_kinds(block.main)} and "
                       f"{_kinds(block.shortcut)}, not conv, relu, conv and a 1x1 convolution or nothing")
        blocks.append(block)
    if not blocks:
        raise fail("it has no residual block")
    # Stages: a new one begins where a block's first convolution has stride 2.
    stages = [[]]
    for block in blocks:
        if block.main[0].attrs["stride"] != (1, 1) and stages[-1]:
            stages.append([])
        stages[-1].append(block)
    widths = [stage[0].main[0].weight.shape[0] for stage in stages]
    counts = {len(stage) for stage in stages}
    if len(counts) != 1:
        raise fail(f"its stages have {[len(s) for s in stages]} blocks; bmhw's ResNet has the same number in each")
    stem = items[0]
    if stem.attrs != {"kernel": (3, 3), "stride": (1, 1), "padding": (1, 1)} or stem.weight.shape[0] != widths[0]:
        raise fail(f"the stem {stem.node!r} is {stem.describe()}, not a 3x3 convolution to {widths[0]} channels, "
                   "stride 1, padding 1")
    in_ch = widths[0]
    for s, stage in enumerate(stages):
        for b, block in enumerate(stage):
            prefix, stride = f"stages.{s}.{b}", (2 if s > 0 and b == 0 else 1)
            conv1, _, conv2 = block.main
            width = widths[s]
            expect = [(conv1, (3, 3), stride, 1), (conv2, (3, 3), 1, 1)]
            projection = stride != 1 or in_ch != width
            if projection != bool(block.shortcut):
                raise fail(f"block {prefix} ({block.add.node!r}) has {'a' if block.shortcut else 'no'} projection "
                           f"shortcut where bmhw's ResNet has {'one' if projection else 'none'}")
            if projection:
                expect.append((block.shortcut[0], (1, 1), stride, 0))
            for conv, kernel, st, pad in expect:
                if conv.attrs != {"kernel": kernel, "stride": (st, st), "padding": (pad, pad)} \
                        or conv.weight.shape[0] != width:
                    raise fail(f"in block {prefix}, {conv.node!r} is {conv.describe()}, not a {kernel[0]}x{kernel[1]} "
                               f"convolution to {width} channels with stride {st} and padding {pad}")
            layers[f"{prefix}.conv1"], layers[f"{prefix}.conv2"] = conv1, conv2
            if projection:
                layers[f"{prefix}.shortcut.0"] = block.shortcut[0]
            in_ch = width
    layers["fc"] = items[-1]
    args = {"widths": widths, "blocks": counts.pop(), "in_channels": in_shape[0],
            "num_classes": items[-1].weight.shape[0]}
    return "resnet22", args, layers


# --- the import ----------------------------------------------------------------------------------------------


@dataclass
class Imported:
    model: nn.Module
    arch: str
    args: dict
    error: float  # relative |onnxruntime - PyTorch| of the logits on random images
    producer: str


def _build(arch: str, args: dict, layers: dict) -> nn.Module:
    from bmhw.models import build

    specs = {name: {"neuron": "classical", "bias": layer.bias is not None} for name, layer in layers.items()}
    model = build({"arch": arch, "args": args, "layers": specs})
    with torch.no_grad():
        for name, layer in layers.items():
            module = model.get_submodule(name)
            if tuple(module.weight.shape) != layer.weight.shape:
                raise BmhwError(f"layer {name} ({layer.node!r}) has weights of shape {layer.weight.shape}, bmhw's "
                                f"{arch} of these widths {tuple(module.weight.shape)}")
            module.weight.copy_(torch.from_numpy(layer.weight))
            if layer.bias is not None:
                module.bias.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float64)))
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # folded into the convolutions: the identity
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
    return model.eval()


def _check(model: nn.Module, onnx_model, batch, in_shape, path: Path) -> float:
    """|onnxruntime - PyTorch| of the logits on random images, relative to their largest magnitude."""
    from bmhw.backends.onnx.run import session_from_model

    session = session_from_model(onnx_model, path)
    images = np.random.default_rng(0).integers(0, 256, size=(batch or 4, *in_shape), dtype=np.uint8)
    first = session.output_names[0]
    got = session.run(images, [first])[first]
    with torch.no_grad():
        want = model(torch.from_numpy(session.feed(images).astype(np.float32))).numpy()
    if got.shape != want.shape:
        raise BmhwError(f"{path}: the imported network gives outputs of shape {want.shape[1:]}, the graph "
                        f"{got.shape[1:]}")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def import_onnx(path) -> Imported:
    """Read the ONNX model at ``path`` as a classical bmhw network (LeNet or ResNet-22)."""
    path = Path(path)
    onnx_model = load_model(path)
    reader = _Reader(onnx_model, path)
    output = reader.read()
    start = reader.values[next(i.name for i in onnx_model.graph.input if i.name not in reader.consts)]
    items = _program(output, start, reader.error)
    match = _match_resnet if any(isinstance(i, Block) for i in items) else _match_lenet
    arch, args, layers = match(items, start.shape, reader.error)
    model = _build(arch, args, layers)
    error = _check(model, onnx_model, reader.batch, start.shape, path)
    if not error <= IMPORT_TOLERANCE:
        raise BmhwError(f"{path}: the imported {arch} differs from the ONNX graph by {error:.2g} (relative, on random "
                        f"images; at most {IMPORT_TOLERANCE:g} is accepted): the graph computes something the "
                        "import does not read")
    producer = " ".join(p for p in (onnx_model.producer_name, onnx_model.producer_version) if p)
    return Imported(model=model, arch=arch, args=args, error=error, producer=producer)
