"""Bounds on a model config, checked before a model is built: a damaged or hostile checkpoint (or ONNX graph)
must not make bmhw allocate gigabytes for layers no network of this toolkit has.

Each size of ``config["args"]`` must be an integer in a range generous for every shipped and tested network
(the example LeNets have up to 256 units in a layer, ResNet-22 256 channels), and the network as a whole at
most :data:`MAX_WEIGHTS` weights, counted on the classical network of the same sizes built on PyTorch's
``meta`` device (shapes without memory).
"""

from __future__ import annotations

import torch

from bmhw.errors import BmhwError

# field -> (smallest, largest). input_size: two 5x5 convolutions and two 2x2 pools need 16 pixels.
LIMITS = {"widths": (1, 4096), "in_channels": (1, 256), "input_size": (16, 1024), "num_classes": (1, 10_000),
          "blocks": (1, 16)}
# How many widths a config may list: LeNet has 4, ResNet-22 one per stage (3).
MAX_STAGES = 8
# About 64 million: ResNet-22 has 3.3 million weights; 4-branch BM layers double a count, still a few hundred MB.
MAX_WEIGHTS = 2 ** 26


def _check_int(field: str, value, limits: dict = LIMITS) -> None:
    low, high = limits[field.split("[")[0]]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BmhwError(f"model config field args.{field} = {value!r} is outside the allowed range {low}..{high} "
                        "(an integer)")


def check_args(arch: str, args: dict, cls) -> None:
    """Refuse ``args`` of architecture ``arch`` (class ``cls``) with a size out of range or too many weights in all.
    Fields the class does not take are left to its constructor (a one-line error in :func:`bmhw.models.build`)."""
    if not isinstance(args, dict):
        raise BmhwError(f"model config field args is {type(args).__name__}, not a mapping of sizes")
    limits = {**LIMITS, **getattr(cls, "SIZE_LIMITS", {})}  # a class may widen a range (a CNN takes small images)
    for field, value in args.items():
        if field == "widths":
            if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_STAGES:
                raise BmhwError(f"model config field args.widths = {value!r} is not a list of 1..{MAX_STAGES} widths")
            for index, width in enumerate(value):
                _check_int(f"widths[{index}]", width)
        elif field in limits:
            _check_int(field, value, limits)
    with torch.device("meta"):  # the classical twin: only shapes, no memory, whatever the sizes
        weights = sum(p.numel() for p in cls(**args).parameters())
    if weights > MAX_WEIGHTS:
        sizes = ", ".join(f"{k}={v}" for k, v in args.items())
        raise BmhwError(f"model config asks for a {arch} of {weights:,} weights ({sizes}); bmhw builds networks of at "
                        f"most {MAX_WEIGHTS:,}")
