"""From a trained 1.5-branch BM network (PyTorch) to the integer IR of docs/datapath.md.

The only place where the float model meets the integer datapath: it calibrates the activation scales
on a batch of images, tabulates ln, exp, log-weights and biases, and derives every width
(``bmhw.ir.widths``). Everything downstream reads the ``QuantizedNet`` it returns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from bmhw import __version__
from bmhw.errors import BmhwError
from bmhw.ir.intmath import rnd
from bmhw.ir import QuantizedNet
from bmhw.nn import BMConv2d
from bmhw.nn.adder import AdderConv2d, _AdderNeuron
from bmhw.nn.layers import _BMNeuron
from bmhw.ir.widths import infer_widths
from bmhw.quant.sequence import WEIGHT_MODULES as _WEIGHT_MODULES
from bmhw.quant.sequence import layer_names as _layer_names
from bmhw.quant.sequence import check_layer_options, float64_copy, layer_sequence

INPUT_SCALE = Fraction(1, 255)  # image bytes, as in training (bmhw.train.to_tensor)
CORRECTION_SHIFT = 16  # H of docs/datapath.md


@dataclass(frozen=True)
class QuantOptions:
    act_bits: int = 8
    log_frac_bits: int | dict = 10  # F, for every layer or per layer name
    exp_frac_bits: int = 16
    guard_bits: int = 8
    # The stored width of the log-weights: None keeps every trained log-weight, a number b keeps the top 2^b codes
    # of each layer (smaller weights are raised to the smallest one kept); a dict gives it per layer name.
    log_weight_bits: int | dict | None = None

    def check(self) -> None:
        for name, value, lo, hi in (("act-bits", self.act_bits, 2, 16), ("exp-frac-bits", self.exp_frac_bits, 1, 60),
                                    ("guard-bits", self.guard_bits, 0, 40)):
            if not lo <= value <= hi:
                raise BmhwError(f"--{name} must be between {lo} and {hi}, got {value}")
        for option, values, lo, hi in (("log-frac-bits", self.log_frac_bits, 0, 20),
                                       ("log-weight-bits", self.log_weight_bits, 1, 30)):
            for layer, value in (values.items() if isinstance(values, dict) else [(None, values)]):
                if value is None and option == "log-weight-bits":
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                    where = f" for layer {layer}" if layer is not None else ""
                    raise BmhwError(f"--{option}{where} must be between {lo} and {hi}, got {value}")

    def frac_bits_of(self, layer: str) -> int:
        """F of one layer."""
        bits = self.log_frac_bits
        return bits.get(layer, 10) if isinstance(bits, dict) else bits

    def weight_bits_of(self, layer: str) -> int | None:
        """The stored log-weight width of one layer (None: not clipped)."""
        bits = self.log_weight_bits
        return bits.get(layer) if isinstance(bits, dict) else bits


def check_structure(model: nn.Module, weight_type) -> None:
    """Refuse in one line a network the quantizer cannot take (before any calibration is looked for)."""
    mods = layer_sequence(model)
    _check_sequence(mods, _layer_names(model, mods), weight_type)


def _check_sequence(mods: list[nn.Module], names: list[str], weight_type=_BMNeuron) -> None:
    """``weight_type``: _BMNeuron (a BM network), _AdderNeuron (an AdderNet) or (nn.Conv2d, nn.Linear) (a
    classical one, the MAC twin)."""
    weight_idx = [i for i, m in enumerate(mods) if isinstance(m, _WEIGHT_MODULES)]
    if not weight_idx:
        raise BmhwError("the network has no weight layer to quantize")
    for i, (mod, name) in enumerate(zip(mods, names)):
        if isinstance(mod, _AdderNeuron) != (weight_type is _AdderNeuron) and isinstance(mod, _WEIGHT_MODULES):
            kind = "an adder" if isinstance(mod, _AdderNeuron) else f"a {type(mod).__name__}"
            family = ("an AdderNet" if weight_type is _AdderNeuron else "a BM" if weight_type is _BMNeuron
                      else "a classical")
            raise BmhwError(f"layer {name} is {kind} layer in {family} network: a network is quantized with one "
                            "family of weight layers (all BM, all classical or all adder); convert or retrain it")
        if isinstance(mod, (nn.Linear, nn.Conv2d)) and weight_type is _BMNeuron:
            raise BmhwError(f"layer {name} is a classical {type(mod).__name__} in a BM network: convert every layer "
                            "to 1.5-branch BM (bmhw convert --neuron bm15)")
        if isinstance(mod, _BMNeuron) and weight_type is not _BMNeuron:
            raise BmhwError(f"layer {name} is a BM layer in a classical network: the MAC twin needs classical "
                            "convolutions and linear layers only")
        if isinstance(mod, _WEIGHT_MODULES):
            if isinstance(mod, nn.Conv2d) and (mod.groups != 1 or tuple(mod.dilation) != (1, 1)
                                               or mod.padding_mode != "zeros"):
                raise BmhwError(f"layer {name}: only plain convolutions (groups 1, dilation 1, zero padding) are "
                                "supported")
            if isinstance(mod, _BMNeuron) and (mod.branches != 1.5 or mod.reduce != "max"):
                raise BmhwError(f"layer {name} is a {mod.branches}-branch BM layer with reduce={mod.reduce!r}: the "
                                "integer datapath implements 1.5 branches with the exact max only")
            last = i == weight_idx[-1]
            follows_relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            if not last and not follows_relu:
                raise BmhwError(f"layer {name} is not followed by a ReLU: every weight layer but the last needs one")
            if last and i != len(mods) - 1:
                raise BmhwError(f"layer {name}, the logits layer, must be the last module")
        elif isinstance(mod, nn.MaxPool2d):
            k, s = mod.kernel_size, mod.stride
            if not (isinstance(k, int) and s in (k, None) and mod.padding == 0 and mod.dilation == 1
                    and not mod.ceil_mode):
                raise BmhwError(f"layer {name}: only max pooling with stride = kernel, no padding is supported")
        elif not isinstance(mod, (nn.ReLU, nn.Flatten)):
            raise BmhwError(f"layer {name} ({type(mod).__name__}) is not supported by the integer datapath "
                            "(BM conv / linear, ReLU, MaxPool2d, Flatten)")




class TableError(ValueError):
    """A trained value that the integer tables cannot hold; build_net names the layer."""


def to_int64(values, what: str) -> np.ndarray:
    """Round half up to int64, refusing values beyond 62 bits (a huge or non-finite trained value)."""
    values = np.floor(np.asarray(values, dtype=np.float64) + 0.5)
    if not np.all(np.abs(values) < 2.0 ** 62):
        raise TableError(f"its {what} do not fit 62 bits (a huge trained value): retrain the network or restore "
                         "the checkpoint")
    return values.astype(np.int64)


def _scale_exponent(amax: float, top: int) -> int:
    """Smallest integer e with 2^e * top >= amax (exactly; 0 for a dead tensor)."""
    if not amax > 0:
        return 0
    target = Fraction(amax) / top
    e = math.frexp(float(target))[1]  # 2^(e-1) <= target < 2^e, up to float rounding: then adjust
    while Fraction(2) ** (e - 1) >= target:
        e -= 1
    while Fraction(2) ** e < target:
        e += 1
    return e


def _pow2(e: int) -> Fraction:
    return Fraction(2) ** e


def clip_log_weights(ln_lut: np.ndarray, log_weights: np.ndarray, bits: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Narrower log-weights (docs/datapath.md, "Narrower memories"): keep the top ``2^bits`` codes of the layer, raising
    every smaller log-weight to the smallest one kept, and move an offset into the ln table, ``LN + c`` and ``W - c``
    with ``c`` the middle of the kept codes, so that the stored log-weights are signed ``bits``-bit numbers (the
    backends' signed ROM words) and every sum ``T = LN + W`` (and so everything after it) is what the clipped weights
    give. None: unchanged."""
    if bits is None:
        return ln_lut, log_weights
    lo = max(int(log_weights.min()), int(log_weights.max()) - ((1 << bits) - 1))  # fewer bits where they span less
    span = int(log_weights.max()) - lo + 1
    c = lo + (1 << (max(1, (span - 1).bit_length()) - 1))  # the kept codes lo .. max become -2^(n-1) .. < 2^(n-1)
    return ln_lut + c, np.maximum(log_weights, lo) - c


