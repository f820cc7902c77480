"""The op specs and families of bmhw.ir.ops: one vocabulary, and every stage has an entry for every family it
takes (a family added to the IR but forgotten in a stage fails here, not in a user's export)."""

from __future__ import annotations

import numpy as np
import pytest

from bmhw import golden, ir
from bmhw.backends.hls import layers as hls_layers
from bmhw.backends.onnx import integer as onnx_integer
from bmhw.backends.verilog import layers as verilog_layers
from bmhw.errors import BmhwError
from bmhw.ir import load_bmq, save_bmq
from random_nets import random_bise_net, random_images, random_net


def bm_net():
    from bmhw.quant import quantize

    return quantize(random_net(0), random_images(8))


def test_every_op_has_a_spec_a_family_and_a_golden_kernel():
    assert set(golden.KERNELS) == set(ir.OPS)
    for name, spec in ir.OPS.items():
        assert spec.name == name
        assert spec.family is None or spec.family in ir.FAMILIES
        # The op's name starts with its family's key: the .bmq names are the vocabulary.
        assert spec.family is None or not spec.weighted or name.startswith(spec.family + "_")
        assert spec.conv == name.endswith("conv2d")


def test_every_family_reaches_every_stage_that_takes_it():
    from bmhw.quant.checkpoint import QUANTIZERS

    families = set(ir.FAMILIES)
    assert set(QUANTIZERS) == families
    assert set(verilog_layers.FAMILY_MODULES) == families
    assert set(hls_layers.FAMILY_MODULES) == families - {"mac"}  # the MAC twin: Verilog only
    assert set(onnx_integer.NEURONS) == families - {"bise"}  # binarised: no integer ONNX graph
    for key, family in ir.FAMILIES.items():
        assert family.key == key and family.neurons and family.tables
        assert ir.ops_of(key) == (f"{key}_conv2d", f"{key}_linear")


def test_the_op_tuples_follow_the_specs():
    assert ir.BM_OPS == ("bm_conv2d", "bm_linear")
    assert ir.WEIGHT_OPS == ("bm_conv2d", "bm_linear", "mac_conv2d", "mac_linear", "adder_conv2d", "adder_linear")
    assert ir.CONV_OPS == ("bm_conv2d", "mac_conv2d", "adder_conv2d", "bise_conv2d")
    assert ir.BM_TABLES == ("ln_lut", "log_weights", "exp_lut", "bias")
    assert ir.BISE_TABLES == ("se", "op", "neg")


def test_a_network_knows_its_family():
    assert bm_net().family == "bm"
    assert random_bise_net(seed=1).family == "bise" and random_bise_net(seed=1).is_bise


def test_a_file_mixing_bm_and_bise_layers_is_refused(tmp_path):
    net = bm_net()
    last = net.layers[-1]
    last["op"], last["scores"] = "bise_linear", True
    o, k = int(last["out_count"]), int(last["fan_in"])

    net.arrays.update({f"{last['name']}/se": np.ones((o, k), np.int64), f"{last['name']}/op": np.zeros(o, np.int64),
                       f"{last['name']}/neg": np.zeros((o, k), np.int64)})
    save_bmq(net, tmp_path / "mixed.bmq")
    with pytest.raises(BmhwError, match=r"mixes BM 1.5-branch and BiSE layers; a file holds one family"):
        load_bmq(tmp_path / "mixed.bmq")


def test_an_unknown_op_is_named(tmp_path):
    net = bm_net()
    net.layers[1]["op"] = "bm_conv3d"
    save_bmq(net, tmp_path / "unknown.bmq")
    with pytest.raises(BmhwError, match=r"unknown operation 'bm_conv3d' in layer"):
        load_bmq(tmp_path / "unknown.bmq")


def test_the_family_of_a_checkpoint():
    from bmhw.quant.checkpoint import checkpoint_family

    def config(*neurons):
        return {"layers": {f"l{i}": {"neuron": n} for i, n in enumerate(neurons)}}

    assert checkpoint_family(config("classical", "classical")) == "mac"
    assert checkpoint_family(config("bm15", "classical")) == "bm"
    assert checkpoint_family(config("adder", "adder")) == "adder"
    assert checkpoint_family(config("bise", "bise")) == "bise"
    assert checkpoint_family(config("bm4")) == "bm"  # refused by the BM quantizer with its own message
