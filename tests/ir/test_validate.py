"""The checks of a .bmq before anything runs on it (bmhw.ir.validate, bmhw.ir.fields): each kind of damage
named in one line, and every quantizer's output passing them."""

from __future__ import annotations

import numpy as np
import pytest

from bmhw.errors import BmhwError
from bmhw.ir import load_bmq, save_bmq
from bmhw.ir.validate import proven_ranges, validate
from random_nets import random_adder_net, random_bise_net, random_images, random_net


def bm_net():
    from bmhw.quant import quantize

    return quantize(random_net(0), random_images(8))


def mac_net():
    from bmhw.nn import to_classical
    from bmhw.quant import quantize_classical

    return quantize_classical(to_classical(random_net(0)), random_images(8))


@pytest.mark.parametrize("make", [bm_net, mac_net, lambda: random_adder_net(seed=4), lambda: random_bise_net(seed=2)])
def test_every_family_as_made_passes(make, tmp_path):
    net = make()
    validate(net)
    assert load_bmq(save_bmq(net, tmp_path / "net.bmq")).layers == net.layers


def refusal(net, tmp_path) -> str:
    with pytest.raises(BmhwError) as err:
        load_bmq(save_bmq(net, tmp_path / "bad.bmq"))
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_field_out_of_range_is_named(tmp_path):
    net = bm_net()
    net.layers[0]["F"] = -3
    assert "layer '0': field 'F' is -3, expected an integer in [0, 20]" in refusal(net, tmp_path)


def test_a_missing_field_is_named(tmp_path):
    net = bm_net()
    del net.layers[-1]["G"]
    assert f"layer '{net.layers[-1]['name']}': field 'G' is missing" in refusal(net, tmp_path)


def test_a_shape_that_does_not_follow_is_named(tmp_path):
    net = bm_net()
    net.layers[0]["out_shape"] = [3, 11, 10]
    assert "field 'out_shape' is [3, 11, 10], expected [3, 10, 10]" in refusal(net, tmp_path)


def test_codes_beyond_the_next_tables_are_refused(tmp_path):
    net = bm_net()
    first = next(layer for layer in net.layers[1:] if "in_max" in layer)
    first["in_max"] += 1
    assert "field 'in_max'" in refusal(net, tmp_path)


def test_a_table_of_the_wrong_dtype_is_named(tmp_path):
    net = bm_net()
    net.arrays["0/bias"] = net.arrays["0/bias"].astype(np.int32)  # (save_bmq would write it as int64)
    with pytest.raises(BmhwError, match=r"layer '0': its 'bias' table is int32 of shape \(3,\), expected int64"):
        validate(net)


def test_a_declared_width_that_the_tables_do_not_prove_is_refused(tmp_path):
    net = bm_net()
    net.layers[0]["widths"]["T"] -= 1
    assert "signal T is declared width" in refusal(net, tmp_path)


def test_a_table_value_beyond_the_declared_range_is_refused(tmp_path):
    """A weight raised past the largest one: the proven range of W (and every sum after it) moves."""
    net = bm_net()
    net.arrays["0/log_weights"][0, 0] = int(net.arrays["0/log_weights"].max()) + 1
    assert "its tables prove" in refusal(net, tmp_path)


def test_a_negative_exp_entry_is_refused(tmp_path):
    net = bm_net()
    net.arrays["0/exp_lut"][0] = -1
    net.layers[0]["ranges"] = proven_ranges(net, net.layers[0])  # even with ranges that match the tables
    assert "negative entry in its exp table" in refusal(net, tmp_path)


def test_the_logits_come_last(tmp_path):
    net = bm_net()
    classes = net.layers[-1]["out_shape"]
    net.layers.append({"op": "flatten", "name": "again", "in_shape": classes, "out_shape": classes})
    assert "follows the logits layer" in refusal(net, tmp_path)


def test_max_pooling_at_another_stride_is_refused(tmp_path):
    net = bm_net()
    pool = next(layer for layer in net.layers if layer["op"] == "maxpool2d")
    pool["stride"] = 1
    assert f"layer '{pool['name']}': field 'stride' is 1, expected an integer in [2, 2]" in refusal(net, tmp_path)


