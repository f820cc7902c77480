"""What the per-family plans of the Verilog backend share: signal widths from proven ranges, ROM files
($readmemh text), the shape parameters every layer block takes, the weight ROM's word layout, the output
requantization's parameters, and the checks that refuse an inconsistent .bmq in one line. NumPy only."""

from __future__ import annotations

import numpy as np

from bmhw import ir
from bmhw.errors import BmhwError
from bmhw.ir.intmath import width

INPUT_BITS = 8  # image bytes: the network input codes are in [0, 255] (docs/datapath.md)


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest two's complement field holding [lo, hi] (a sign bit even when lo >= 0)."""
    return width(min(int(lo), -1), max(int(hi), 0))


def address_width(depth: int) -> int:
    return max(1, (int(depth) - 1).bit_length())


def mem_text(values, bits: int) -> bytes:
    """A $readmemh file: one two's complement entry of ``bits`` bits per line, in hex."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values).encode()


def size(shape) -> int:
    return int(np.prod(shape))


def round_shift_width(in_w: int, n: int) -> int:
    """Natural width of round_shift(a, n) for an ``in_w``-bit a (bmhw_round_shift)."""
    return in_w + 1 - n if n > 0 else in_w - n


def layer_geometry(layer: dict, pe: int) -> dict:
    """The shape parameters every layer block takes: bmhw_layer_scan's."""
    conv = ir.OPS[layer["op"]].conv
    in_h, in_w = (list(layer["in_shape"][1:]) if conv else [1, 1])
    out_h, out_w = (list(layer["out_shape"][1:]) if conv else [1, 1])
    kh, kw = layer["kernel"] if conv else (1, 1)
    sh, sw = layer["stride"] if conv else (1, 1)
    ph, pw = layer["padding"] if conv else (0, 0)
    return {"IN_H": in_h, "IN_W": in_w, "OUT_H": out_h, "OUT_W": out_w, "KH": kh, "KW": kw, "SH": sh, "SW": sw,
            "PH": ph, "PW": pw, "K": int(layer["fan_in"]), "O": int(layer["out_count"]), "PE": pe,
            "IN_AW": address_width(size(layer["in_shape"])), "OUT_AW": address_width(size(layer["out_shape"]))}


def weight_words(w: np.ndarray, pe: int, wt_w: int) -> list:
    """The weight ROM: the PE weights of one step side by side (PE 0 in the low bits), at address
    fold * K + k; outputs past O read zeros."""
    o, k = w.shape
    folds = -(-o // pe)
    w_pad = np.zeros((folds * pe, k), dtype=np.int64)
    w_pad[:o] = w
    words = []
    for fold in range(folds):
        block = w_pad[fold * pe:(fold + 1) * pe] & ((1 << wt_w) - 1)
        for step in range(k):
            word = 0
            for lane in reversed(range(pe)):
                word = (word << wt_w) | int(block[lane, step])
            words.append(word)
    return words


def padded(values, depth: int) -> np.ndarray:
    out = np.zeros(depth, dtype=np.int64)
    out[:len(values)] = values
    return out


def requantize_params(layer: dict, y_w: int, out_shift: int, checks: list) -> dict:
    """OUT_SHIFT, YR_W and OUT_D of a layer's output: requantized codes, or the Y_W-bit logits."""
    if not layer["relu"]:
        return {"OUT_SHIFT": 0, "YR_W": 1, "OUT_D": y_w}
    a = int(layer["widths"]["q_out"])
    checks += [(int(layer["out_max"]) == (1 << a) - 1, f"out_max {layer['out_max']} is not 2^{a} - 1"),
               (out_shift <= y_w, f"the requantization shift {out_shift} exceeds Y's {y_w} bits")]
    return {"OUT_SHIFT": out_shift, "YR_W": max(round_shift_width(y_w, out_shift), a + 1), "OUT_D": a}


def raise_failed(layer: dict, checks: list) -> None:
    for ok, problem in checks:
        if not ok:
            raise BmhwError(f"layer {layer['name']}: {problem}; the .bmq file is inconsistent or unsupported by "
                            "the Verilog backend: re-create it with bmhw quantize")


def finish_plan(params: dict, mems: dict, name: str, positions: int) -> dict:
    for path in mems:
        rom = path[len(f"mem/{name}_"):-len(".mem")]
        params[f"{rom.upper()}_FILE"] = path
    return {"params": params, "mems": mems, "out_bits": params["OUT_D"], "folds": -(-params["O"] // params["PE"]),
            "positions": positions}


def check_logits_last(net: ir.QuantizedNet) -> None:
    """The last layer gives the logits: a weighted layer without ReLU."""
    last = net.layers[-1]
    if not ir.OPS[last["op"]].weighted or last["relu"]:
        raise BmhwError("the last layer must be the logits layer (no ReLU); re-create the .bmq with bmhw quantize")


def logits_signed(layer: dict) -> bool:
    """The logits (no ReLU) are signed; requantized codes are not."""
    return not layer["relu"]
