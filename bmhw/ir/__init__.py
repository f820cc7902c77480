"""The integer intermediate representation: its operations and neuron families (``ops``), the ``.bmq`` file
and its network (``bmq``), bit-width inference (``widths``) and the rounding arithmetic every stage shares
(``intmath``); NumPy only.

``from bmhw import ir`` gives the file format's names (``ir.load_bmq``, ``ir.QuantizedNet``, ``ir.OPS``,
``ir.FAMILIES``, the op tuples).
"""

from bmhw.ir.bmq import FORMAT, VERSION, QuantizedNet, dumps, load_bmq, save_bmq
from bmhw.ir.ops import (ADDER_OPS, ADDER_TABLES, BISE_OPS, BISE_TABLES, BM_OPS, BM_TABLES, CONV_OPS, FAMILIES,
                         MAC_OPS, MAC_TABLES, OPS, WEIGHT_OPS, Family, OpSpec, check_bise, family_of,
                         family_of_neuron, ops_of, spec_of)

__all__ = ["ADDER_OPS", "ADDER_TABLES", "BISE_OPS", "BISE_TABLES", "BM_OPS", "BM_TABLES", "CONV_OPS", "FAMILIES",
           "FORMAT", "MAC_OPS", "MAC_TABLES", "OPS", "VERSION", "WEIGHT_OPS", "Family", "OpSpec", "QuantizedNet",
           "check_bise", "dumps", "family_of", "family_of_neuron", "load_bmq", "ops_of", "save_bmq",
           "spec_of"]
