"""The fields of a ``.bmq`` document, checked before any table is read: the input, every layer's fields against
its op's spec (types, ranges, shapes that follow from one another) and the chain of layers (each layer reads what
the one before it writes, codes stay within the range the next layer's tables cover, the logits come last).

Every check raises one line naming the layer, the field and what was expected. The bounds are generous for any
network an FPGA holds and tight enough that no check, table or golden-model step can allocate without limit or
overflow 64 bits. NumPy only.
"""

from __future__ import annotations

import math
import re

from bmhw.errors import BmhwError
from bmhw.ir.ops import FAMILIES, OPS

MAX_CHANNELS = 1 << 16  # channels, outputs per layer
MAX_SIDE = 1 << 12  # image height and width
MAX_ELEMENTS = 1 << 24  # values of one activation tensor or one table
MAX_LAYERS = 1024
MAX_CODE = (1 << 16) - 1  # largest activation code (16-bit activations)
INPUT_CODE_MAX = 255  # image bytes
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")  # layer names become zip entry folders: no separators
# Integer fields of each family's weighted layers: name -> (lo, hi), as wide as the quantizer's options reach; the
# proven widths (bmhw.ir.validate) keep every shifted signal within 62 bits. F sizes the exp table (2^F entries).
FAMILY_FIELDS = {
    "bm": {"F": (0, 20), "P": (0, 62), "G": (-126, 126), "H": (1, 62), "csum": (-(1 << 62), 1 << 62),
           "in_max": (1, MAX_CODE), "out_max": (1, MAX_CODE), "out_scale_exp": (-126, 126)},
    "mac": {"in_max": (1, MAX_CODE), "out_max": (1, MAX_CODE), "out_scale_exp": (-126, 126),
            "acc_scale_exp": (-126, 126), "weight_bits": (2, 32)},
    "adder": {"R": (0, 62), "in_max": (1, MAX_CODE), "out_max": (1, MAX_CODE), "out_scale_exp": (-126, 126),
              "scale_bits": (2, 32)},
    "bise": {},
}
# Boolean fields: relu (hidden layers requantize) or scores (the BiSE layer that outputs the class scores).
FAMILY_FLAGS = {"bm": ("relu",), "mac": ("relu",), "adder": ("relu",), "bise": ("scores",)}


def invalid(path, what: str) -> BmhwError:
    return BmhwError(f"{path} is not a valid .bmq file ({what}); re-create it with bmhw quantize")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _where(layer) -> str:
    name = layer.get("name") if isinstance(layer, dict) else None
    return f"layer {name!r}" if isinstance(name, str) else "a layer"


def integer(path, layer: dict, key: str, lo: int, hi: int) -> int:
    value = layer.get(key)
    if not is_int(value) or not lo <= value <= hi:
        shown = "missing" if key not in layer else repr(value)[:40]
        raise invalid(path, f"{_where(layer)}: field {key!r} is {shown}, expected an integer in [{lo}, {hi}]")
    return value


def flag(path, layer: dict, key: str) -> bool:
    value = layer.get(key)
    if not isinstance(value, bool):
        shown = "missing" if key not in layer else repr(value)[:40]
        raise invalid(path, f"{_where(layer)}: field {key!r} is {shown}, expected true or false")
    return value


def int_list(path, layer: dict, key: str, length: int | None, lo: int, hi: int) -> list:
    value = layer.get(key)
    if not isinstance(value, list) or (length is not None and len(value) != length) or not value \
            or not all(is_int(v) and lo <= v <= hi for v in value):
        count = f"{length} " if length is not None else ""
        shown = "missing" if key not in layer else repr(value)[:40]
        raise invalid(path, f"{_where(layer)}: field {key!r} is {shown}, expected a list of {count}integers in "
                            f"[{lo}, {hi}]")
    return value


def shape(path, layer: dict, key: str, length: int | None = None) -> list:
    """A tensor shape: positive sizes, channels and sides bounded, at most MAX_ELEMENTS values."""
    dims = int_list(path, layer, key, length, 1, MAX_CHANNELS)
    if len(dims) > 3 or math.prod(dims) > MAX_ELEMENTS or (len(dims) == 3 and max(dims[1:]) > MAX_SIDE):
        raise invalid(path, f"{_where(layer)}: field {key!r} is {dims}, expected at most 3 sizes, sides up to "
                            f"{MAX_SIDE} and {MAX_ELEMENTS} values")
    return dims


def check_input(path, doc: dict) -> tuple[list, list]:
    entry = doc.get("input")
    if not isinstance(entry, dict):
        raise invalid(path, "its 'input' entry is missing")
    dims = shape(path, {**entry, "name": "input"}, "shape", 3)
    scale = int_list(path, {**entry, "name": "input"}, "scale", 2, 1, 1 << 32)
    return dims, scale


