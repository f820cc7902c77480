"""The HLS context of a binarised BiSE layer (docs/datapath.md, "The BiSE layer"): 1-bit activations in; a
hidden layer outputs one bit per output (OR / AND), the last one the class score C (its proven width); kernel
``bmhw::bise_conv2d`` / ``bise_linear``."""

from __future__ import annotations

from bmhw import ir
from bmhw.backends.hls.common import (BIT_TYPE, ap_type, fold_cycles, geometry, partitions, rom, shapes_text,
                                      layer_context)
from bmhw.errors import BmhwError
from bmhw.ir.widths import MAX_WIDTH  # the kernels do their rounding shifts in 64-bit integers

# The same for a BiSE layer's fold: the ROM read of SE / NEG and the XOR feeding the 1-bit OR / AND (or the
# score counter); nothing follows the loop (no lookup, no shift, no requantization). A model constant too.
BISE_PIPELINE_DEPTH = 2


def _types(layer: dict, in_type: str, name: str) -> tuple[str, str, str]:
    """x, C and out types, checked: bits in, bits out of a hidden layer, the count C out of the scores layer."""
    ranges, widths = layer["ranges"], layer["widths"]
    for signal in ("x", "C", "q_out"):
        if widths[signal] > MAX_WIDTH:
            raise BmhwError(f"layer {layer['name']}: signal {signal} needs {widths[signal]} bits; the HLS kernels "
                            f"support at most {MAX_WIDTH}")
    x_type = ap_type(*ranges["x"], widths["x"])
    if in_type != BIT_TYPE or x_type != BIT_TYPE:
        raise BmhwError(f"layer {name}: a BiSE layer takes bits ({BIT_TYPE}) but gets {in_type} (IR x: {x_type}); "
                        "the .bmq file is inconsistent: re-create it with bmhw quantize")
    c_type = ap_type(*ranges["C"], widths["C"])
    out_type = ap_type(*ranges["q_out"], widths["q_out"])
    if layer["scores"] and out_type != c_type:
        raise BmhwError(f"layer {name}: the scores layer's q_out ({out_type}) must be its count C ({c_type}); "
                        "re-create the .bmq with bmhw quantize")
    if not layer["scores"] and out_type != BIT_TYPE:
        raise BmhwError(f"layer {name}: a hidden BiSE layer outputs bits, the IR gives q_out {out_type}; "
                        "re-create the .bmq with bmhw quantize")
    return x_type, c_type, out_type

# The README's parts for this family (templates/hls/readme/*_<part>.md.j2) and what the top streams out.
README_PART = "bise"
RESULT_WHAT = "class scores"


def context(net: ir.QuantizedNet, layer: dict, in_type: str, name: str, pe: int) -> dict:
    x_type, c_type, out_type = _types(layer, in_type, name)
    scores = bool(layer["scores"])
    se, op, neg = (net.table(layer, t) for t in ir.BISE_TABLES)
    return layer_context(
        layer, name, pe, typedefs=[("x_t", x_type), ("c_t", c_type), ("out_t", out_type)],
        int_constants=[(k, int(v)) for k, v in geometry(layer) + [("PE", pe)]], bool_constants=[("SCORES", scores)],
        table_list="structuring elements SE, operators OP (0 dilation, 1 erosion), complemented inputs NEG",
        out_type=out_type, partitions=partitions([f"{name}_{t}" for t in ir.BISE_TABLES], pe),
        tables=[rom("bool", f"{name}_se", se), rom("bool", f"{name}_op", op), rom("bool", f"{name}_neg", neg)],
        summary=f"{shapes_text(layer)}, K={layer['fan_in']}, max |S|={int(se.sum(axis=1).max())}, "
                + (f"class scores C {layer['widths']['C']} bits" if scores else "1-bit OR / AND outputs"))


def cycles(layer: dict, pe: int) -> dict:
    """One literal per cycle at II=1 plus the pipeline depth per fold, and a convolution's gather loop."""
    return fold_cycles(layer, pe, BISE_PIPELINE_DEPTH, lookup=ir.OPS[layer["op"]].conv)


def check_last(net: ir.QuantizedNet) -> None:
    """The scores layer comes last, and only last."""
    last = net.layers[-1]
    if last["op"] not in ir.BISE_OPS or not last["scores"] or \
            any(layer.get("scores") for layer in net.layers[:-1] if layer["op"] in ir.BISE_OPS):
        raise BmhwError("the last layer of a BiSE network must be its scores layer (and only the last); "
                        "re-create the .bmq with bmhw quantize")
