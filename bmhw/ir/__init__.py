"""The integer intermediate representation: the ``.bmq`` file and its network (``bmq``), bit-width inference
(``widths``) and the rounding arithmetic every stage shares (``intmath``); NumPy only.

``from bmhw import ir`` gives the file format's names (``ir.load_bmq``, ``ir.QuantizedNet``, the op tuples).
"""

from bmhw.ir.bmq import (ADDER_OPS, ADDER_TABLES, BISE_OPS, BISE_TABLES, BM_OPS, BM_TABLES, CONV_OPS, FORMAT,
                         MAC_OPS, MAC_TABLES, OPS, VERSION, WEIGHT_OPS, QuantizedNet, check_adder, check_bise, dumps,
                         load_bmq, save_bmq)

__all__ = ["ADDER_OPS", "ADDER_TABLES", "BISE_OPS", "BISE_TABLES", "BM_OPS", "BM_TABLES", "CONV_OPS", "FORMAT", "MAC_OPS",
           "MAC_TABLES", "OPS", "VERSION", "WEIGHT_OPS", "QuantizedNet", "check_adder", "check_bise", "dumps", "load_bmq",
           "save_bmq"]