def _bm_tables(mod: _BMNeuron, s_in: Fraction, q_in: int, opts: QuantOptions, g: int, f: int,
               weight_bits: int | None = None) -> tuple[dict, int]:
    p = opts.exp_frac_bits
    dx = float(mod.delta_x)
    if not dx > 0:  # ln(s q + dx) of the code q = 0
        raise TableError(f"its delta_x is {dx:g}, not positive: retrain the network or restore the checkpoint")
    v = mod.v.detach().double().reshape(mod.out_count, -1).numpy()
    s_float = float(s_in)
    ln_lut = np.array([rnd(2**f * math.log2(s_float * q + dx)) for q in range(q_in + 1)], dtype=np.int64)
    ln_lut, log_weights = clip_log_weights(ln_lut, to_int64(2.0**f * v / math.log(2), "log-weights"), weight_bits)
    exp_lut = np.array([rnd(2**p * 2 ** (r / 2**f)) for r in range(2**f)], dtype=np.int64)
    b = mod.bias.detach().double().numpy() if mod.bias is not None else np.zeros(mod.out_count)
    sign = mod.sign.detach().double().numpy()
    if mod.split_sign:  # y = sum of the pairs' signed terms - dx sum_k s_k e^v_k + b (no dw, no input sum)
        weight_sign = np.where(sign.reshape(v.shape) < 0, -1, 1).astype(np.int64)
        offset = dx * (weight_sign * np.exp(v)).sum(axis=1)
    else:  # y = s (E - C - dx sum e^v) + b: the constant goes into the bias with the output's sign.
        offset = sign * dx * np.exp(v).sum(axis=1)
    bias = to_int64(2.0**g * (b - offset), "biases")
    csum = rnd(Fraction(float(mod.delta_w)) * s_in * _pow2(g + CORRECTION_SHIFT))
    tables = {"ln_lut": ln_lut, "log_weights": log_weights, "exp_lut": exp_lut, "bias": bias}
    if mod.signed:
        tables["sign"] = np.where(sign < 0, -1, 1).astype(np.int64)
    if mod.split_sign:
        tables["weight_sign"] = weight_sign
    return tables, csum


