"""The float network (BM or classical) as an ONNX graph of standard operators (docs/onnx.md).

Each BM layer is written out from its formula in docs/neurons.md with Log, Exp, Add, ReduceMax,
ReduceSum, ...: the input patches by one Gather, the sums ``ln x + v`` broadcast over outputs, the
reduction (hard max, or LSE / S-morph / L-morph at the layer's temperature, each stabilised by its
maximum as PyTorch does), then the branches, the correction and the bias. Classical layers map onto
Conv, Gemm, Relu, MaxPool, BatchNormalization, Add, GlobalAveragePool and Flatten. The graph is built by
hand with ``onnx.helper`` from the layers' tensors (read as NumPy), in float32, the network in eval mode.

The graph takes ``image`` (float32, N x C x H x W, pixel intensities in [0, 1]) and returns ``logits``,
then, unless ``layer_outputs`` is off, each weight layer's output (before its ReLU) under the layer's
name. ``bmhw.backends.onnx.run`` runs it; ``max_error`` measures it against PyTorch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from bmhw.backends.onnx.graph import Graph, save_model
from bmhw.errors import BmhwError
from bmhw.nn.groups import refuse_grouped
from bmhw.models import CNN, LeNet, ResNet22
from bmhw.nn.layers import BMConv2d, BMLinear, _BMNeuron
from bmhw.nn.logweights import LOG_ZERO

INPUT = "image"
LOGITS = "logits"
KIND = "float"
# The largest |onnxruntime - PyTorch| of an output, relative to its largest |PyTorch| value, that counts as
# agreement (both float32; measured in docs/onnx.md: below 2e-5 on every network tried).
TOLERANCE = 1e-4
TINY = math.exp(LOG_ZERO)  # the floor of ln's argument, as in bmhw.nn.layers
ALPHA_FLOOR = 1e-3  # the clamp of a temperature in the forward pass (bmhw.nn.layers)


def _array(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _FloatGraph(Graph):
    """The layers of a float network, each appended to the graph as it is met; values are (name, shape per
    image) pairs."""

    def __init__(self, reserved):
        super().__init__("bmhw_float_network", reserved)
        self.exposed: list = []  # (layer name, value, shape)
        self.elements = 1  # the largest sums tensor per image (see _count)

    # --- BM layers -----------------------------------------------------------------------------------------

    def reduce(self, t: str, layer: _BMNeuron, hint: str) -> str:
        """R over the last axis of t (..., O, K): max, or the layer's smooth approximation."""
        axis = self.i64([-1], "axis_m1")
        if layer.reduce == "max":
            return self.op("ReduceMax", [t, axis], f"{hint}/max", keepdims=0)
        alpha = np.float32(max(float(layer.alpha.detach()), ALPHA_FLOOR))
        if layer.reduce == "lse":
            return self.op("Div", [self._lse(t, alpha, hint), self.f32(alpha, f"{hint}_alpha")], f"{hint}/lse")
        if layer.reduce == "lmorph":
            upper = self._lse(t, np.float32(alpha + np.float32(1)), f"{hint}/lse_alpha_plus_1")
            return self.op("Sub", [upper, self._lse(t, alpha, f"{hint}/lse_alpha")], f"{hint}/lmorph")
        if layer.reduce == "smorph":
            z = self.op("Mul", [t, self.f32(alpha, f"{hint}_alpha")], f"{hint}/alpha_t")
            top = self.op("ReduceMax", [z, axis], f"{hint}/max", keepdims=1)
            weights = self.op("Exp", [self.op("Sub", [z, top], f"{hint}/shifted")], f"{hint}/weights")
            num = self._sum(self.op("Mul", [weights, t], f"{hint}/weighted"), f"{hint}/num")
            return self.op("Div", [num, self._sum(weights, f"{hint}/den")], f"{hint}/smorph")
        raise BmhwError(f"reduction {layer.reduce!r} has no ONNX form")

    def _sum(self, x: str, hint: str) -> str:
        return self.op("ReduceSum", [x, self.i64([-1], "axis_m1")], f"{hint}/sum", keepdims=0)

    def _lse(self, t: str, alpha: np.float32, hint: str) -> str:
        """ln sum_k exp(alpha t_k), stabilised: m + ln sum exp(alpha t - m) with m the largest alpha t."""
        z = t if alpha == 1 else self.op("Mul", [t, self.f32(alpha, f"{hint}_alpha")], f"{hint}/alpha_t")
        top = self.op("ReduceMax", [z, self.i64([-1], "axis_m1")], f"{hint}/max", keepdims=1)
        total = self._sum(self.op("Exp", [self.op("Sub", [z, top], f"{hint}/shifted")], f"{hint}/exp"), hint)
        squeezed = self.op("Squeeze", [top, self.i64([-1], "axis_m1")], f"{hint}/max_squeezed")
        return self.op("Add", [squeezed, self.op("Log", [total], f"{hint}/log")], f"{hint}/lse")

    def max_term(self, u: str, v: np.ndarray, layer: _BMNeuron, hint: str) -> str:
        """exp R_k(u_k + v[o, k]) for u (..., K) and v (O, K): (..., O)."""
        row = self.op("Unsqueeze", [u, self.i64([-2], "axis_m2")], f"{hint}/u_row")
        t = self.op("Add", [row, self.f32(v, f"{hint}_v")], f"{hint}/t")
        return self.op("Exp", [self.reduce(t, layer, hint)], f"{hint}/max_term")

    def log_input(self, x: str, offset: float, hint: str, negate: bool = False) -> str:
        """ln(max(+-x + offset, e^-60)), as the BM layers take the logarithm of their inputs."""
        if negate:
            x = self.op("Neg", [x], f"{hint}/neg")
        if offset:
            x = self.op("Add", [x, self.f32(offset, f"{hint}_delta_x")], f"{hint}/shifted_input")
        return self.op("Log", [self.op("Max", [x, self.f32(TINY, "tiny")], f"{hint}/floored")], f"{hint}/ln")

    def _count(self, layer: _BMNeuron, sums: int) -> None:
        """Note the size of a layer's sums tensor per image (a smooth reduction keeps about four such tensors
        alive at once): onnxruntime's batches are sized by the largest (bmhw.backends.onnx.run)."""
        self.elements = max(self.elements, sums * (1 if layer.reduce == "max" else 4))

    def bm_neuron(self, layer: _BMNeuron, x: str, positions: int, hint: str) -> str:
        """The BM neuron on patches x (..., K): (..., O); docs/neurons.md."""
        o = layer.out_count
        bias = _array(layer.bias) if layer.bias is not None else np.zeros(o)
        if layer.branches == 1.5:
            v = _array(layer.v).reshape(o, -1)
            dx, dw = float(layer.delta_x), float(layer.delta_w)
            self._count(layer, positions * v.size)
            term = self.max_term(self.log_input(x, dx, hint), v, layer, hint)
            sums = self.op("ReduceSum", [x, self.i64([-1], "axis_m1")], f"{hint}/input_sum", keepdims=1)
            correction = self.op("Mul", [sums, self.f32(dw, f"{hint}_delta_w")], f"{hint}/correction")
            offset = -dx * np.exp(v).sum(axis=1)  # -dx sum_k e^v, per output
            if layer.signed:
                sign = _array(layer.sign)
                y = self.op("Sub", [self.op("Add", [term, self.f32(offset, f"{hint}_offset")], f"{hint}/offset"),
                                    correction], f"{hint}/unsigned")
                y = self.op("Mul", [y, self.f32(sign, f"{hint}_sign")], f"{hint}/signed")
                return self.op("Add", [y, self.f32(bias, f"{hint}_bias")], f"{hint}/y")
            with_bias = self.op("Add", [term, self.f32(offset + bias, f"{hint}_offset_bias")], f"{hint}/offset")
            return self.op("Sub", [with_bias, correction], f"{hint}/y")
        v = np.concatenate([_array(layer.v_pos).reshape(o, -1), _array(layer.v_neg).reshape(o, -1)])
        self._count(layer, positions * v.size)
        pos = self.max_term(self.log_input(x, 0.0, f"{hint}/pos"), v, layer, f"{hint}/pos")
        neg = self.max_term(self.log_input(x, 0.0, f"{hint}/neg", negate=True), v, layer, f"{hint}/neg")

        def branch_difference(both: str, side: str) -> str:  # e^R(.. + v+) - e^R(.. + v-)
            first, second = (self.op("Slice", [both, self.i64([a], f"c{a}"), self.i64([b], f"c{b}"),
                                               self.i64([-1], "axis_m1")], f"{hint}/{side}_{part}")
                             for a, b, part in ((0, o, "plus"), (o, 2 * o, "minus")))
            return self.op("Sub", [first, second], f"{hint}/{side}")

        y = self.op("Sub", [branch_difference(pos, "pos"), branch_difference(neg, "neg")], f"{hint}/branches")
        return self.op("Add", [y, self.f32(bias, f"{hint}_bias")], f"{hint}/y")

    # --- layers ----------------------------------------------------------------------------------------------

    def weight_layer(self, module: nn.Module, name: str, value):
        x, shape = value
        if isinstance(module, BMConv2d):
            patches, (ho, wo) = self.patches(x, shape, module.kernel_size, module.stride, module.padding, name)
            rows = self.bm_neuron(module, patches, ho * wo, name)
            nhwc = self.op("Reshape", [rows, self.i64([0, ho, wo, module.out_count], f"{name}_shape_nhwc")],
                           f"{name}/nhwc")
            out = (self.op("Transpose", [nhwc], f"{name}/out", perm=[0, 3, 1, 2]), (module.out_count, ho, wo))
        elif isinstance(module, BMLinear):
            self._check_features(name, shape, module.in_features)
            out = (self.bm_neuron(module, x, 1, name), (module.out_features,))
        elif isinstance(module, nn.Conv2d):
            out = self.conv(module, name, value)
        elif isinstance(module, nn.Linear):
            self._check_features(name, shape, module.in_features)
            inputs = [x, self.f32(_array(module.weight), f"{name}_weight")]
            if module.bias is not None:
                inputs.append(self.f32(_array(module.bias), f"{name}_bias"))
            out = (self.op("Gemm", inputs, f"{name}/out", transB=1), (module.out_features,))
        else:
            raise BmhwError(f"layer {name} ({type(module).__name__}) is not a weight layer")
        self.exposed.append((name, *out))
        return out

    @staticmethod
    def _check_features(name: str, shape: tuple, features: int) -> None:
        if len(shape) != 1 or shape[0] != features:
            raise BmhwError(f"layer {name} takes {features} features, but its input has shape {shape}")

    def conv(self, module: nn.Conv2d, name: str, value):
        x, (c, h, w) = value
        if module.groups != 1 or tuple(module.dilation) != (1, 1) or module.padding_mode != "zeros" \
                or isinstance(module.padding, str) and module.padding != "valid":
            raise BmhwError(f"layer {name}: only plain convolutions (groups 1, dilation 1, numeric zero padding) "
                            "are exported")
        (kh, kw), (sh, sw) = _pair(module.kernel_size), _pair(module.stride)
        ph, pw = (0, 0) if module.padding == "valid" else _pair(module.padding)
        inputs = [x, self.f32(_array(module.weight), f"{name}_weight")]
        if module.bias is not None:
            inputs.append(self.f32(_array(module.bias), f"{name}_bias"))
        out = self.op("Conv", inputs, f"{name}/out", kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
        return out, (module.out_channels, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    def relu(self, value, hint: str):
        return self.op("Relu", [value[0]], f"{hint}/relu"), value[1]

    def maxpool(self, kernel, stride, padding, value, hint: str):
        x, (c, h, w) = value
        (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride or kernel), _pair(padding)
        out = self.op("MaxPool", [x], f"{hint}/maxpool", kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
        return out, (c, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)

    def flatten(self, value, hint: str):
        return self.op("Flatten", [value[0]], f"{hint}/flatten", axis=1), (int(np.prod(value[1])),)

    def batchnorm(self, module: nn.BatchNorm2d, name: str, value):
        if module.running_mean is None or not module.track_running_stats:
            raise BmhwError(f"layer {name}: batch norm without running statistics has no inference form")
        c = module.num_features
        weight = _array(module.weight) if module.weight is not None else np.ones(c)
        bias = _array(module.bias) if module.bias is not None else np.zeros(c)
        inputs = [value[0], self.f32(weight, f"{name}_scale"), self.f32(bias, f"{name}_bias"),
                  self.f32(_array(module.running_mean), f"{name}_mean"),
                  self.f32(_array(module.running_var), f"{name}_var")]
        return self.op("BatchNormalization", inputs, f"{name}/out", epsilon=float(module.eps)), value[1]

    def module(self, module: nn.Module, name: str, value):
        """One module of a Sequential (or a block's shortcut)."""
        if isinstance(module, (_BMNeuron, nn.Conv2d, nn.Linear)):
            return self.weight_layer(module, name, value)
        if isinstance(module, nn.ReLU):
            return self.relu(value, name)
        if isinstance(module, nn.MaxPool2d):
            if module.ceil_mode or _pair(module.dilation) != (1, 1):
                raise BmhwError(f"layer {name}: max pooling with ceil_mode or dilation is not exported")
            return self.maxpool(module.kernel_size, module.stride, module.padding, value, name)
        if isinstance(module, nn.Flatten):
            if module.start_dim != 1 or module.end_dim != -1:
                raise BmhwError(f"layer {name}: only Flatten(start_dim=1) is exported")
            return self.flatten(value, name)
        if isinstance(module, nn.BatchNorm2d):
            return self.batchnorm(module, name, value)
        if isinstance(module, nn.Identity):
            return value
        if isinstance(module, nn.Sequential):
            for child_name, child in module.named_children():
                value = self.module(child, f"{name}.{child_name}" if name else child_name, value)
            return value
        raise BmhwError(f"layer {name} ({type(module).__name__}) has no ONNX export: bmhw exports BM and classical "
                        "conv / linear layers, ReLU, MaxPool2d, Flatten, BatchNorm2d and the reference models")

    # --- the reference models ------------------------------------------------------------------------------

    def lenet(self, model: LeNet, value):
        """LeNet.stage, layer by layer: conv -> ReLU -> max-pool 2; flatten before fc1; ReLU after fc1, fc2."""
        for name in model.WEIGHT_LAYERS:
            if name == "fc1":
                value = self.flatten(value, "flatten")
            value = self.weight_layer(model.get_submodule(name), name, value)
            if name in ("conv1", "conv2"):
                value = self.maxpool(2, 2, 0, self.relu(value, name), name)
            elif name != "fc3":
                value = self.relu(value, name)
        return value

    def cnn(self, model: CNN, value):
        """CNN.forward: its layers in order, each weight layer under its own name."""
        for name, module in zip(model.layer_names(), model.sequence()):
            value = self.module(module, name, value)
        return value

    def resnet(self, model: ResNet22, value):
        """ResNet22.forward: stem, BN, ReLU; each block relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut x);
        global average pooling, flatten, the linear layer."""
        stem = self.weight_layer(model.stem, "stem", value)
        value = self.relu(self.batchnorm(model.stem_bn, "stem_bn", stem), "stem")
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage):
                prefix = f"stages.{s}.{b}"
                h = self.weight_layer(block.conv1, f"{prefix}.conv1", value)
                h = self.relu(self.batchnorm(block.bn1, f"{prefix}.bn1", h), f"{prefix}.conv1")
                h = self.batchnorm(block.bn2, f"{prefix}.bn2", self.weight_layer(block.conv2, f"{prefix}.conv2", h))
                shortcut = self.module(block.shortcut, f"{prefix}.shortcut", value)
                value = self.relu((self.op("Add", [h[0], shortcut[0]], f"{prefix}/add"), h[1]), prefix)
        pooled = self.op("GlobalAveragePool", [value[0]], "pool/global_average")
        value = self.flatten((pooled, (value[1][0], 1, 1)), "pool")
        return self.weight_layer(model.fc, "fc", value)


def _input_shape(model: nn.Module, input_shape) -> tuple:
    if input_shape is not None:
        return tuple(int(v) for v in input_shape)
    if isinstance(model, LeNet):
        args = model.arch_args
        return (args["in_channels"], args["input_size"], args["input_size"])
    if isinstance(model, ResNet22):
        return (model.arch_args["in_channels"], 32, 32)
    if isinstance(model, CNN):
        args = model.arch_args
        return (args["in_channels"], args["input_size"], args["input_size"])
    raise BmhwError(f"give the input shape (C, H, W) of the {type(model).__name__} to export")


@torch.no_grad()
def build(model: nn.Module, input_shape=None, layer_outputs: bool = True) -> onnx.ModelProto:
    """The ONNX model of ``model`` (a LeNet, a ResNet22 or an nn.Sequential of supported layers) in eval mode,
    checked with ``onnx.checker``; ``input_shape`` (C, H, W) is needed for a Sequential only."""
    refuse_grouped(model, "the float ONNX export")
    shape = _input_shape(model, input_shape)
    names = [n for n, m in model.named_modules() if isinstance(m, (_BMNeuron, nn.Conv2d, nn.Linear))]
    g = _FloatGraph(reserved=(INPUT, LOGITS, *names))
    value = (g.add_input(INPUT, np.float32, ["N", *shape]), shape)
    if isinstance(model, LeNet):
        value = g.lenet(model, value)
    elif isinstance(model, ResNet22):
        value = g.resnet(model, value)
    elif isinstance(model, CNN):
        value = g.cnn(model, value)
    elif isinstance(model, nn.Sequential):
        value = g.module(model, "", value)
    else:
        raise BmhwError(f"cannot export a {type(model).__name__}: bmhw exports its LeNet, its ResNet-22 and "
                        "nn.Sequential networks")
    g.add_output(value[0], LOGITS, np.float32, ["N", *value[1]])
    if layer_outputs:
        for name, out, out_shape in g.exposed:
            g.add_output(out, name, np.float32, ["N", *out_shape])
    doc = ("bmhw float network (docs/neurons.md, docs/onnx.md): input 'image' holds pixel intensities in [0, 1]; "
           "output 'logits'" + ("; then each weight layer's output by its name" if layer_outputs else ""))
    return g.model(doc, {"bmhw.kind": KIND, "bmhw.input": INPUT, "bmhw.elements_per_image": g.elements,
                         "bmhw.layers": ",".join(n for n, _, _ in g.exposed) if layer_outputs else ""})


def export(model: nn.Module, path, input_shape=None, layer_outputs: bool = True) -> Path:
    """Write the ONNX model of ``model`` to ``path`` atomically; the same model gives byte-identical files."""
    return save_model(build(model, input_shape, layer_outputs), path)


@torch.no_grad()
def torch_outputs(model: nn.Module, images: torch.Tensor, names) -> dict:
    """PyTorch's logits and the outputs of the weight layers in ``names`` (by forward hooks), as NumPy."""
    captured = {}
    hooks = [model.get_submodule(n).register_forward_hook(
        lambda _m, _i, out, n=n: captured.__setitem__(n, out.detach().numpy())) for n in names]
    try:
        logits = model.eval()(images).detach().numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return {LOGITS: logits, **captured}


def max_error(model: nn.Module, onnx_model: onnx.ModelProto, images: np.ndarray) -> dict:
    """For uint8 ``images``: per output, the largest |onnxruntime - PyTorch| relative to the largest
    |PyTorch| value of that output (the measure docs/onnx.md states the tolerance in)."""
    from bmhw.backends.onnx.run import session_from_model
    from bmhw.train.loop import to_tensor

    session = session_from_model(onnx_model)
    got = session.run(images)
    want = torch_outputs(model, to_tensor(images), [n for n in session.output_names if n != LOGITS])
    return {name: float(np.abs(got[name] - want[name]).max() / max(np.abs(want[name]).max(), 1e-30))
            for name in session.output_names}
