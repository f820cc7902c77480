"""BM layers, the max-plus product beneath them, conversion to and from classical layers; AdderNet layers; BiSE layers."""

from bmhw.nn.adder import AdderConv2d, AdderLinear, set_eta, to_adder
from bmhw.nn.bise import BiSE, BiSELinear
from bmhw.nn.convert import to_bm, to_classical
from bmhw.nn.layers import BMConv2d, BMLinear
from bmhw.nn.logweights import LOG_ZERO, delta_w_for, power_of_two_at_least
from bmhw.nn.maxplus import REDUCTIONS, maxplus

__all__ = ["AdderConv2d", "AdderLinear", "BiSE", "BiSELinear", "BMConv2d", "BMLinear", "LOG_ZERO", "REDUCTIONS", "delta_w_for", "maxplus",
           "power_of_two_at_least", "set_eta", "to_adder", "to_bm", "to_classical"]
