"""One entry point from a checkpoint to the IR: the family its neurons quantize to (the vocabulary of
``bmhw.ir.ops``), then that family's quantizer, one module each (``quantize`` BM, ``classical`` the MAC twin,
``adder``, ``bise``). A new family adds its module and one entry in ``QUANTIZERS``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from bmhw import ir
from bmhw.nn.adder import _AdderNeuron
from bmhw.nn.layers import _BMNeuron
from bmhw.quant.quantize import check_structure


def _calibrated(calibration: Callable, meta: dict) -> tuple:
    record = calibration()
    return record, {**meta, "calibration": record.source}


def _bm(model, images: Callable, options: dict, meta: dict):
    from bmhw.quant.quantize import quantize

    check_structure(model, _BMNeuron)
    keys = ("act_bits", "log_frac_bits", "exp_frac_bits", "guard_bits", "log_weight_bits")
    data, meta = _calibrated(images, meta)
    return quantize(model, data, **{k: options[k] for k in keys if k in options}, meta=meta)


def _mac(model, images: Callable, options: dict, meta: dict):
    from bmhw.quant.classical import quantize_classical

    keys = ("act_bits", "weight_bits")
    check_structure(model, (nn.Conv2d, nn.Linear))
    data, meta = _calibrated(images, meta)
    return quantize_classical(model, data, **{k: options[k] for k in keys if k in options}, meta=meta)


def _adder(model, images: Callable, options: dict, meta: dict):
    from bmhw.quant.adder import check_scale_bits, quantize_adder  # docs/datapath.md, "The adder layer"

    scale_bits = check_scale_bits(options.get("scale_bits", 16))
    check_structure(model, _AdderNeuron)
    data, meta = _calibrated(images, meta)
    return quantize_adder(model, data, act_bits=options.get("act_bits", 8), scale_bits=scale_bits, meta=meta)


def _bise(model, images: Callable, options: dict, meta: dict):
    from bmhw.quant.bise import quantize_bise  # binarised: no calibration (docs/datapath.md, "The BiSE layer")

    return quantize_bise(model, meta=meta)


# The quantizer of each family, by family key: quantizer(model, calibration, options, meta), where calibration()
# gives the activation ranges (a bmhw.quant.calibration.Calibration), called by the families that calibrate.
QUANTIZERS = {"bm": _bm, "mac": _mac, "adder": _adder, "bise": _bise}


def checkpoint_family(config: dict) -> str:
    """The family a checkpoint quantizes to, from its layers' neurons: BiSE or AdderNet if any layer is one, the
    MAC twin if every layer is classical, else BM (whose quantizer refuses what it cannot take, e.g. bm4)."""
    neurons = {spec["neuron"] for spec in config["layers"].values()}
    for key in ("bise", "adder"):
        if neurons & set(ir.FAMILIES[key].neurons):
            return key
    return "mac" if neurons <= set(ir.FAMILIES["mac"].neurons) else "bm"


def quantize_checkpoint(ckpt, images: Callable, options: dict, meta: dict) -> ir.QuantizedNet:
    """The IR of a loaded checkpoint (``bmhw.models.checkpoint``); ``options``: act_bits, log_frac_bits,
    exp_frac_bits, guard_bits (BM), weight_bits (MAC), scale_bits (adder); ``images``: called for the
    calibration (a ``Calibration``) only by the families that calibrate."""
    return QUANTIZERS[checkpoint_family(ckpt.config)](ckpt.model, images, options, meta)
