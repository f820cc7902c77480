"""Quantization of trained 1.5-branch BM networks (and of classical ones, their MAC twins) to the integer IR (docs/datapath.md)."""

from bmhw.quant.adder import quantize_adder
from bmhw.quant.classical import quantize_classical
from bmhw.quant.quantize import QuantOptions, layer_sequence, quantize

__all__ = ["QuantOptions", "layer_sequence", "quantize", "quantize_adder", "quantize_classical"]
