"""The quantizer's tables and constants recomputed from their definitions in docs/datapath.md.

For every BM layer of a quantized network, each table entry is ``rnd(z)`` of a real ``z`` that the
spec defines from the float model (``v``, ``b``, ``delta_x``, ``delta_w``) and the layer's scales and
precisions. Here ``z`` is computed independently: exactly with ``fractions`` where it is rational
(``CSUM``), otherwise with ``decimal`` at 60 significant digits (``ln``, ``exp``, division by ``ln 2``),
which is the real value to far more digits than a float64 holds. ``rnd(z) = floor(z + 1/2)`` must
equal the IR's entry exactly; the only tolerance is for a ``z`` within 1e-9 of a rounding tie, where
a correct float64 computation may legitimately land on either side (counted, and such a case is
reported in the message of any other failure).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from conftest import build_sequential, draw_layers

PREC = 60
TIE_TOLERANCE = Decimal("1e-9")


# --- real numbers, to 60 digits -------------------------------------------------------------------


def dec(x) -> Decimal:
    """A float (exact binary value), int or Fraction as a Decimal."""
    if isinstance(x, Fraction):
        return Decimal(x.numerator) / Decimal(x.denominator)
    return Decimal(x)


def ln2() -> Decimal:
    return Decimal(2).ln()


def pow2(n: int) -> Decimal:
    return Decimal(2) ** n


def rnd_decimal(z: Decimal) -> int:
    """rnd(z) = floor(z + 1/2)."""
    return int((z + Decimal("0.5")).to_integral_value(rounding="ROUND_FLOOR"))


def rnd_fraction(z: Fraction) -> int:
    return math.floor(z + Fraction(1, 2))


def check_entry(actual: int, z: Decimal, what: str) -> bool:
    """IR entry == rnd(z); near a tie, either neighbour is accepted. Returns whether it was a tie."""
    expected = rnd_decimal(z)
    if actual == expected:
        return False
    tie = z - (z.to_integral_value(rounding="ROUND_FLOOR") + Decimal("0.5"))
    assert abs(tie) < TIE_TOLERANCE and abs(actual - expected) == 1, (
        f"{what}: IR {actual}, spec rnd({z:.15f}) = {expected}")
    return True


# --- networks --------------------------------------------------------------------------------------




def sequential_stages(model: nn.Sequential, x: torch.Tensor):
    """[(BM module, its output after ReLU and pooling, i.e. what the next weight layer sees)]."""
    from bmhw.nn import BMConv2d, BMLinear

    stages = []
    with torch.no_grad():
        for module in model:
            if isinstance(module, (BMConv2d, BMLinear)):
                stages.append([module, None])
            x = module(x)
            if stages:
                stages[-1][1] = x
    return stages


def lenet_stages(model, x: torch.Tensor):
    features = {}
    with torch.no_grad():
        model.forward_range(x, features=features)
    return [[getattr(model, name), features[name]] for name in model.WEIGHT_LAYERS]


def check_net(net, stages, act_bits: int, log_frac_bits: int, exp_frac_bits: int, guard_bits: int,
              label: str = "") -> int:
    """All tables and constants of ``net`` against the spec; returns the number of tie cases met."""
    ties = 0
    bm_layers = [layer for layer in net.layers if layer["op"] in ("bm_conv2d", "bm_linear")]
    assert len(bm_layers) == len(stages), f"{label}{len(bm_layers)} BM layers in the IR, {len(stages)} in the model"
    F, P, A = log_frac_bits, exp_frac_bits, act_bits
    in_scale = Fraction(1, 255)
    assert Fraction(*net.input_scale) == in_scale, f"{label}input scale {net.input_scale}"
    prev_e = None
    with localcontext() as ctx:
        ctx.prec = PREC
        L2 = ln2()
        for i, (layer, (module, out)) in enumerate(zip(bm_layers, stages)):
            name, last = layer["name"], i == len(bm_layers) - 1
            where = f"{label}layer {name}"
            v = module.v.detach().double().reshape(module.out_count, -1).tolist()  # float32 values, exact
            b = module.bias.detach().double().tolist()
            dx, dw = float(module.delta_x), float(module.delta_w)
            O, K = len(v), len(v[0])
            # --- constants and scales
            assert (layer["fan_in"], layer["out_count"]) == (K, O), where
            assert (layer["F"], layer["P"], layer["H"]) == (F, P, 16), f"{where}: F, P, H"
            assert layer["relu"] is (not last), f"{where}: relu"
            assert layer["delta_x"] == dx and layer["delta_w"] == dw, f"{where}: delta_x/delta_w"
            s_in = Fraction(*layer["in_scale"])
            if i == 0:
                assert s_in == in_scale and layer["in_max"] == 255, f"{where}: first layer input"
            else:
                assert s_in == Fraction(2) ** prev_e, f"{where}: in_scale {s_in} != 2^{prev_e} of the previous layer"
                assert layer["in_max"] == 2**A - 1, f"{where}: in_max"
            e_out, G = layer["out_scale_exp"], layer["G"]
            assert G == guard_bits - e_out, f"{where}: G = {G}, spec GUARD - e_out = {guard_bits - e_out}"
            assert layer["out_max"] == (None if last else 2**A - 1), f"{where}: out_max"
            # e_out: the smallest integer with 2^e * (2^A - 1) >= the calibration maximum (hidden layers)
            # (logits: 2^(A-1) - 1 in place of 2^A - 1, and the largest magnitude, as they are signed).
            # A hidden layer that is zero on the whole batch has no such integer: the spec leaves it open.
            peak = Fraction(float(out.max() if not last else out.abs().max()))
            top = 2**A - 1 if not last else 2 ** (A - 1) - 1
            if peak > 0:
                assert Fraction(2) ** e_out * top >= peak > Fraction(2) ** (e_out - 1) * top, (
                    f"{where}: e_out {e_out} for a calibration maximum {float(peak)} and {top} codes")
            prev_e = e_out
            Qin = layer["in_max"]
            # --- CSUM (rational: exact)
            assert layer["csum"] == rnd_fraction(Fraction(dw) * s_in * Fraction(2) ** (G + layer["H"])), (
                f"{where}: csum {layer['csum']}")
            # --- ln_lut
            ln_lut = net.arrays[f"{name}/ln_lut"].tolist()
            assert len(ln_lut) == Qin + 1, f"{where}: ln_lut length"
            for q in range(Qin + 1):
                z = pow2(F) * dec(s_in * q + Fraction(dx)).ln() / L2
                ties += check_entry(ln_lut[q], z, f"{where} ln_lut[{q}]")
            # --- exp_lut
            exp_lut = net.arrays[f"{name}/exp_lut"].tolist()
            assert len(exp_lut) == 2**F, f"{where}: exp_lut length"
            for r in range(2**F):
                z = pow2(P) * (L2 * r / pow2(F)).exp()
                ties += check_entry(exp_lut[r], z, f"{where} exp_lut[{r}]")
            # --- log_weights
            weights = net.arrays[f"{name}/log_weights"]
            assert weights.shape == (O, K), f"{where}: log_weights shape {weights.shape}"
            weights = weights.tolist()
            for o in range(O):
                for k in range(K):
                    z = pow2(F) * dec(v[o][k]) / L2
                    ties += check_entry(weights[o][k], z, f"{where} log_weights[{o}, {k}]")
            # --- bias
            bias = net.arrays[f"{name}/bias"].tolist()
            assert len(bias) == O, f"{where}: bias length"
            # Mirrored outputs (sign -1): y = s (E - C) + B, so B = rnd(2^G (b - s dx sum e^v)).
            signs = [int(x) for x in module.sign.tolist()]
            ir_signs = net.signs(layer)
            if all(x == 1 for x in signs):
                assert ir_signs is None, f"{where}: a sign table for an unmirrored layer"
            else:
                assert ir_signs is not None and ir_signs.tolist() == signs, f"{where}: sign table"
            for o in range(O):
                total = sum((dec(vk).exp() for vk in v[o]), Decimal(0))
                z = pow2(G) * (dec(b[o]) - signs[o] * dec(dx) * total)
                ties += check_entry(bias[o], z, f"{where} bias[{o}]")
            for table in ("ln_lut", "log_weights", "exp_lut", "bias"):
                assert net.arrays[f"{name}/{table}"].dtype == np.int64, f"{where}: {table} dtype"
    return ties


@st.composite
def net_specs(draw):
    spec = draw_layers(draw, max_side=5, max_pool=2)
    spec["act_bits"] = draw(st.integers(4, 8))
    spec["log_frac_bits"] = draw(st.integers(4, 10))
    spec["exp_frac_bits"] = draw(st.sampled_from([16, 16, 12, 20]))
    spec["guard_bits"] = draw(st.sampled_from([8, 8, 4, 12]))
    spec["calib_seed"] = draw(st.integers(0, 2**31 - 1))
    return spec


def _check_spec(spec: dict) -> None:
    from bmhw.quant import quantize

    model = build_sequential(spec)
    calib = np.random.default_rng(spec["calib_seed"]).integers(0, 256, size=(8, *spec["in"])).astype(np.uint8)
    options = {key: spec[key] for key in ("act_bits", "log_frac_bits", "exp_frac_bits", "guard_bits")}
    net = quantize(model, calib, **options)
    stages = sequential_stages(model, torch.from_numpy(calib).float() / 255)
    check_net(net, stages, label=f"spec {spec}: ", **options)


FIXED_SPECS = [
    {"seed": 0, "in": (1, 6, 6), "convs": [(3, 3, 1, 1, 2), (2, 3, 2, 0, 0)], "linears": [4, 3], "act_bits": 8,
     "log_frac_bits": 8, "exp_frac_bits": 16, "guard_bits": 8, "calib_seed": 0},
    {"seed": 5, "in": (2, 3, 3), "convs": [(1, 1, 1, 0, 0)], "linears": [1], "act_bits": 4,
     "log_frac_bits": 10, "exp_frac_bits": 20, "guard_bits": 4, "calib_seed": 1},
]


@pytest.mark.parametrize("spec", FIXED_SPECS, ids=["conv-pool-linear", "fanin-small"])
def test_fixed_random_model_tables(spec):
    _check_spec(spec)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=net_specs())
def test_random_model_tables(spec):
    _check_spec(spec)


def test_lenet_example_tables():
    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.data import load_mnist_sample
    from bmhw.quant import quantize
    from bmhw.resources import examples_dir

    images, _ = load_mnist_sample()
    model = load_checkpoint(examples_dir() / "lenet_bm15_mnist.pt").model
    calib = images[:100]
    net = quantize(model, calib)
    stages = lenet_stages(model, torch.from_numpy(calib).float() / 255)
    check_net(net, stages, act_bits=8, log_frac_bits=10, exp_frac_bits=16, guard_bits=8, label="lenet: ")
    # Hidden layers see power-of-two scales: the correction constant is a power of two (a shift).
    for layer in net.layers[1:]:
        if layer["op"] in ("bm_conv2d", "bm_linear") and layer["csum"] > 0:
            assert layer["csum"] & (layer["csum"] - 1) == 0, f"layer {layer['name']}: csum {layer['csum']}"
