"""The analytical hardware cost of a quantized network as five kinds of neuron (docs/gates.md, "Layers").

Every kind is costed on the same architecture as the exported Verilog (bmhw.backends.verilog): per BM
layer, PE processing elements (the --pe knob) working on PE output channels at once, and a serial output
stage shared by them. What differs is the PE and the per-layer tables and arithmetic:

* ``bm15``: the exported 1.5-branch datapath at the widths of the IR (add, compare, select per PE; ln,
  exp, weight and bias tables; exp shift, correction, requantization); a layer with several maxima per output
  as its ``bmhw_bm_group_layer`` (a maximum per sign, the exp units, the D accumulators);
* ``bm4``: the 4-branch neuron: four add-max PEs per output channel (x+/-, w+/-), two ln tables, two
  weight planes, three additions of the four exponentials, no correction;
* ``mac``: classical integer multiply-accumulate with the same activation codes and ``weight_bits``-bit
  weights, requantized by a 16-bit fixed-point multiplier; or, given the MAC twin (a classical network
  quantized by bmhw), exactly the twin's exported datapath: its widths and its shift requantization;
* ``addernet``: ``-sum |x - w|``: subtract, absolute value, accumulate (same weights, same requantization);
* ``xnor``: binarized activations and weights: XNOR and popcount, a threshold per output.

A binarised BiSE network (bmhw_bise_layer) and an AdderNet network are costed as exported, with their own
kind only (``bise``, ``addernet``).

Buffers between layers and the control are the same for every kind and are left out. Energy counts the
arithmetic of one inference (every add-max step, multiply-accumulate, ...), not memory traffic.
NumPy only, never torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bmhw import ir
from bmhw.backends import verilog
from bmhw.backends.verilog import adder as verilog_adder
from bmhw.backends.verilog import bise as verilog_bise
from bmhw.backends.verilog import bm as verilog_bm
from bmhw.backends.verilog import mac as verilog_mac
from bmhw.backends.verilog.common import address_width
from bmhw.ir.groups import is_grouped
from bmhw.cost.units import (Cost, absolute, add_energy_pj, adder, comparator, incrementer, mul_energy_pj,
                             multiplier, mux, register, rom, shifter)

KINDS = ("mac", "bm4", "bm15", "addernet", "xnor")
KIND_NAMES = {"mac": "classical MAC", "bm4": "BM 4-branch", "bm15": "BM 1.5-branch", "addernet": "AdderNet",
              "xnor": "XNOR-popcount"}
REQUANT_SCALE_BITS = 16  # fixed-point scale of the integer kinds' requantization


@dataclass
class LayerCost:
    layer: str
    kind: str
    pe: int
    cost: Cost  # the datapath of the layer: PEs (with their hold registers), shared arithmetic, tables
    pe_cost: Cost  # one PE, as the Verilog PE module (without its hold register)
    energy_pj: float  # arithmetic energy of one inference through the layer
    steps: int  # add-max (or multiply-accumulate) steps per inference


def _bits(n: int) -> int:
    return max(1, math.ceil(math.log2(max(2, n))))


def mac_accumulator_bits(a: int, weight_bits: int, k: int) -> int:
    """The MAC accumulator: a signed (a + 1) x weight_bits product summed k times."""
    return a + 1 + weight_bits + _bits(k)


def hold_register(bits: int) -> Cost:
    """The register that keeps a PE's result while the PE starts its next fold."""
    return register(int(bits))


def _requantize_int(acc_w: int, a: int) -> Cost:
    """acc * scale >> shift, rounded and clamped: one shared multiplier, an adder and the clamp."""
    return multiplier(acc_w, REQUANT_SCALE_BITS) + adder(acc_w + REQUANT_SCALE_BITS) + mux(a) * 2


