"""Quantization of trained 1.5-branch BM networks to the integer IR (docs/datapath.md)."""

from bmhw.quant.quantize import QuantOptions, layer_sequence, quantize

__all__ = ["QuantOptions", "layer_sequence", "quantize"]