def test_a_mirrored_layer_without_its_sign_table_is_refused(tmp_path):
    from bmhw.resources import examples_dir

    net = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    mirrored = next(layer for layer in net.layers if layer.get("mirrored"))
    del net.arrays[f"{mirrored['name']}/sign"]
    assert f"the table '{mirrored['name']}/sign.npy' is missing" in refusal(net, tmp_path)


def test_a_sign_table_beside_a_layer_declared_without_one_is_refused(tmp_path):
    net = bm_net()
    layer = net.layers[0]
    assert layer["mirrored"] is False
    net.arrays["0/sign"] = np.ones(layer["out_count"], dtype=np.int64)
    assert "unexpected" in refusal(net, tmp_path)


def grouped_net():
    """The random BM network with 2 maxima split by sign in its first layer and 3 groups in its third."""
    from bmhw.nn import BMConv2d, BMLinear
    from bmhw.quant import quantize
    from torch import nn

    model = random_net(0)
    grouped = nn.Sequential(*[
        BMConv2d(1, 3, 3, padding=1, maxima="2s") if i == 0 else BMLinear(16, 6, maxima=3) if i == 6 else m
        for i, m in enumerate(model)]).eval()
    return quantize(grouped, random_images(8))


def test_a_grouped_network_as_made_passes(tmp_path):
    net = grouped_net()
    validate(net)
    first, third = net.bm_layers()[0], net.bm_layers()[2]
    assert (first["groups"], first["split_sign"], third["groups"], third["split_sign"]) == (2, True, 3, False)
    assert "D" in first["ranges"] and "D" not in net.bm_layers()[1]["ranges"]
    assert load_bmq(save_bmq(net, tmp_path / "net.bmq")).layers == net.layers


@pytest.mark.parametrize("groups, message", [(0, "expected an integer in [1, 9]"), (10, "expected an integer in [1, 9]"),
                                             ("2", "expected an integer in [1, 9]")])
def test_a_group_count_beyond_the_fan_in_is_refused(tmp_path, groups, message):
    net = grouped_net()
    net.layers[0]["groups"] = groups
    assert message in refusal(net, tmp_path)


def test_a_weight_sign_that_is_not_plus_or_minus_one_is_refused(tmp_path):
    net = grouped_net()
    net.arrays["0/weight_sign"] = net.arrays["0/weight_sign"].copy()
    net.arrays["0/weight_sign"][1, 2] = 0
    assert "weight_sign table that is not one +1 or -1 per weight" in refusal(net, tmp_path)


def test_a_split_layer_without_its_weight_sign_is_refused(tmp_path):
    net = grouped_net()
    del net.arrays["0/weight_sign"]
    assert "weight_sign" in refusal(net, tmp_path)


def test_a_weight_sign_beside_a_layer_without_the_split_is_refused(tmp_path):
    net = grouped_net()
    net.layers[0]["split_sign"] = False
    assert "weight_sign" in refusal(net, tmp_path)


def test_a_group_sum_range_that_the_tables_do_not_prove_is_refused(tmp_path):
    net = grouped_net()
    lo, hi = net.layers[0]["ranges"]["D"]
    net.layers[0]["ranges"]["D"] = [lo, hi - 1]
    assert "D" in refusal(net, tmp_path)


@pytest.mark.parametrize("table, value", [("ln_lut", 1 << 50), ("log_weights", -(1 << 50)), ("ln_lut", -(1 << 50))])
def test_a_huge_table_entry_is_refused_without_building_huge_numbers(tmp_path, table, value):
    """Found by the fuzzer: the range proof shifted the exp entries by ~2^40 bits before refusing the file."""
    import resource

    net = bm_net()
    name = net.bm_layers()[-1]["name"]
    net.arrays[f"{name}/{table}"] = net.arrays[f"{name}/{table}"].copy()
    net.arrays[f"{name}/{table}"].flat[0] = value
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, hard))  # a 2^40-bit integer alone would take 128 GiB
    try:
        message = refusal(net, tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert name in message
