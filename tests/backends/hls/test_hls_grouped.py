"""BM layers with several maxima per output (docs/datapath.md, "Several maxima per neuron") in the HLS backend:
the grouped kernels of hls/bmhw_grouped.h bit-exact against the golden model on every grouped spec, their
per-layer data (D's type, N, the split, the group ends, the weight signs), the cycle model, and corrupted sign,
exp and group tables caught by C-simulation. Needs g++ and hls4ml's headers for the csim tests."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bmhw import golden
from bmhw.backends import hls
from bmhw.backends.hls import csim
from bmhw.backends.project import layer_names
from bmhw.ir import load_bmq
from bmhw.ir.groups import group_starts, groups_of, is_grouped
from bmhw.resources import examples_dir, hls_dir
from golden_specs import GROUPED_IDS, GROUPED_SPECS, quantize_spec
from random_nets import random_images


def grouped_net(spec_index: int, folder):
    """The quantized net of a grouped spec and its images: the spec's four (random, all 0, all 255) and eight more."""
    spec = GROUPED_SPECS[spec_index]
    _, net, _, codes = quantize_spec(spec, folder)
    images = np.concatenate([codes, random_images(8, shape=spec["in"], seed=spec["seed"])]).astype(np.uint8)
    return net, images


def c_named_bm_layers(net) -> list:
    """(layer, its C name) of every BM layer (IR names such as "0" become C identifiers)."""
    return [(layer, name) for layer, name in zip(net.layers, layer_names(net)) if layer in net.bm_layers()]


def assert_csim_bit_exact(net, project, images):
    """The testbench compares every layer's buffer with the golden model's; the streamed logits too."""
    result = csim.csim(project, images)
    assert result.passed, result.output
    assert (result.images, result.mismatches) == (len(images), 0)
    assert np.array_equal(csim.read_result(project), golden.forward(net, images))


@pytest.mark.slow
@pytest.mark.parametrize("pe", [1, 3])
@pytest.mark.parametrize("index", range(len(GROUPED_SPECS)), ids=GROUPED_IDS)
def test_grouped_specs_pass_csim(index, pe, tmp_path):
    net, images = grouped_net(index, tmp_path)
    assert any(is_grouped(layer) for layer in net.bm_layers())
    project = hls.export(net, tmp_path / "hls", pe=pe)
    assert_csim_bit_exact(net, project, images)


def test_grouped_layers_get_their_types_tables_and_kernels(tmp_path):
    # Spec 1: conv1 one max per sign ("1s"), conv2 three groups, fc1 one group per input ("K"), fc2 "2s".
    net, _ = grouped_net(1, tmp_path)
    project = hls.export(net, tmp_path / "hls", pe=3)
    params = (project / "firmware/parameters.h").read_text()
    net_cpp = (project / "firmware/bmhw_net.cpp").read_text()
    assert '#include "bmhw_grouped.h"' in net_cpp
    assert (project / "firmware/bmhw_grouped.h").read_bytes() == (hls_dir() / hls.GROUPED_HEADER).read_bytes()
    for layer, name in c_named_bm_layers(net):
        k, n = int(layer["fan_in"]), groups_of(layer)
        split = bool(layer.get("split_sign", False))
        kind = layer["op"].replace("bm_", "bm_grouped_")
        struct = params[params.index(f"struct {name}_config"):].split("};")[0]
        assert f"typedef {hls.ap_type(*layer['ranges']['D'], layer['widths']['D'])} d_t;" in struct
        assert f"static const int GROUPS = {n};" in struct
        assert f"static const bool SPLIT = {'true' if split else 'false'};" in struct
        wneg = f"{name}_wneg, " if split else ""
        call = net_cpp[net_cpp.index(f"bmhw::{kind}<{name}_config>("):].split("\n")[0]
        assert call.endswith(f", {name}_out, {name}_ln_lut, {name}_w, {wneg}{name}_exp_lut, {name}_bias, {name}_neg, "
                             f"{name}_group_last);")
        assert (f"variable = {name}_wneg cyclic factor = 3" in net_cpp) == split
        weights = (project / f"firmware/weights/{name}.h").read_text()
        last = read_table(weights, f"{name}_group_last")
        assert np.flatnonzero(last).tolist() == [b - 1 for b in group_starts(k, n)[1:]]
        if split:
            assert np.array_equal(read_table(weights, f"{name}_wneg").reshape(-1, k),
                                  (net.table(layer, "weight_sign") < 0).astype(int))
        else:
            assert f"{name}_wneg" not in weights
    readme = (project / "README.md").read_text()
    assert "bmhw_grouped.h" in readme and f"depth of {hls.GROUPED_PIPELINE_DEPTH}" in readme