@torch.no_grad()
def quantize(model: nn.Module, calib_images: np.ndarray, act_bits=8, log_frac_bits=10, exp_frac_bits=16,
             guard_bits=8, log_weight_bits=None, meta: dict | None = None) -> QuantizedNet:
    """Quantize a 1.5-branch BM network; ``calib_images``: uint8 images (N, C, H, W) for the scales (or a
    ``Calibration``); ``log_weight_bits``: the stored log-weight width, for every layer or per layer name."""
    opts = QuantOptions(act_bits, log_frac_bits, exp_frac_bits, guard_bits, log_weight_bits)
    opts.check()
    check_layer_options(model, "log-frac-bits", log_frac_bits)
    check_layer_options(model, "log-weight-bits", log_weight_bits)

    def bm_layer(mod, name, s_in, q_in, e_out, relu):
        g, f = guard_bits - e_out, opts.frac_bits_of(name)
        tables, csum = _bm_tables(mod, s_in, q_in, opts, g, f, opts.weight_bits_of(name))
        layer = {"op": "bm_conv2d" if isinstance(mod, BMConv2d) else "bm_linear", "name": name,
                 "fan_in": int(tables["log_weights"].shape[1]), "out_count": mod.out_count, "F": f,
                 "P": exp_frac_bits, "G": g, "H": CORRECTION_SHIFT, "csum": csum, "relu": relu, "in_max": q_in,
                 "out_max": (1 << act_bits) - 1 if relu else None, "in_scale": [s_in.numerator, s_in.denominator],
                 "out_scale_exp": e_out, "delta_w": float(mod.delta_w), "delta_x": float(mod.delta_x),
                 "mirrored": bool(mod.signed)}
        if mod.maxima != 1 or mod.split_sign:  # several maxima per output; files of one max keep their bytes
            layer.update(groups=int(mod.maxima), split_sign=bool(mod.split_sign))
        return layer, tables

    options = asdict(opts)
    if log_weight_bits is None:  # files quantized without it keep their bytes
        del options["log_weight_bits"]
    return build_net(model, calib_images, act_bits, _BMNeuron, bm_layer, options, meta)


