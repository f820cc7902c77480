"""AdderNet layers (Chen et al., CVPR 2020): ``AdderLinear`` and ``AdderConv2d``.

Each output is the negative L1 distance between an input patch ``x`` (fan-in K) and the output's weights
``w`` (its "template"): no multiplication, only subtract, absolute value and accumulate::

    d_o = -sum_k |x_k - w_ok|

The distance is all-negative and grows with K, so, as in the papers, a batch normalisation follows it
inside the layer (``bn=True``, the default): ``y_o = BN(d_o)``. At inference that is a per-channel
scale and offset, ``y_o = a_o d_o + c_o`` (:meth:`folded_affine`), which the integer datapath can apply
as its requantisation. With ``bn=False`` the layer is ``d_o (+ b_o)``.

Back-propagation uses the papers' rules, not the true derivatives (docs/training.md, "AdderNet and PKKD"):

* weights: the full-precision gradient ``dd_o/dw_ok = x_k - w_ok`` instead of ``sign(x_k - w_ok)``;
* inputs: ``dd_o/dx_k = HardTanh(w_ok - x_k)`` (clipped to [-1, 1]) instead of ``sign(w_ok - x_k)``;
* adaptive learning rate: the weight gradient of a layer (all K x O elements together, one backward pass
  of one forward call) is rescaled to ``eta * sqrt(numel) / ||grad||_2`` times itself, i.e. to the norm
  ``eta * sqrt(numel)``; ``eta=None`` leaves it as it is.

Because these are deliberately not the true gradients, ``torch.autograd.gradcheck`` does not apply; the
tests compare them with hand-computed values instead.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from bmhw.nn.patches import ConvPatches, _pair

# The adaptive learning-rate factor eta of the AdderNet paper (its CIFAR value).
DEFAULT_ETA = 0.1
# Rows x outputs x fan-in elements per chunk of the input gradient (16 MiB in float32).
CHUNK_ELEMENTS = 1 << 22


def adaptive_scale(grad: torch.Tensor, eta: float | None) -> torch.Tensor:
    """The adaptive learning rate of AdderNet: ``grad * eta * sqrt(k) / ||grad||_2`` with ``k = grad.numel()``
    (a zero gradient stays zero); ``eta=None`` returns ``grad`` unchanged."""
    if eta is None:
        return grad
    norm = torch.linalg.vector_norm(grad)
    if not norm > 0:
        return grad
    return grad * (eta * math.sqrt(grad.numel()) / norm)


def _input_grad(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_o g[n, o] HardTanh(w[o, k] - x[n, k])`` (N x K), in row chunks of at most CHUNK_ELEMENTS terms.

    Where every difference of a chunk lies in [-1, 1] the clip does nothing and the sum is the product
    ``g w - x * sum_o g`` (exact, no N x O x K tensor)."""
    n, k = x.shape
    o = w.shape[0]
    out = torch.empty_like(x)
    if n == 0 or o == 0:
        return out.zero_()
    w_min, w_max = float(w.min()), float(w.max())
    rows = min(n, max(1, CHUNK_ELEMENTS // max(1, o * k)))
    buffer = None  # one rows x O x K buffer for all chunks
    for start in range(0, n, rows):
        xs, gs = x[start:start + rows], g[start:start + rows]
        if w_max - float(xs.min()) <= 1 and float(xs.max()) - w_min <= 1:
            out[start:start + rows] = gs @ w - xs * gs.sum(1, keepdim=True)
            continue
        if buffer is None:
            buffer = x.new_empty(rows, o, k)
        diff = buffer[:xs.shape[0]]
        torch.sub(w.unsqueeze(0), xs.unsqueeze(1), out=diff).clamp_(-1.0, 1.0)
        torch.bmm(gs.unsqueeze(1), diff, out=out[start:start + rows].unsqueeze(1))
    return out


class _NegL1(torch.autograd.Function):
    """``-cdist_1(x, w)`` (N x O) for rows ``x`` (N x K) and weights ``w`` (O x K), with AdderNet's gradients."""

    @staticmethod
    def forward(ctx, x, w, eta):
        ctx.save_for_backward(x, w)
        ctx.eta = eta
        if x.shape[0] == 0 or w.shape[0] == 0:
            return x.new_zeros(x.shape[0], w.shape[0])
        return torch.cdist(x, w, p=1).neg_()

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = g.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[1]:
            # sum_n g[n, o] (x[n, k] - w[o, k]): full precision, one matrix product.
            grad_w = adaptive_scale(g.t() @ x - w * g.sum(0).unsqueeze(1), ctx.eta)
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(g, x, w)
        return grad_x, grad_w, None


def neg_l1(x: torch.Tensor, w: torch.Tensor, eta: float | None = None) -> torch.Tensor:
    """``-sum_k |x[n, k] - w[o, k]|`` for all rows n and outputs o, with AdderNet's gradient rules."""
    return _NegL1.apply(x, w, eta)


class _AdderNeuron(nn.Module):
    """Weights, the optional bias or batch normalisation, and the spec shared by both adder layers.

    ``eta`` (the adaptive learning-rate factor) is a training setting, not part of the saved model:
    an instance attribute, DEFAULT_ETA unless given (``set_eta`` changes it in a whole model)."""

    def _init_adder(self, weight_shape, bias: bool, bn: bool, eta, bn_class) -> None:
        if bias and bn:
            raise ValueError("an adder layer with bn=True takes no bias: the batch normalisation's offset is the "
                             "bias (and would cancel one before it)")
        # Standard normal weights, as the AdderNet reference code: a weight is a template in the input's space and
        # must be on the inputs' scale (pixels in [0, 1], batch-normalised activations). The classical default
        # (uniform within 1/sqrt(fan-in)) puts every template near 0 and trains far slower (docs/training.md).
        self.weight = nn.Parameter(torch.randn(weight_shape))
        fan_in = math.prod(weight_shape[1:])
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(weight_shape[0]).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)
        self.bn = bn_class(weight_shape[0]) if bn else None
        self.eta = eta

    @property
    def out_count(self) -> int:
        return self.weight.shape[0]

    def distance(self, patches: torch.Tensor) -> torch.Tensor:
        """``-sum_k |x_k - w_ok|`` for input patches (N x K): N x O."""
        return neg_l1(patches, self.weight.reshape(self.out_count, -1), self.eta)

    def _finish(self, d: torch.Tensor) -> torch.Tensor:
        """Bias, then batch normalisation (over dimension 1, the outputs)."""
        if self.bias is not None:
            d = d + self.bias.reshape((1, -1) + (1,) * (d.dim() - 2))
        return d if self.bn is None else self.bn(d)

    @torch.no_grad()
    def folded_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-output ``(a, c)`` with ``y = a * d + c`` at inference (batch norm with its running statistics
        folded; ``a = 1`` and ``c = bias`` or 0 without it)."""
        o = self.out_count
        c = self.bias.detach().clone() if self.bias is not None else self.weight.new_zeros(o)
        if self.bn is None:
            return self.weight.new_ones(o), c
        bn = self.bn
        a = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            a = a * bn.weight
        c = (c - bn.running_mean) * a
        if bn.bias is not None:
            c = c + bn.bias
        return a, c

    def neuron_spec(self) -> dict:
        """What kind of neuron this is, for checkpoints (see bmhw.models.build)."""
        return {"neuron": "adder"} if self.bn is not None else {"neuron": "adder", "bn": False}

    def _adder_repr(self) -> str:
        return f"bn={self.bn is not None}, bias={self.bias is not None}, eta={self.eta}"


class AdderLinear(_AdderNeuron):
    """Fully connected adder layer: ``y = BN(-sum_k |x_k - w_ok|)``; replaces ``nn.Linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, bn: bool = True,
                 eta: float | None = DEFAULT_ETA):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self._init_adder((out_features, in_features), bias, bn, eta, nn.BatchNorm1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self._finish(self.distance(x.reshape(-1, self.in_features)))
        return d.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self._adder_repr()}"


