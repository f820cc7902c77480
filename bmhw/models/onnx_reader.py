"""Reading an ONNX graph for ``bmhw import-onnx`` (bmhw.models.onnx_import): nodes of the supported operators
become a few kinds of layer (convolution, linear, ReLU, max pooling, flatten, residual add, global average
pooling), with batch normalisation and constant bias additions folded into the Conv or Gemm / MatMul before
them, and shape arithmetic evaluated; anything else is a one-line error naming the node."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bmhw.errors import BmhwError

SUPPORTED = ("Conv", "Gemm", "MatMul", "Relu", "MaxPool", "Flatten", "Reshape", "Add", "BatchNormalization",
             "GlobalAveragePool", "ReduceMean", "Squeeze", "Identity", "Dropout")
# The batch size in evaluated shape arithmetic (Shape of the input, then Gather, Concat, ... for a Reshape).
BATCH = 7919


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
        for name, value in self.consts.items():
            self._check_finite(value, f"initializer {name!r}")
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

    def _check_finite(self, value: np.ndarray, what: str) -> None:
        # A NaN weight would make the import's check against onnxruntime fail with a misleading difference.
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise self.error(f"{what} holds NaN or infinite values; re-export the model from trained weights")

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
                self._check_finite(self.consts[out], f"the constant {out!r}")
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
        if bias is not None and bias.shape != (weight.shape[0],):
            raise self.error(f"{where}: a bias of shape {_text(bias.shape)} for {weight.shape[0]} output channels")
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
            bias = self._const(node.input[2], node, index, "bias").astype(np.float64) * attrs.get("beta", 1.0)
            if bias.size not in (1, weight.shape[0]) or bias.ndim > 2:
                raise self.error(f"{where}: a bias of shape {_text(bias.shape)} for {weight.shape[0]} outputs")
            bias = np.broadcast_to(bias.reshape(-1), (weight.shape[0],)).copy()
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
        if any(t.shape != (src.weight.shape[0],) for t in (scale, shift, mean, var)):
            raise self.error(f"{where}: batch normalisation parameters of shapes "
                             f"{', '.join(_text(t.shape) for t in (scale, shift, mean, var))} for "
                             f"{src.weight.shape[0]} channels")
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