def build_net(model: nn.Module, calibration, act_bits: int, weight_type, make_layer, options: dict,
              meta: dict | None) -> QuantizedNet:
    """Turn the calibrated ``model`` into the IR, layer by layer. ``calibration``: a ``Calibration`` (the activation
    maxima, e.g. recorded with the checkpoint) or uint8 images (N, C, H, W) to measure them on.

    ``make_layer(mod, name, s_in, q_in, e_out, relu)`` returns the IR entry and the tables of one weight
    layer of type ``weight_type``, whose input codes lie in [0, q_in] at scale s_in and whose output
    scale is 2^e_out; shapes, kernel geometry and widths are added here."""
    from bmhw.quant.calibration import Calibration, measure

    model = model.eval()
    mods = layer_sequence(model)
    names = _layer_names(model, mods)
    _check_sequence(mods, names, weight_type)
    if not isinstance(calibration, Calibration):
        calibration = measure(model, calibration, "")
    top = (1 << act_bits) - 1
    s_in, q_in = INPUT_SCALE, 255
    mods = [float64_copy(m) for m in mods]  # the tables are computed from float64 copies
    with torch.no_grad():  # the shapes of every stage, from one blank image
        outs, h = [], torch.zeros((1, *calibration.input_shape), dtype=torch.float64)
        try:
            for mod in mods:
                h = mod(h)
                outs.append(h)
        except RuntimeError:
            raise BmhwError(f"the calibration is for {'x'.join(map(str, calibration.input_shape))} images, which this "
                            "network does not take: record it again with bmhw calibrate") from None
    weight_idx = [i for i, m in enumerate(mods) if isinstance(m, weight_type)]
    layers, arrays = [], {}
    shape = list(calibration.input_shape)
    for i, (mod, name) in enumerate(zip(mods, names)):
        out_shape = list(outs[i].shape[1:])
        if isinstance(mod, weight_type):
            relu = i != weight_idx[-1]
            if name not in calibration.maxima:
                raise BmhwError(f"the calibration record has no range for layer {name}: record it again (bmhw "
                                "calibrate)")
            e_out = _scale_exponent(calibration.maxima[name], top if relu else (1 << (act_bits - 1)) - 1)
            try:
                layer, tables = make_layer(mod, name, s_in, q_in, e_out, relu)
            except TableError as err:
                raise BmhwError(f"layer {name}: {err}") from None
            layer.update(in_shape=shape, out_shape=out_shape)
            if isinstance(mod, (BMConv2d, nn.Conv2d, AdderConv2d)):
                layer.update(kernel=list(mod.kernel_size), stride=list(mod.stride), padding=list(mod.padding))
            layer["ranges"], layer["widths"] = infer_widths(layer, tables)
            arrays.update({f"{name}/{t}": a for t, a in tables.items()})
            layers.append(layer)
            s_in, q_in = _pow2(e_out), top
        elif isinstance(mod, nn.MaxPool2d):
            layers.append({"op": "maxpool2d", "name": name, "in_shape": shape, "out_shape": out_shape,
                           "kernel": int(mod.kernel_size), "stride": int(mod.kernel_size)})
        elif isinstance(mod, nn.Flatten):
            layers.append({"op": "flatten", "name": name, "in_shape": shape, "out_shape": out_shape})
        shape = out_shape
    info = {"bmhw_version": __version__, "options": options, "calib_images": calibration.images, **(meta or {})}
    return QuantizedNet(input_shape=tuple(calibration.input_shape), input_scale=(1, 255), layers=layers,
                        arrays=arrays, meta=info)