def check_twin(net: ir.QuantizedNet, twin: ir.QuantizedNet) -> None:
    """``twin`` must be a MAC network with the BM network's layers, shapes and activation widths."""
    from bmhw.errors import BmhwError

    if not twin.is_mac:
        raise BmhwError("the twin must be a classical network (a classical checkpoint or its .bmq), not a BM one")
    if len(twin.layers) != len(net.layers):
        raise BmhwError(f"the twin has {len(twin.layers)} layers, the BM network {len(net.layers)}: give the "
                        "classical network of the same architecture")
    for bm, mac in zip(net.layers, twin.layers):
        ops_match = bm["op"].replace("bm_", "mac_") == mac["op"]
        keys = ("in_shape", "out_shape", "kernel", "stride", "padding")
        if not ops_match or any(bm.get(k) != mac.get(k) for k in keys):
            raise BmhwError(f"layer {bm['name']}: the twin's layer {mac['name']} ({mac['op']} {mac['out_shape']}) does "
                            f"not match ({bm['op']} {bm['out_shape']}): give the classical network of the same "
                            "architecture")
        if bm["op"] in ir.BM_OPS and bm["widths"]["q_in"] != mac["widths"]["q_in"]:
            raise BmhwError(f"layer {bm['name']}: the twin's input codes are {mac['widths']['q_in']} bits, the BM "
                            f"network's {bm['widths']['q_in']}: quantize both with the same --act-bits")


def _mac_twin_costs(twin: ir.QuantizedNet, layer: dict, name: str, pe: int, positions: int, folds: int):
    """The MAC kind at the exported twin's own widths: its PE, tables and shift requantization."""
    p = verilog_mac.plan(twin, layer, name, pe)["params"]
    k, acc, y_w = int(layer["fan_in"]), int(p["ACC_W"]), int(p["Y_W"])
    mac = multiplier(int(p["Q_W"]) + 1, int(p["WT_W"])) + adder(acc) + register(acc)
    requant = adder(int(p["YR_W"])) + mux(int(p["OUT_D"])) * 2 if layer["relu"] else Cost()
    shared = rom(folds * k, pe * int(p["WT_W"])) + rom(folds * pe, int(p["B_W"])) + adder(y_w) + register(y_w) \
        + requant
    steps, outputs = positions * int(layer["out_count"]) * k, positions * int(layer["out_count"])
    energy = steps * (mul_energy_pj(int(p["Q_W"]) + 1, int(p["WT_W"])) + add_energy_pj(acc)) \
        + outputs * 2 * add_energy_pj(y_w)
    return LayerCost(name, "mac", pe, (mac + hold_register(acc)) * pe + shared, mac, energy, steps)


def exp_shifter(p: dict) -> Cost:
    """bmhw_exp_shift's shifter: the table entry, widened by the span of shifts that can give a non-zero E."""
    span = verilog_bm.exp_shift_span(p)
    return shifter(int(p["EXP_W"]) + span, span)