def _conv_fields(path, layer: dict, in_shape: list) -> list:
    """A convolution's kernel, stride and padding; its fan-in and output shape follow from them."""
    kh, kw = int_list(path, layer, "kernel", 2, 1, MAX_SIDE)
    sh, sw = int_list(path, layer, "stride", 2, 1, MAX_SIDE)
    ph, pw = int_list(path, layer, "padding", 2, 0, MAX_SIDE)
    c, h, w = in_shape
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise invalid(path, f"{_where(layer)}: its {kh} x {kw} kernel is larger than its padded {h} x {w} input")
    return [(h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1, c * kh * kw]


def _weighted(path, layer: dict, spec, in_shape: list) -> list:
    """The fields of a weighted layer: its shapes, fan-in and output count, its family's constants."""
    o = integer(path, layer, "out_count", 1, MAX_CHANNELS)
    if spec.conv:
        if len(in_shape) != 3:
            raise invalid(path, f"{_where(layer)}: a convolution needs a C x H x W input, not {in_shape}")
        ho, wo, k = _conv_fields(path, layer, in_shape)
        out_shape = [o, ho, wo]
    else:
        k, out_shape = math.prod(in_shape), [o]
    if integer(path, layer, "fan_in", 1, MAX_ELEMENTS) != k or o * k > MAX_ELEMENTS:
        raise invalid(path, f"{_where(layer)}: field 'fan_in' is {layer['fan_in']}, expected {k} (its input and "
                            f"kernel), with at most {MAX_ELEMENTS} weights")
    for key in FAMILY_FLAGS[spec.family]:
        flag(path, layer, key)
    if spec.family == "bm" and "mirrored" in layer:  # files before it have no such field: sign table optional
        flag(path, layer, "mirrored")
    if spec.family == "bm" and "groups" in layer:  # several maxima per output; absent: one group
        integer(path, layer, "groups", 1, k)
    if spec.family == "bm" and "split_sign" in layer:  # absent: no weight_sign table
        flag(path, layer, "split_sign")
    for key, (lo, hi) in FAMILY_FIELDS[spec.family].items():
        if key != "out_max" or layer["relu"]:  # the logits layer has no output codes
            integer(path, layer, key, lo, hi)
    return out_shape


def _shape_op(path, layer: dict, op: str, in_shape: list) -> list:
    if op == "flatten":
        return [math.prod(in_shape)]
    if op == "binarize":
        integer(path, layer, "threshold", 0, INPUT_CODE_MAX + 1)
        return list(in_shape)
    k = integer(path, layer, "kernel", 1, MAX_SIDE)  # maxpool2d: the datapath pools k x k windows at stride k
    integer(path, layer, "stride", k, k)
    if len(in_shape) != 3 or min(in_shape[1:]) < k:
        raise invalid(path, f"{_where(layer)}: max pooling by {k} needs a C x H x W input of at least {k} x {k}, "
                            f"not {in_shape}")
    return [in_shape[0], in_shape[1] // k, in_shape[2] // k]


def _codes(path, layer: dict, spec, code_max):
    """The chain of codes: a layer's tables cover the codes the layer before it writes; returns what it writes
    (None after the logits)."""
    if code_max is None:
        raise invalid(path, f"{_where(layer)} follows the logits layer; the logits come last")
    if spec.family == "bise" and spec.weighted:
        if code_max != 1:
            raise invalid(path, f"{_where(layer)}: a BiSE layer reads bits (after binarize), not codes up to "
                                f"{code_max}")
        return 1 if not layer["scores"] else None
    if spec.weighted:
        if layer["in_max"] != code_max:
            raise invalid(path, f"{_where(layer)}: field 'in_max' is {layer['in_max']}, expected {code_max} (the "
                                "largest code of its input)")
        return layer["out_max"] if layer["relu"] else None
    return 1 if spec.name == "binarize" else code_max


def check_layers(path, doc: dict) -> None:
    """Every layer's fields, in order, against its op's spec and the layer before it."""
    in_shape, _ = check_input(path, doc)
    layers = doc.get("layers")
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS or \
            not all(isinstance(layer, dict) for layer in layers):
        raise invalid(path, f"its 'layers' entry is not a list of 1 to {MAX_LAYERS} layers")
    names, families, code_max = set(), set(), INPUT_CODE_MAX
    for layer in layers:
        name, op = layer.get("name"), layer.get("op")
        if not isinstance(name, str) or not NAME.match(name) or name in names:
            raise invalid(path, f"layer name {name!r} is not unique or not made of letters, digits, '_', '.', '-'")
        names.add(name)
        spec = OPS.get(op) if isinstance(op, str) else None
        if spec is None:
            raise invalid(path, f"unknown operation {op!r} in layer {name!r}")
        if spec.family is not None:
            families.add(FAMILIES[spec.family].title)
            if len(families) > 1:
                raise invalid(path, f"it mixes {' and '.join(sorted(families))} layers; a file holds one family")
        if shape(path, layer, "in_shape") != in_shape:
            raise invalid(path, f"{_where(layer)}: field 'in_shape' is {layer['in_shape']}, expected {in_shape} (the "
                                "output of the layer before)")
        out = _weighted(path, layer, spec, in_shape) if spec.weighted else _shape_op(path, layer, op, in_shape)
        if shape(path, layer, "out_shape") != out:
            raise invalid(path, f"{_where(layer)}: field 'out_shape' is {layer['out_shape']}, expected {out}")
        code_max = _codes(path, layer, spec, code_max)
        in_shape = out
    if code_max is not None or len(in_shape) != 1:
        raise invalid(path, "its last layer is not a logits (or class scores) layer with one value per class")