def test_one_max_networks_keep_the_one_max_kernels(tmp_path):
    lenet = load_bmq(examples_dir() / "lenet_bm15_mnist.bmq")
    files = hls.render(lenet)
    assert "firmware/bmhw_grouped.h" not in files
    assert b"grouped" not in files["firmware/bmhw_net.cpp"] and b"GROUPS" not in files["firmware/parameters.h"]
    assert b"bmhw::bm_conv2d<conv1_config>" in files["firmware/bmhw_net.cpp"]


def test_grouped_export_is_deterministic(tmp_path):
    net, _ = grouped_net(2, tmp_path)
    first, again = hls.render(net, pe=2), hls.render(net, pe=2)
    assert first == again and "firmware/bmhw_grouped.h" in first


def test_grouped_cycle_model_on_a_hand_computed_case(tmp_path):
    # Spec 0: conv1 2x1x1 (1 patch, K = 1), fc1 K = 2, O = 3, fc2 K = 3, O = 2; every layer "Ks".
    net, _ = grouped_net(0, tmp_path)
    pes = hls.layer_pes(net, 2)
    rows = {row["layer"]: row for row in hls.cycle_model(net, pes)}
    depth = hls.GROUPED_PIPELINE_DEPTH
    assert depth == hls.PE_PIPELINE_DEPTH + 1
    names = [name for _, name in c_named_bm_layers(net)]
    shapes = [(1, 1, 2), (1, 2, 3), (1, 3, 2)]  # patches, K, O
    for name, (patches, k, o) in zip(names, shapes):
        folds = -(-o // 2)
        assert (rows[name]["patches"], rows[name]["k"], rows[name]["folds"]) == (patches, k, folds)
        assert rows[name]["cycles"] == patches * folds * (k + depth) + patches * k


def read_table(header: str, table: str) -> np.ndarray:
    """The values of ROM ``table`` in a generated weights header, flattened."""
    body = header[header.index(f" {table}["):]
    body = body[body.index("= {") + 3:body.index("};")]
    return np.array([int(v.rstrip("L")) for v in re.findall(r"-?\d+L*", body)], dtype=np.int64)


def corrupt_table(header, table: str, change) -> None:
    """Rewrite ROM ``table`` of the weights header file ``header`` with ``change(values) -> values``."""
    text = header.read_text()
    start = text.index(f" {table}[")
    start = text.index("= {", start) + 3
    end = text.index("};", start)
    values = change(read_table(text, table)).tolist()
    count = iter(values)
    body = re.sub(r"-?\d+L*", lambda _: str(next(count)), text[start:end])
    header.write_text(text[:start] + body + text[end:])


@pytest.mark.slow
@pytest.mark.parametrize("table", ["wneg", "exp_lut", "group_last"])
def test_a_corrupted_grouped_table_is_caught_by_csim(table, tmp_path):
    # Spec 0's logits layer has one pair per input, split by sign: flipping every sign of output 0 negates its D;
    # a shifted exp table moves every pair's term; one group over the whole patch leaves a single max per sign.
    net, images = grouped_net(0, tmp_path)
    project = hls.export(net, tmp_path / "hls")
    last = layer_names(net)[-1]
    k = int(net.layers[-1]["fan_in"])

    def flip_output_0(values):
        values[:k] = 1 - values[:k]
        return values

    change = {"wneg": flip_output_0, "exp_lut": lambda v: v + 2 ** int(net.layers[-1]["P"]),
              "group_last": lambda v: (np.arange(len(v)) == len(v) - 1).astype(np.int64)}[table]
    corrupt_table(project / f"firmware/weights/{last}.h", f"{last}_{table}", change)
    result = csim.csim(project, images)
    assert result.returncode == 1 and not result.passed
    assert result.first_mismatch is not None and result.first_mismatch["layer"] == last
    if table == "wneg":
        assert result.first_mismatch["index"] == 0
