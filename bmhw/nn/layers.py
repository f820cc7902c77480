"""Bipolar morphological (BM) layers: ``BMLinear`` and ``BMConv2d``.

Both compute, for each output ``o`` and each input patch ``x`` (fan-in K), one of two neurons
(docs/neurons.md has the algebra and the choices of offsets):

4 branches (Limonova et al. 2021), with ``x+ = max(x, 0)``, ``x- = max(-x, 0)``::

    y = exp R(ln x+ + v+) - exp R(ln x+ + v-) - exp R(ln x- + v+) + exp R(ln x- + v-) + b

1.5 branches (Zingerenko & Limonova 2023), with per-layer constants ``dx`` and ``dw`` (a power of two)::

    y = exp R(ln(x + dx) + v) - dw * sum_k x_k - dx * sum_k exp(v_k) + b

which equals ``sum_k w_k x_k + b`` with ``w = exp(v) - dw`` when ``R`` is the exact sum of products
(LSE at alpha = 1). ``R`` is the hard max or a continuous approximation (``bmhw.nn.maxplus``).

Several maxima (``maxima=G``, ``bmhw.nn.groups``): the fan-in is split into G groups, each reduced on its
own and exponentiated, and the G terms are added (``exp R`` above becomes ``sum_g exp R_g``); with
``split_sign`` every group is split by the weights' signs, ``w = s exp(v)`` with a sign per weight and no
offset (dw = 0)::

    y = sum_g [exp R_(k in g, s_k > 0)(ln(x_k + dx) + v_k) - exp R_(k in g, s_k < 0)(...)] - dx sum_k s_k exp(v_k) + b
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from bmhw.nn.groups import Maxima, group_bounds
from bmhw.nn.logweights import LOG_ZERO, delta_w_for, log_weights_4, log_weights_15, log_weights_split
from bmhw.nn.patches import ConvPatches, _pair
from bmhw.nn.maxplus import REDUCTIONS, group_exp_sum, maxplus, maxplus_conv

BRANCHES = (4, 1.5)


# The log-weight that keeps a weight out of a (group, sign) maximum of a sign-split layer: exp of it is exactly 0
# in float32 and float64, and, unlike -inf, it leaves the smooth reductions of an empty group finite.
MASKED = -1.0e4

# Default input offset of the 1.5-branch neuron; inputs are expected to be >= 0 (post-ReLU or pixels).
DEFAULT_DELTA_X = 2.0**-8


class _ShiftedLog(torch.autograd.Function):
    """ln(max(sign * x + dx, exp(LOG_ZERO))) - shift, saving only x (which the layer keeps anyway) for
    backward: the input logarithms without more input-sized tensors held until backward."""

    @staticmethod
    def forward(ctx, x, dx: float, shift: float, sign: float = 1.0):
        ctx.save_for_backward(x)
        ctx.dx, ctx.sign = dx, sign
        return (sign * x + dx).clamp_min_(math.exp(LOG_ZERO)).log_().sub_(shift)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        z = ctx.sign * x + ctx.dx
        return torch.where(z >= math.exp(LOG_ZERO), grad * ctx.sign / z, 0), None, None, None


class _BMNeuron(nn.Module):
    """Parameters and the neuron formula shared by BMLinear and BMConv2d.

    Subclasses hand ``neuron`` a 2-D tensor of input patches (N x K) and reshape its N x O result.
    Log-weights keep the classical weight's shape (O x in x kh x kw for convolutions) so that
    conversion in either direction is a plain element-wise map.
    """

    def _init_neuron(self, weight_shape, branches, reduce, alpha, learn_alpha, bias, delta_x, delta_w, maxima=1,
                     split_sign=False):
        if branches not in BRANCHES:
            raise ValueError(f"branches must be 4 or 1.5, got {branches!r}")
        fan_in = math.prod(weight_shape[1:])
        spec = Maxima.parse(maxima)
        split_sign = bool(split_sign or spec.split_sign)
        self.maxima = spec.resolve(fan_in)
        self.split_sign = split_sign
        if split_sign and branches != 1.5:
            raise ValueError("split_sign applies to 1.5-branch layers (4 branches split by sign already)")
        if split_sign and delta_w not in (None, 0, 0.0):
            raise ValueError("a sign-split layer has no weight offset: delta_w must be 0 (or left out)")
        self.bounds = group_bounds(fan_in, self.maxima)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        if reduce == "max" and (alpha is not None or learn_alpha):
            raise ValueError("reduce='max' takes no alpha; choose 'lse', 'smorph' or 'lmorph' for a temperature")
        self.branches = 1.5 if branches == 1.5 else 4
        self.reduce = reduce
        self.learn_alpha = bool(learn_alpha)

        # Start from the classical default initialisation and convert it, so that a BM layer trained
        # from scratch begins as the same function family as its classical twin.
        ref = torch.empty(weight_shape)
        nn.init.kaiming_uniform_(ref, a=math.sqrt(5))
        if self.split_sign:
            # w = s exp(v): a sign per weight, no offset.
            self.register_buffer("delta_w", torch.tensor(0.0))
            self.register_buffer("delta_x", torch.tensor(float(delta_x)))
            self.register_buffer("sign", torch.where(ref < 0, -1.0, 1.0))
            self.v = nn.Parameter(log_weights_split(ref))
        elif self.branches == 1.5:
            dw = float(delta_w) if delta_w is not None else delta_w_for(ref)
            if delta_w is not None:
                # A given offset may be below the initial weights' range: shrink them to fit under it.
                ref *= min(1.0, dw / (float(ref.abs().max()) * (1 + 2.0**-6)))
            self.register_buffer("delta_w", torch.tensor(dw))
            self.register_buffer("delta_x", torch.tensor(float(delta_x)))
            # Each output's sign s: y = s (exp R - dw sum x - dx sum exp v) + b. +1 is the paper's neuron; -1 is
            # its mirror (weights dw - e^v): the max then takes the strongest evidence *against* the output.
            self.register_buffer("sign", torch.ones(weight_shape[0]))
            self.v = nn.Parameter(log_weights_15(ref, dw))
        else:
            v_pos, v_neg = log_weights_4(ref)
            self.v_pos = nn.Parameter(v_pos)
            self.v_neg = nn.Parameter(v_neg)
        if bias:
            bound = 1 / math.sqrt(fan_in)
            self.bias = nn.Parameter(torch.empty(weight_shape[0]).uniform_(-bound, bound))
        else:
            self.register_parameter("bias", None)

        if reduce == "max":
            self.alpha = None
        else:
            value = torch.tensor(1.0 if alpha is None else float(alpha))
            if not value > 0:
                raise ValueError(f"alpha must be positive, got {alpha}")
            if self.learn_alpha:
                self.alpha = nn.Parameter(value)
            else:
                self.register_buffer("alpha", value)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the per-output sign existed are all +1.
        if self.branches == 1.5 and prefix + "v" in state_dict and prefix + "sign" not in state_dict:
            state_dict[prefix + "sign"] = torch.ones(state_dict[prefix + "v"].shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def signed(self) -> bool:
        """Whether any output of this 1.5-branch layer has the mirrored sign -1."""
        return self.branches == 1.5 and not self.split_sign and bool((self.sign < 0).any())

    @property
    def out_count(self) -> int:
        return (self.v if self.branches == 1.5 else self.v_pos).shape[0]

    # Training aid for the exact max (not saved, not part of the model): when set, the forward pass stays the
    # hard max but the backward pass takes LSE's gradient at this temperature, a softmax over the terms
    # instead of the one arg-max, so that every weight near the top learns (docs/training.md, "Surrogate
    # gradient").
    surrogate_alpha: float | None = None

    def _alpha(self):
        # A learned temperature must stay positive; the clamp keeps a wild step from flipping it.
        return None if self.alpha is None else self.alpha.clamp_min(1e-3)

    def _surrogate_on(self) -> bool:
        """The surrogate gradient applies: an exact-max layer, a temperature set, and a gradient to compute."""
        return self.reduce == "max" and self.surrogate_alpha is not None and torch.is_grad_enabled()

    def _fast_groups(self) -> bool:
        """Several exact maxima and no surrogate gradient: the fused exp-and-sum path (bmhw.nn.maxplus) serves."""
        return bool(self.bounds) and self.reduce == "max" and not self._surrogate_on()

    def _reduced(self, product):
        """``product(reduce, alpha)`` (a max-plus product of this layer's inputs and log-weights) with this
        layer's reduction, or with the surrogate gradient where one is set."""
        if not self._surrogate_on():
            return product(self.reduce, self._alpha())
        with torch.no_grad():
            hard = product("max", None)
        smooth = product("lse", torch.tensor(float(self.surrogate_alpha)))
        return hard + (smooth - smooth.detach())  # + exactly 0: the forward value is the max, bit for bit

    def _product_weights(self, v: torch.Tensor) -> torch.Tensor:
        """The log-weights (O x K) as the rows of the max-plus product: as they are, or for a sign-split layer the
        positive weights' rows then the negative weights' (2O x K), each with the other sign's weights masked."""
        if not self.split_sign:
            return v
        positive = self.sign.reshape(v.shape) > 0
        masked = torch.full_like(v, MASKED)
        return torch.cat([torch.where(positive, v, masked), torch.where(positive, masked, v)])

    def _exp_terms(self, m: torch.Tensor) -> torch.Tensor:
        """exp of the reduced product, summed over the groups (N x G x O -> N x O; N x O stays as it is, bit for
        bit, for one group), and for a sign-split layer the positive rows' terms minus the negative rows'."""
        terms = torch.exp(m) if not self.bounds else torch.exp(m).sum(1)
        if self.split_sign:
            o = self.out_count
            return terms[:, :o] - terms[:, o:]
        return terms

    @property
    def one_per_input(self) -> bool:
        """Every group holds one input (G = K, 1.5 branches): each maximum is its one product, whatever the
        reduction, so the groups' terms are a plain sum of products, computed as one matrix product."""
        return self.branches == 1.5 and bool(self.bounds) and self.maxima == self.bounds[-1]

    def _lns_weights(self) -> torch.Tensor:
        """O x K: e^v, times each weight's sign for a sign-split layer (the weights of the exact product)."""
        v = self.v.reshape(self.out_count, -1)
        return torch.exp(v) * self.sign.reshape(v.shape) if self.split_sign else torch.exp(v)

    def max_term(self, x: torch.Tensor) -> torch.Tensor:
        """1.5 branches: exp R_k(ln(x_k + dx) + v_k), the term that stands for sum (x+dx)(w+dw); N x O. With groups
        the sum of the groups' terms (sign-split: positive minus negative)."""
        if self.one_per_input:  # sum_k exp(ln(x_k + dx) + v_k) = (x + dx) . e^v
            return (x + self.delta_x).clamp_min(math.exp(LOG_ZERO)) @ self._lns_weights().T
        u = _ShiftedLog.apply(x, float(self.delta_x), 0.0)
        v = self._product_weights(self.v.reshape(self.out_count, -1))
        fast = group_exp_sum(u, v, self.bounds, self.split_sign) if self._fast_groups() else None
        if fast is not None:
            return fast
        return self._exp_terms(self._reduced(lambda reduce, alpha: maxplus(u, v, reduce, alpha, self.bounds)))

    def neuron(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the BM neuron to input patches ``x`` (N x K); returns N x O."""
        if self.branches == 1.5:
            return self._combine_15(self.max_term(x), x.sum(1, keepdim=True))
        o = self.out_count
        v_both = torch.cat([self.v_pos.reshape(o, -1), self.v_neg.reshape(o, -1)])
        u_pos, u_neg = _ShiftedLog.apply(x, 0.0, 0.0), _ShiftedLog.apply(x, 0.0, 0.0, -1.0)
        m_pos = self._exp_terms(self._reduced(lambda reduce, alpha: maxplus(u_pos, v_both, reduce, alpha, self.bounds)))
        m_neg = self._exp_terms(self._reduced(lambda reduce, alpha: maxplus(u_neg, v_both, reduce, alpha, self.bounds)))
        y = (m_pos[:, :o] - m_pos[:, o:]) - (m_neg[:, :o] - m_neg[:, o:])
        if self.bias is not None:
            y = y + self.bias
        return y

    def _combine_15(self, max_term: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
        """The 1.5-branch output from the max term (N x O) and the input sums (N x 1):
        sum_k w_k x_k = sum (x+dx)(w+dw) - dw sum x - dx sum (w + dw), with w + dw = exp(v); plus the bias.
        Sign-split: sum_k s_k x_k e^v_k = sum_k s_k (x_k + dx) e^v_k - dx sum_k s_k e^v_k (no dw)."""
        if self.split_sign:
            y = max_term - self.delta_x * self._lns_weights().sum(1)
            return y if self.bias is None else y + self.bias
        offset = -self.delta_x * torch.exp(self.v.reshape(self.out_count, -1)).sum(1)  # per output: O values
        if self.signed:
            y = ((max_term + offset) - self.delta_w * sums) * self.sign
            return y if self.bias is None else y + self.bias
        if self.bias is not None:
            offset = offset + self.bias
        return (max_term + offset) - self.delta_w * sums

    def classical_weight(self) -> torch.Tensor:
        """The classical weight this layer stands for: s (exp(v) - dw), or exp(v+) - exp(v-)."""
        if self.split_sign:
            return torch.exp(self.v) * self.sign
        if self.branches == 1.5:
            return (torch.exp(self.v) - self.delta_w) * self.sign.reshape((-1,) + (1,) * (self.v.dim() - 1))
        return torch.exp(self.v_pos) - torch.exp(self.v_neg)

    def neuron_spec(self) -> dict:
        """What kind of neuron this is, for checkpoints (see bmhw.models.build)."""
        spec = {"neuron": "bm15" if self.branches == 1.5 else "bm4", "reduce": self.reduce}
        if self.alpha is not None:
            spec["alpha"] = float(self.alpha.detach())
            spec["learn_alpha"] = self.learn_alpha
        if self.maxima != 1 or self.split_sign:
            spec["maxima"] = str(Maxima(self.maxima, self.split_sign))
        return spec

    def _neuron_repr(self) -> str:
        text = f"branches={self.branches}, reduce={self.reduce!r}"
        if self.alpha is not None:
            text += f", alpha={float(self.alpha.detach()):.4g}" + (" (learned)" if self.learn_alpha else "")
        if self.branches == 1.5:
            text += f", delta_x={float(self.delta_x):g}, delta_w={float(self.delta_w):g}"
        if self.maxima != 1 or self.split_sign:
            text += f", maxima={Maxima(self.maxima, self.split_sign)}"
        return text


class BMLinear(_BMNeuron):
    """Fully connected BM layer; a drop-in replacement for ``nn.Linear``."""

    def __init__(self, in_features, out_features, branches=1.5, reduce="max", alpha=None, learn_alpha=False,
                 bias=True, delta_x=DEFAULT_DELTA_X, delta_w=None, maxima=1, split_sign=False):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self._init_neuron((out_features, in_features), branches, reduce, alpha, learn_alpha, bias, delta_x, delta_w,
                          maxima, split_sign)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """Input rows (N x in_features), one per output row."""
        return x.reshape(-1, self.in_features)

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """An output tensor as N x out_features rows, in the order of :meth:`patches`."""
        return y.reshape(-1, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.patches(x)).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, {self._neuron_repr()}, bias={self.bias is not None}"


class BMConv2d(ConvPatches, _BMNeuron):
    """2-D convolutional BM layer (zero padding, no groups or dilation); replaces ``nn.Conv2d``.

    Patches are unfolded (N*L x C*kh*kw) and go through the same neuron as ``BMLinear``; zero padding
    is an input of 0, exactly as the hardware pads with activation code 0.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, branches=1.5, reduce="max",
                 alpha=None, learn_alpha=False, bias=True, delta_x=DEFAULT_DELTA_X, delta_w=None, maxima=1,
                 split_sign=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        shape = (out_channels, in_channels, *self.kernel_size)
        self._init_neuron(shape, branches, reduce, alpha, learn_alpha, bias, delta_x, delta_w, maxima, split_sign)

    def rows(self, y: torch.Tensor) -> torch.Tensor:
        """An output tensor (B x O x Ho x Wo) as B*Ho*Wo x O rows, in the order of :meth:`patches`."""
        return y.permute(0, 2, 3, 1).reshape(-1, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        ho, wo = self.output_size(x.shape[2], x.shape[3])
        if self.branches == 1.5 and float(self.delta_x) > 0:
            y = self._neuron_15_image(x)
        else:
            y = self.neuron(self.patches(x))  # B*L x O
        return y.reshape(b, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def _neuron_15_image(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`neuron` of the 1.5-branch layer on all patches, with the logarithm taken on the image (K
        times fewer logs than on the patches) and the input sums by a box filter. The log is
        shifted by ln(dx) so that it is 0 where x is 0 and the zero padding of the patches stays exact;
        every reduction R commutes with adding a constant, so the shift comes back on R's output."""
        o = self.out_count
        if self.one_per_input:  # every term its one product: a convolution of x + dx, padded with dx (x = 0)
            w = self._lns_weights()
            terms = F.conv2d(x, w.reshape(o, *x.shape[1:2], *self.kernel_size), None, self.stride, self.padding)
            terms = self.rows(terms) + self.delta_x * w.sum(1)
            return self._combine_15(terms, self._patch_sums(x).reshape(-1, 1))
        log_dx = math.log(float(self.delta_x))
        image = _ShiftedLog.apply(x, float(self.delta_x), log_dx)
        # The shift, added to the O x K log-weights rather than to the output.
        v = self._product_weights(self.v.reshape(o, -1) + log_dx)
        # The product reads the patches from the image (bmhw.nn.maxplus); where it cannot, they are unfolded.

        def product(reduce, alpha):
            m = maxplus_conv(image, v, self.kernel_size, self.stride, self.padding, reduce, alpha, self.bounds)
            return maxplus(self.patches(image), v, reduce, alpha, self.bounds) if m is None else m

        terms = None
        if self._fast_groups():
            terms = group_exp_sum(image, v, self.bounds, self.split_sign, (self.kernel_size, self.stride, self.padding))
        if terms is None:
            terms = self._exp_terms(self._reduced(product))
        return self._combine_15(terms, self._patch_sums(x).reshape(-1, 1))

    def _patch_sums(self, x: torch.Tensor) -> torch.Tensor:
        """sum_k x_k of every patch (B x Ho x Wo): a box filter over the channel sums (an average pool times
        the window's size, far cheaper than a convolution with ones, forward and backward)."""
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        channel_sums = x.sum(1, keepdim=True)
        if 2 * ph <= kh and 2 * pw <= kw:  # what avg_pool2d accepts
            return F.avg_pool2d(channel_sums, self.kernel_size, self.stride, self.padding)[:, 0] * (kh * kw)
        ones = x.new_ones(1, 1, kh, kw)
        return F.conv2d(channel_sums, ones, stride=self.stride, padding=self.padding)[:, 0]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, {self._neuron_repr()}, bias={self.bias is not None}")


@contextmanager
def surrogate_gradient(alpha: float | None):
    """Within this block every hard-max BM layer (existing or new) trains with LSE's gradient at temperature
    ``alpha`` while its forward pass stays the exact max; None leaves the layers as they are."""
    if alpha is not None and not alpha > 0:
        raise ValueError(f"the surrogate gradient's temperature must be positive, got {alpha}")
    previous = _BMNeuron.surrogate_alpha
    _BMNeuron.surrogate_alpha = previous if alpha is None else float(alpha)
    try:
        yield
    finally:
        _BMNeuron.surrogate_alpha = previous

