"""Network specs shared by the golden-model tests and the integer ONNX tests."""

from __future__ import annotations
from pathlib import Path
import numpy as np
from hypothesis import strategies as st
from conftest import build_sequential, draw_layers


@st.composite
def net_specs(draw):
    spec = draw_layers(draw, max_side=6, max_pool=3)
    spec["act_bits"] = draw(st.integers(4, 8))
    spec["log_frac_bits"] = draw(st.integers(4, 10))
    spec["exp_frac_bits"] = draw(st.sampled_from([16, 16, 16, 10, 12, 20, 24]))
    spec["guard_bits"] = draw(st.sampled_from([8, 8, 8, 2, 4, 12]))
    spec["calib_max"] = draw(st.sampled_from([255, 255, 128, 40, 3]))  # dim calibration: saturation later
    spec["input_seed"] = draw(st.integers(0, 2**31 - 1))
    spec["signed"] = draw(st.booleans())
    return spec


EDGE_SPECS = [
    # 1x1 spatial, one input channel, 1x1 kernel: fan-in 1 everywhere, one output channel, one logit
    {"seed": 1, "in": (1, 1, 1), "convs": [(1, 1, 1, 0, 0)], "linears": [1], "act_bits": 4, "log_frac_bits": 4,
     "calib_max": 255, "input_seed": 0},
    # stride 2 with padding, a max-pool, flatten, two linears
    {"seed": 2, "in": (2, 6, 5), "convs": [(3, 3, 2, 1, 0), (2, 1, 1, 1, 2)], "linears": [4, 3], "act_bits": 8,
     "log_frac_bits": 10, "calib_max": 255, "input_seed": 1},
    # padding larger than the image reach: whole padded patches read code 0
    {"seed": 3, "in": (1, 2, 2), "convs": [(2, 1, 2, 1, 0)], "linears": [1, 2], "act_bits": 6,
     "log_frac_bits": 7, "calib_max": 3, "input_seed": 2},
    # mirrored outputs (sign -1) in every layer
    {"seed": 4, "in": (2, 6, 5), "convs": [(4, 3, 1, 1, 2)], "linears": [5, 3], "act_bits": 8,
     "log_frac_bits": 10, "calib_max": 255, "input_seed": 3, "signed": True},
]

# Several maxima per output (docs/datapath.md, "Several maxima per neuron"): G from 1 to K, with and without the
# sign split, fan-in 1, mirrored outputs beside groups, and a dim calibration that saturates later layers.
GROUPED_SPECS = [
    # every layer one group per input, split by sign (an exact log-domain dot product), fan-in 1 in the first
    {"seed": 11, "in": (1, 1, 1), "convs": [(2, 1, 1, 0, 0)], "linears": [3, 2], "act_bits": 6, "log_frac_bits": 5,
     "calib_max": 255, "input_seed": 4, "maxima": ["Ks", "Ks", "Ks"]},
    # one max per sign (1s), several contiguous groups (3), G = K without the split
    {"seed": 12, "in": (2, 6, 5), "convs": [(3, 3, 2, 1, 0), (4, 1, 1, 1, 2)], "linears": [4, 3], "act_bits": 8,
     "log_frac_bits": 10, "calib_max": 255, "input_seed": 5, "maxima": ["1s", "3", "K", "2s"]},
    # groups beside mirrored outputs, saturation from a dim calibration, uneven group sizes (7 of 18)
    {"seed": 13, "in": (2, 5, 5), "convs": [(3, 3, 1, 1, 2)], "linears": [5, 3], "act_bits": 5, "log_frac_bits": 6,
     "calib_max": 3, "input_seed": 6, "signed": True, "maxima": ["7", "4s", "K"]},
]
GROUPED_IDS = ["Ks-fanin1", "1s-3-K-2s", "mirrored-saturating"]


@st.composite
def grouped_specs(draw):
    """A random BM network with several maxima in some of its layers (values cut to each layer's fan-in)."""
    spec = draw(net_specs())
    count = len(spec["convs"]) + len(spec["linears"])
    values = st.sampled_from(["1", "1s", "2", "2s", "3", "5s", "K", "Ks", "40"])
    spec["maxima"] = [draw(values) for _ in range(count)]
    return spec


def quantize_spec(spec: dict, folder: Path):
    from bmhw.ir import save_bmq
    from bmhw.quant import quantize

    model = build_sequential(spec, classical=spec.get("classical", False))
    rng = np.random.default_rng(spec["input_seed"])
    calib = rng.integers(0, spec["calib_max"] + 1, size=(8, *spec["in"]), dtype=np.int64).astype(np.uint8)
    if spec.get("classical"):
        from bmhw.quant import quantize_classical

        net = quantize_classical(model, calib, act_bits=spec["act_bits"], weight_bits=spec["weight_bits"])
    else:
        net = quantize(model, calib, act_bits=spec["act_bits"], log_frac_bits=spec["log_frac_bits"],
                       exp_frac_bits=spec.get("exp_frac_bits", 16), guard_bits=spec.get("guard_bits", 8))
    path = folder / "net.bmq"
    save_bmq(net, path)
    codes = np.stack([rng.integers(0, 256, size=spec["in"]),
                      rng.integers(0, 256, size=spec["in"]),
                      np.zeros(spec["in"], dtype=np.int64),
                      np.full(spec["in"], 255, dtype=np.int64)]).astype(np.int64)
    return model, net, path, codes


@st.composite
def mac_specs(draw):
    spec = draw_layers(draw, max_side=6, max_pool=3)
    spec.update(classical=True, act_bits=draw(st.integers(2, 8)), weight_bits=draw(st.integers(2, 12)),
                calib_max=draw(st.sampled_from([255, 255, 40, 3])), input_seed=draw(st.integers(0, 2**31 - 1)))
    return spec