class AdderConv2d(ConvPatches, _AdderNeuron):
    """2-D adder convolution (zero padding, no groups or dilation): ``y = BN(-sum |patch - w_o|)``.

    Patches are unfolded (B*L x C*kh*kw) and go through the same distance as ``AdderLinear``; a zero of
    the padding is an input of 0 (it contributes ``|w|``), as a hardware adder PE fed with code 0 would."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, bias: bool = False,
                 bn: bool = True, eta: float | None = DEFAULT_ETA):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self._init_adder((out_channels, in_channels, *self.kernel_size), bias, bn, eta, nn.BatchNorm2d)


    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        ho, wo = self.output_size(x.shape[2], x.shape[3])
        d = self.distance(self.patches(x)).reshape(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)
        return self._finish(d)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, {self._adder_repr()}")


def adder_layers(model: nn.Module) -> dict[str, _AdderNeuron]:
    """Every adder layer of a model by dotted name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _AdderNeuron)}


def set_eta(model: nn.Module, eta: float | None) -> None:
    """Set the adaptive learning-rate factor of every adder layer in ``model`` (None: plain gradients)."""
    if eta is not None and not eta > 0:
        raise ValueError(f"eta must be positive (or None to turn the adaptive learning rate off), got {eta}")
    for layer in adder_layers(model).values():
        layer.eta = eta


def _adder_from(layer: nn.Module, name: str, eta) -> nn.Module:
    from bmhw.nn.convert import _check_conv

    weight = layer.weight.detach()
    if isinstance(layer, nn.Linear):
        new = AdderLinear(layer.in_features, layer.out_features, eta=eta)
    else:
        _check_conv(layer, name)
        padding = 0 if layer.padding == "valid" else layer.padding
        new = AdderConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, padding, eta=eta)
    new = new.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        new.weight.copy_(weight)
    return new


def to_adder(layer_or_model: nn.Module, layers=None, eta: float | None = DEFAULT_ETA) -> nn.Module:
    """Replace ``nn.Linear`` / ``nn.Conv2d`` (a layer, or every one inside a model; ``layers``: only these dotted
    names) by adder layers whose templates start at the classical weights; the bias is dropped for the batch
    normalisation. Not function-preserving (a distance is not a dot product): a starting point for training.
    Returns new modules and leaves the argument untouched."""
    from bmhw.nn.convert import _replace

    def convert(module, name):
        if isinstance(module, (nn.Linear, nn.Conv2d)) and (layers is None or name in layers):
            return _adder_from(module, name, eta)
        return module

    top = convert(layer_or_model, "")
    if top is not layer_or_model:
        return top
    return _replace(copy.deepcopy(layer_or_model), convert)
