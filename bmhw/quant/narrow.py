"""Narrower memories: the fewest log-domain bits per BM layer that keep the integer network as accurate as the float one.

The log-weight table is most of a BM network's memory (44,190 of the LeNet's entries), and its width is set by two
choices per layer (docs/datapath.md, "Narrower memories"): ``F``, the log domain's fraction bits (its precision,
which also sizes the exp table, 2^F entries), and ``b``, the stored width (``2^b`` codes below the layer's largest
log-weight are kept; smaller weights are raised to the smallest kept). ``fit`` searches them per layer on labelled
*training* images: starting from a wide setting it lowers ``b``, then ``F`` and ``b`` together (the same range in
octaves at one bit less), layer by layer from the largest table to the smallest, keeping every step after which the
integer network's accuracy on those images stays within ``tolerance`` of the float network's (or of its own at the
start, where that is lower), and its agreement with the float network's predictions within ``agreement`` of the
agreement it started from. The result travels in
the checkpoint (``LogWidths``, key ``log_widths``; ``bmhw calibrate --fit-log-widths``) so that ``bmhw quantize`` and
``bmhw export`` use it; a checkpoint without it gets the measured default below.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bmhw.errors import BmhwError

METADATA_KEY = "log_widths"
FORMAT = 1
# The default of a checkpoint without a fitted record, measured on the shipped BM examples (docs/results/narrow.md):
# F = 4 and a range of 16 octaves below each layer's largest log-weight (b = F + 4 = 8 bits) lose nothing on the one-max
# LeNet and 0.03 points on the LeNet with several maxima against F = 10 and every log-weight kept (16 bits).
DEFAULT_LOG_FRAC_BITS = 4
DEFAULT_OCTAVE_BITS = 4  # b = F + 4: 2^4 = 16 octaves of weight magnitudes
DEFAULT_TOLERANCE = 0.0002  # a fraction: 0.02 points (2 of 10,000 images); 0.05 lost 0.13 points on test images
START_FRAC_BITS = 5  # the search starts here: F = 5 is within 0.01 points of F = 10 on the examples
MIN_FRAC_BITS = 1  # the Verilog blocks need F >= 1


@dataclass(frozen=True)
class LogWidths:
    """Per BM layer name: ``log_frac_bits`` (F) and ``log_weight_bits`` (b), with how they were chosen."""

    log_frac_bits: dict
    log_weight_bits: dict
    images: int
    source: str
    float_accuracy: float
    integer_accuracy: float

    def to_metadata(self) -> dict:
        return {"format": FORMAT, "log_frac_bits": {k: int(v) for k, v in self.log_frac_bits.items()},
                "log_weight_bits": {k: int(v) for k, v in self.log_weight_bits.items()}, "images": int(self.images),
                "source": str(self.source), "float_accuracy": float(self.float_accuracy),
                "integer_accuracy": float(self.integer_accuracy)}

    @classmethod
    def from_metadata(cls, entry, where: str) -> "LogWidths":
        """The record of a checkpoint's metadata, checked: F in [1, 20] and b in [1, 30] for the same layers."""
        try:
            frac = {str(k): v for k, v in entry["log_frac_bits"].items()}
            bits = {str(k): v for k, v in entry["log_weight_bits"].items()}
            ok = (entry["format"] == FORMAT and set(frac) == set(bits) and bool(frac)
                  and all(type(v) is int and MIN_FRAC_BITS <= v <= 20 for v in frac.values())
                  and all(type(v) is int and 1 <= v <= 30 for v in bits.values()))
            record = cls(frac, bits, int(entry["images"]), str(entry["source"]), float(entry["float_accuracy"]),
                         float(entry["integer_accuracy"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise BmhwError(f"{where} has a damaged log_widths record; fit it again with bmhw calibrate {where} "
                            "--data DIR --fit-log-widths")
        return record


def of_checkpoint(metadata: dict, where: str) -> LogWidths | None:
    """The log widths recorded in a checkpoint's metadata, or None."""
    entry = (metadata or {}).get(METADATA_KEY)
    return None if entry is None else LogWidths.from_metadata(entry, where)


def table_bits(net) -> int:
    """The bits of a BM network's stored tables at their proven widths (sign tables 1 bit per entry)."""
    from bmhw.ir.intmath import width

    total = 0
    for layer in net.bm_layers():
        for table in ("ln_lut", "log_weights", "exp_lut", "bias", "sign", "weight_sign"):
            values = net.arrays.get(f"{layer['name']}/{table}")
            if values is not None:
                total += values.size * (1 if "sign" in table else width(int(values.min()), int(values.max())))
    return total


def fit(model, calibration, images: np.ndarray, labels: np.ndarray, source: str, tolerance: float = DEFAULT_TOLERANCE,
        agreement: float = DEFAULT_TOLERANCE,
        quant_options: dict | None = None, report: Callable[[str], None] = lambda line: None) -> LogWidths:
    """The narrowest F and b per BM layer of ``model`` (quantized with ``calibration``) whose integer accuracy on the
    labelled ``images`` stays at least the float model's minus ``tolerance`` and whose agreement with the float
    predictions falls by at most ``agreement`` (fractions); ``report`` gets one line per trial."""
    from bmhw import golden
    from bmhw.quant.quantize import quantize
    from bmhw.train.loop import predict

    options = dict(quant_options or {})
    float_pred = predict(model, images)
    float_acc = float((float_pred == labels).mean())
    names = [layer["name"] for layer in quantize(model, calibration, **options).bm_layers()]
    frac = {name: START_FRAC_BITS for name in names}
    bits = {name: None for name in names}  # None: every log-weight kept (the full width)
    inputs: dict = {}  # the input codes of each layer under the accepted setting: a trial reruns only what it changes

    def trial(trial_frac, trial_bits, start: str | None = None) -> tuple[tuple, object, dict]:
        """(accuracy, agreement with the float predictions), the network and the layer inputs it computed."""
        net = quantize(model, calibration, **options, log_frac_bits=trial_frac, log_weight_bits=trial_bits)
        first = 0 if start is None else next(i for i, layer in enumerate(net.layers) if layer["name"] == start)
        h, seen = (images.astype(np.int64) if start is None else inputs[start]), {}
        for layer in net.layers[first:]:
            seen[layer["name"]] = h
            h = golden.KERNELS[layer["op"]](net, layer, h)
        pred = h.argmax(axis=1)
        return (float((pred == labels).mean()), float((pred == float_pred).mean())), net, seen

    start = time.perf_counter()
    (acc, agree), net, seen = trial(frac, bits)
    inputs.update(seen)
    report(f"float {100 * float_acc:.2f}%, integer at F = {START_FRAC_BITS} with every log-weight kept {100 * acc:.2f}%, "
           f"the float class on {100 * agree:.2f}% ({table_bits(net):,} table bits)")
    # A step is kept when neither the accuracy (from the float network's, or the start's where that is lower) nor the
    # agreement with the float predictions falls by more than the tolerance from where the search started: the
    # agreement sees the flips that happen to cancel in the accuracy.
    floor_acc, floor_agree = min(acc, float_acc) - tolerance, agree - agreement
    for name in sorted(names, key=lambda n: -net.table(_layer(net, n), "log_weights").size):
        bits[name] = int(_layer(net, name)["widths"]["W"])
        for step in ("b", "F and b"):
            while bits[name] > 1 and (step == "b" or frac[name] > MIN_FRAC_BITS):
                trial_frac, trial_bits = dict(frac), dict(bits)
                trial_bits[name] -= 1
                if step != "b":
                    trial_frac[name] -= 1
                (trial_acc, trial_agree), trial_net, seen = trial(trial_frac, trial_bits, name)
                kept = trial_acc >= floor_acc and trial_agree >= floor_agree
                report(f"{name}: F = {trial_frac[name]}, b = {trial_bits[name]}: {100 * trial_acc:.2f}%, float class "
                       f"on {100 * trial_agree:.2f}% ({'kept' if kept else 'too low'}, "
                       f"{time.perf_counter() - start:.0f} s)")
                if not kept:
                    break
                frac, bits, acc, net = trial_frac, trial_bits, trial_acc, trial_net
                inputs.update(seen)
    report(f"done: {table_bits(net):,} table bits, integer {100 * acc:.2f}% on these images")
    return LogWidths(frac, bits, len(images), source, float_acc, acc)


def _layer(net, name: str) -> dict:
    return next(layer for layer in net.layers if layer["name"] == name)
