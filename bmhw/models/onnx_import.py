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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx.external_data_helper import load_external_data_for_tensor
from torch import nn

from bmhw.backends.onnx.graph import load_model
from bmhw.errors import BmhwError
from bmhw.models.onnx_reader import Block, Layer, _Reader

# Largest |onnxruntime - PyTorch| of the logits, relative to their largest magnitude, that the import accepts.
IMPORT_TOLERANCE = 1e-4
LENET_TEXT = "conv 5x5, ReLU, max-pool 2, conv 5x5, ReLU, max-pool 2, flatten, linear, ReLU, linear, ReLU, linear"


# --- external data: tensors kept in files beside the model ---------------------------------------------------


def _tensors(graph):
    """Every tensor of ``graph`` that may keep its data in a file: initializers and node attributes, subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def _load_external_data(model, path: Path) -> None:
    """Read the tensors stored outside the .onnx file into memory, from files inside the model's folder only:
    a location such as ../secret.bin or /etc/passwd is refused before anything is read."""
    folder = path.resolve().parent
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location:
            raise BmhwError(f"{path}: tensor {tensor.name!r} is marked as external data but names no file; re-export "
                            "the model")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise BmhwError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, outside the model's "
                            "folder; bmhw reads external data only from files beside the .onnx file")
        if not target.is_file():
            raise BmhwError(f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which is missing: copy "
                            "it beside the model")
        try:
            load_external_data_for_tensor(tensor, str(folder))
        except Exception as err:  # noqa: BLE001 - a short file, a bad offset: onnx raises several types
            raise BmhwError(f"{path}: cannot read the data of tensor {tensor.name!r} from {location!r} "
                            f"({type(err).__name__}); re-export the model") from None


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


def _match_cnn(items: list, in_shape: tuple, error):
    """(arch args, {weight layer name: Layer}) of a feed-forward CNN (bmhw.models.cnn) of any such chain."""
    from bmhw.models.cnn import check_stack

    c, h, w = in_shape
    if h != w:
        raise error(f"the input images are {h}x{w}; bmhw's networks take square images")
    stack, layers, counts = [], {}, {"conv": 0, "linear": 0}
    for item in _swap_pool_relu(items):
        where = f"node {item.node!r} ({item.describe()})"
        if item.kind == "conv":
            (kh, kw), (sh, sw), (ph, pw) = item.attrs["kernel"], item.attrs["stride"], item.attrs["padding"]
            if kh != kw or sh != sw or ph != pw:
                raise error(f"{where}: bmhw's convolutions have square kernels, strides and padding")
            stack.append({"op": "conv", "out": int(item.weight.shape[0]), "kernel": int(kh), "stride": int(sh),
                          "padding": int(ph)})
        elif item.kind == "linear":
            stack.append({"op": "linear", "out": int(item.weight.shape[0])})
        elif item.kind == "maxpool":
            if item.attrs.get("kernel") != item.attrs.get("stride"):
                raise error(f"{where}: bmhw pools with stride = kernel")
            stack.append({"op": "maxpool", "kernel": int(item.attrs["kernel"])})
        elif item.kind in ("relu", "flatten"):
            stack.append({"op": item.kind})
        else:
            raise error(f"{where}: a feed-forward network of bmhw has conv, linear, relu, maxpool and flatten layers")
        if item.kind in counts:
            counts[item.kind] += 1
            layers[f"conv{counts['conv']}" if item.kind == "conv" else f"fc{counts['linear']}"] = item
    try:
        check_stack(stack, c, h)
    except BmhwError as err:
        raise error(f"the graph is not a network bmhw takes: {err}") from None
    return "cnn", {"stack": stack, "in_channels": c, "input_size": h}, layers


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


def _check_graph(model, path: Path) -> None:
    """The graph as ONNX defines it, types and shapes inferred strictly (an initializer of the wrong shape, a node
    with the wrong inputs): refused in one line before the import reads anything."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # noqa: BLE001 - the checker and the shape inference raise several types
        detail = " ".join(str(err).split())[:200]
        raise BmhwError(f"{path}: the graph is not valid ONNX ({detail}); re-export it") from None


def import_onnx(path) -> Imported:
    """Read the ONNX model at ``path`` as a classical bmhw network (LeNet, ResNet-22, or a feed-forward CNN)."""
    path = Path(path)
    onnx_model = load_model(path)
    _load_external_data(onnx_model, path)
    _check_graph(onnx_model, path)
    reader = _Reader(onnx_model, path)
    output = reader.read()
    start = reader.values[next(i.name for i in onnx_model.graph.input if i.name not in reader.consts)]
    items = _program(output, start, reader.error)
    if any(isinstance(i, Block) for i in items):
        arch, args, layers = _match_resnet(items, start.shape, reader.error)
    else:  # the LeNet where the graph is one, else a feed-forward CNN of its own layers
        try:
            arch, args, layers = _match_lenet(items, start.shape, reader.error)
        except BmhwError:
            arch, args, layers = _match_cnn(items, start.shape, reader.error)
    model = _build(arch, args, layers)
    error = _check(model, onnx_model, reader.batch, start.shape, path)
    if not error <= IMPORT_TOLERANCE:
        raise BmhwError(f"{path}: the imported {arch} differs from the ONNX graph by {error:.2g} (relative, on random "
                        f"images; at most {IMPORT_TOLERANCE:g} is accepted): the graph computes something the "
                        "import does not read")
    producer = " ".join(p for p in (onnx_model.producer_name, onnx_model.producer_version) if p)
    return Imported(model=model, arch=arch, args=args, error=error, producer=producer)
