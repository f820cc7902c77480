"""The HLS contexts of the ops without weights: ``binarize`` (image bytes -> bits), ``maxpool2d``, ``flatten``;
kernels of the same names in hls/bmhw_layers.h."""

from __future__ import annotations

from bmhw.backends.hls.common import BIT_TYPE, layer_context, shapes_text, size
from bmhw.errors import BmhwError


def _context(layer: dict, name: str, typedefs: list, constants: list, out_type: str, summary: str) -> dict:
    return layer_context(layer, name, None, typedefs=typedefs, int_constants=[(k, int(v)) for k, v in constants],
                         out_type=out_type, tables=[], partitions=[], table_list="", summary=summary)


def context(net, layer: dict, in_type: str, name: str, pe) -> dict:
    op = layer["op"]
    if op == "binarize":
        threshold = int(layer["threshold"])
        return _context(layer, name, [("data_t", in_type), ("out_t", BIT_TYPE)],
                        [("SIZE", size(layer["in_shape"])), ("THRESHOLD", threshold)], BIT_TYPE,
                        f"binarize {'x'.join(map(str, layer['in_shape']))}: x = 1 iff code >= {threshold}")
    if op == "maxpool2d":
        c, h, w = layer["in_shape"]
        _, oh, ow = layer["out_shape"]
        if int(layer["stride"]) != int(layer["kernel"]):
            raise BmhwError(f"layer {layer['name']}: max pooling with stride {layer['stride']} != kernel "
                            f"{layer['kernel']} is not supported by the HLS kernels")
        constants = [("C", c), ("IN_H", h), ("IN_W", w), ("OUT_H", oh), ("OUT_W", ow), ("KERNEL", layer["kernel"])]
    else:
        constants = [("SIZE", size(layer["in_shape"]))]
    return _context(layer, name, [("data_t", in_type), ("out_t", in_type)], constants, in_type, shapes_text(layer))


def cycles(layer: dict, pe) -> dict:
    """Max pooling: its output elements; flatten, binarize: their elements."""
    elements = size(layer["out_shape"] if layer["op"] == "maxpool2d" else layer["in_shape"])
    return {"pe": None, "patches": None, "folds": None, "k": None, "cycles": elements}