def grouped_bm15_cost(layer: dict, name: str, pe: int, p: dict, correction: Cost, requant: Cost) -> LayerCost:
    """The ``bm15`` kind of a layer with several maxima per output (bmhw_bm_group_layer, docs/gates.md): per PE the
    add-max PE with one running maximum per sign (a valid bit each; one maximum and its sign bit where every group
    is one input), its pairs' hold register, its D in the cluster's ring and the drain's hold of D; per exp unit
    (CLUSTERS x LPC) the exp table, the shift, the rounding and the signed term (E or ~E, masked: -E's carry goes
    into the cluster's adder); per cluster the one D adder (with the pair sum where LPC = 2), its operand select
    (running sum, ring head, restart) and running sum; shared: the ln, weight (with the sign bits), group-end, window
    and bias tables, the correction, Y and the requantization, and the delay line that carries a fold's tags to its
    complete D."""
    k, o, folds = int(layer["fan_in"]), int(layer["out_count"]), -(-int(layer["out_count"]) // pe)
    positions = int(p["OUT_H"]) * int(p["OUT_W"])
    m_w, e_w, d_w, y_w, spe = (int(p[key]) for key in ("M_W", "E_W", "D_W", "Y_W", "SPE"))
    best = comparator(m_w) + mux(m_w) + register(m_w)
    if p["MERGE"]:
        unit = adder(m_w) + register(m_w) + register(1)
    else:
        unit = adder(m_w) + best * spe + (register(2) if p["SPLIT"] else Cost())
    per_pe = register(spe * (m_w + 2)) + register(d_w) + hold_register(d_w)
    exp_unit = rom(1 << int(p["F"]), int(p["EXP_W"])) + exp_shifter(p) + adder(e_w) + mux(d_w)
    cluster = adder(d_w) * int(p["LPC"]) + mux(d_w) * 2 + (register(d_w) if spe // int(p["LPC"]) == 2 else Cost())
    delay = register((int(p["ROWS"]) + 5) * (1 + int(p["OUT_AW"]) + address_width(folds * pe) + int(p["C_W"])))
    word = pe * int(p["WT_W"]) + (pe if p["SPLIT"] else 0)
    shared = rom(1 << int(p["Q_W"]), int(p["LN_W"])) + rom(folds * k, word) + rom(k, 1) + rom(k, int(p["LN_W"])) \
        + rom(folds * pe, int(p["B_W"])) + correction + adder(y_w) * 2 + register(y_w) + requant + delay
    steps, outputs = positions * o * k, positions * o
    terms = outputs * int(layer.get("groups", 1)) * spe  # exp conversions and accumulations, empty pairs included
    energy = steps * 2 * add_energy_pj(m_w) + terms * (add_energy_pj(e_w) + add_energy_pj(d_w)) \
        + outputs * 2 * add_energy_pj(y_w) + positions * k * add_energy_pj(int(p["S_W"]))
    units = int(p["CLUSTERS"]) * int(p["LPC"])
    return LayerCost(name, "bm15", pe, (unit + per_pe) * pe + exp_unit * units + cluster * int(p["CLUSTERS"]) + shared,
                     unit, energy, steps)


def layer_costs(net: ir.QuantizedNet, layer: dict, name: str, pe: int, weight_bits: int = 8,
                twin: ir.QuantizedNet | None = None) -> dict:
    """``kind -> LayerCost`` for one BM layer of the IR with ``pe`` PEs; with ``twin`` (the MAC twin), the MAC
    kind is costed at the twin's widths and requantization rather than at ``weight_bits``."""
    p = verilog_bm.plan(net, layer, name, pe)["params"]
    k, o = int(layer["fan_in"]), int(layer["out_count"])
    positions = int(p["OUT_H"]) * int(p["OUT_W"])
    folds = -(-o // pe)
    a = int(p["Q_W"])  # activation code bits, the same for every kind
    out_bits = int(p["OUT_D"])
    steps, outputs = positions * o * k, positions * o
    m_w, e_w, y_w = int(p["M_W"]), int(p["E_W"]), int(p["Y_W"])
    add_max = adder(m_w) + comparator(m_w) + mux(m_w) + register(m_w)
    hold = hold_register(m_w)
    requant_bm = adder(int(p["YR_W"])) + mux(out_bits) * 2 if layer["relu"] else Cost()
    exp_stage = rom(1 << int(p["F"]), int(p["EXP_W"])) + exp_shifter(p) \
        + adder(e_w) + rom(folds * pe, int(p["B_W"]))
    costs = {}

    # 1.5 branches: the exported datapath.
    csum_terms = max(1, bin(int(p["CSUM"])).count("1"))
    correction = adder(int(p["SC_W"])) * (csum_terms - 1) + adder(int(p["C_W"])) \
        + adder(int(p["S_W"])) + register(int(p["S_W"]))
    shared = rom(1 << a, int(p["LN_W"])) + rom(folds * k, pe * int(p["WT_W"])) + rom(k, int(p["LN_W"])) \
        + exp_stage + correction + adder(y_w) * 2 + register(y_w) + requant_bm
    energy = steps * 2 * add_energy_pj(m_w) + outputs * (add_energy_pj(e_w) + 2 * add_energy_pj(y_w)) \
        + positions * k * add_energy_pj(int(p["S_W"]))
    costs["bm15"] = LayerCost(name, "bm15", pe, (add_max + hold) * pe + shared, add_max, energy, steps)
    if is_grouped(layer):  # several maxima per output: bmhw_bm_group_layer as exported
        costs["bm15"] = grouped_bm15_cost(layer, name, pe, p, correction, requant_bm)

    # 4 branches: four add-max PEs per output channel, two ln tables and weight planes, no correction.
    shared = rom(1 << a, int(p["LN_W"])) * 2 + rom(folds * k, pe * 2 * int(p["WT_W"])) \
        + rom(k, 2 * int(p["LN_W"])) + exp_stage + adder(y_w) * 3 + register(y_w) + requant_bm
    energy = steps * 4 * 2 * add_energy_pj(m_w) + outputs * 4 * add_energy_pj(e_w) + outputs * 3 * add_energy_pj(y_w)
    costs["bm4"] = LayerCost(name, "bm4", pe, (add_max + hold) * 4 * pe + shared, add_max * 4, energy, steps)

    # Classical integer MAC: unsigned A-bit codes (a sign bit added) times signed weights.
    acc = mac_accumulator_bits(a, weight_bits, k)
    mac = multiplier(a + 1, weight_bits) + adder(acc) + register(acc)
    shared = rom(folds * k, pe * weight_bits) + rom(folds * pe, acc) + _requantize_int(acc, out_bits)
    energy = steps * (mul_energy_pj(a + 1, weight_bits) + add_energy_pj(acc)) \
        + outputs * (mul_energy_pj(acc, REQUANT_SCALE_BITS) + add_energy_pj(acc + REQUANT_SCALE_BITS))
    costs["mac"] = LayerCost(name, "mac", pe, (mac + hold_register(acc)) * pe + shared, mac, energy, steps)
    if twin is not None:
        mac_layer = twin.layers[net.layers.index(layer)]
        costs["mac"] = _mac_twin_costs(twin, mac_layer, name, pe, positions, folds)

    # AdderNet: |x - w| accumulated.
    diff = max(a, weight_bits) + 1
    acc = diff + _bits(k)
    unit = adder(diff) + absolute(diff) + adder(acc) + register(acc)
    shared = rom(folds * k, pe * weight_bits) + rom(folds * pe, acc) + _requantize_int(acc, out_bits)
    energy = steps * (2 * add_energy_pj(diff) + add_energy_pj(acc)) \
        + outputs * (mul_energy_pj(acc, REQUANT_SCALE_BITS) + add_energy_pj(acc + REQUANT_SCALE_BITS))
    costs["addernet"] = LayerCost(name, "addernet", pe, (unit + hold_register(acc)) * pe + shared, unit, energy,
                                  steps)

    # XNOR-popcount: one-bit activations and weights, a threshold per output.
    count = _bits(k + 1)
    unit = Cost(1, 0, 0, {"xnor 1b": 1}) + adder(count) + register(count)
    shared = rom(folds * k, pe) + rom(folds * pe, count) + comparator(count)
    energy = steps * (add_energy_pj(1) + add_energy_pj(count)) + outputs * add_energy_pj(count)
    costs["xnor"] = LayerCost(name, "xnor", pe, (unit + hold_register(count)) * pe + shared, unit, energy, steps)
    return costs


def adder_layer_cost(net: ir.QuantizedNet, layer: dict, name: str, pe: int) -> LayerCost:
    """The ``addernet`` kind of an AdderNet network at its exported widths (bmhw_adder_layer): per PE a
    subtractor and an absolute value at D_W bits and an accumulator (adder and register) at ACC_W bits, a hold
    register; shared by the PEs: the template, scale and bias tables, one MUL_W x (ACC_W + 1) multiplier and
    its product register, Y = B - product at Y_W bits and its register, and the requantization (the rounding
    shift by R and the clamp) of a hidden layer."""
    p = verilog_adder.plan(net, layer, name, pe)["params"]
    k, o = int(layer["fan_in"]), int(layer["out_count"])
    positions, folds = int(p["OUT_H"]) * int(p["OUT_W"]), -(-o // pe)
    d_w, acc_w, mul_w, prod_w, y_w = (int(p[key]) for key in ("D_W", "ACC_W", "MUL_W", "PROD_W", "Y_W"))
    unit = adder(d_w) + absolute(d_w) + adder(acc_w) + register(acc_w)
    requant = adder(int(p["YR_W"])) + mux(int(p["OUT_D"])) * 2 if layer["relu"] else Cost()
    shared = rom(folds * k, pe * int(p["WT_W"])) + rom(folds * pe, mul_w) + rom(folds * pe, int(p["B_W"])) \
        + multiplier(acc_w + 1, mul_w) + register(prod_w) + adder(y_w) + register(y_w) + requant
    steps, outputs = positions * o * k, positions * o
    energy = steps * (2 * add_energy_pj(d_w) + add_energy_pj(acc_w)) \
        + outputs * (mul_energy_pj(acc_w + 1, mul_w) + add_energy_pj(y_w))
    return LayerCost(name, "addernet", pe, (unit + hold_register(acc_w)) * pe + shared, unit, energy, steps)


def adder_network_costs(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """One ``{"addernet": LayerCost}`` per adder layer of an AdderNet network, at the export's PE counts."""
    pes = verilog.layer_pes(net, pe, pe_layers)
    return [{"addernet": adder_layer_cost(net, layer, name, layer_pe)}
            for layer, name, layer_pe in zip(net.layers, verilog.layer_names(net), pes) if layer_pe is not None]


def bise_layer_cost(net: ir.QuantizedNet, layer: dict, name: str, pe: int) -> LayerCost:
    """The ``bise`` kind of a binarised BiSE network at its exported widths (bmhw_bise_layer): per PE the
    literal (one XOR, one AND) and a popcount counter (a half-adder chain and a register) at ACC_W bits, a
    hold register; shared by the PEs: the SE / NEG table (two bits per PE and step), for a hidden layer the
    threshold table, one ACC_W-bit comparison and its output bit register, for the scores layer nothing more;
    the first layer also binarises its input (an 8-bit comparison with the threshold)."""
    p = verilog_bise.plan(net, layer, name, pe, verilog_bise.input_threshold(net, layer))["params"]
    k, o = int(layer["fan_in"]), int(layer["out_count"])
    positions, folds = int(p["OUT_H"]) * int(p["OUT_W"]), -(-o // pe)
    acc_w = int(p["ACC_W"])
    unit = Cost(2, 0, 0, {"xor 1b": 1, "and 1b": 1}) + incrementer(acc_w) + register(acc_w)
    shared = rom(folds * k, pe * 2)
    if not layer["scores"]:
        shared = shared + rom(folds * pe, acc_w) + comparator(acc_w) + register(1)
    if p["BINARIZE"]:
        shared = shared + comparator(int(p["Q_W"]))
    steps, outputs = positions * o * k, positions * o
    energy = steps * (2 * add_energy_pj(1) + add_energy_pj(acc_w)) \
        + (0 if layer["scores"] else outputs * add_energy_pj(acc_w))
    return LayerCost(name, "bise", pe, (unit + hold_register(acc_w)) * pe + shared, unit, energy, steps)


def bise_network_costs(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None) -> list:
    """One ``{"bise": LayerCost}`` per BiSE layer of a binarised BiSE network, at the export's PE counts."""
    pes = verilog.layer_pes(net, pe, pe_layers)
    return [{"bise": bise_layer_cost(net, layer, name, layer_pe)}
            for layer, name, layer_pe in zip(net.layers, verilog.layer_names(net), pes) if layer_pe is not None]


def network_costs(net: ir.QuantizedNet, pe: int = 1, pe_layers: dict | None = None, weight_bits: int = 8,
                  twin: ir.QuantizedNet | None = None) -> list:
    """One ``{kind: LayerCost}`` per BM layer, in order, with the PE counts of the Verilog export (the MAC kind
    at the MAC twin's widths when ``twin`` is given)."""
    if int(weight_bits) < 2:
        raise ValueError(f"weight_bits must be at least 2, got {weight_bits}")
    if twin is not None:
        check_twin(net, twin)
    pes = verilog.layer_pes(net, pe, pe_layers)
    return [layer_costs(net, layer, name, layer_pe, weight_bits, twin)
            for layer, name, layer_pe in zip(net.layers, verilog.layer_names(net), pes) if layer_pe is not None]


def totals(rows: list) -> dict:
    """``kind -> (Cost, energy in pJ)`` summed over the layers."""
    out = {}
    for kind in KINDS + tuple(kind for kind in (rows[0] if rows else {}) if kind not in KINDS):
        if rows and kind not in rows[0]:  # an AdderNet network has its own kind only
            continue
        cost, energy = Cost(), 0.0
        for row in rows:
            cost = cost + row[kind].cost
            energy += row[kind].energy_pj
        out[kind] = (cost, energy)
    return out
