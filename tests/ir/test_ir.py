"""The .bmq file (bmhw.ir): deterministic, round-trips byte for byte, and refuses bad files."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from bmhw.errors import BmhwError
from bmhw.ir import dumps, load_bmq, save_bmq
from bmhw.nn import BMConv2d, BMLinear
from bmhw.quant import quantize


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = nn.Sequential(BMConv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), BMLinear(2 * 4 * 4, 3)).eval()
    images = np.random.default_rng(0).integers(0, 256, size=(16, 1, 6, 6)).astype(np.uint8)
    return quantize(model, images)


def test_save_load_save_is_byte_identical(net, tmp_path):
    first = save_bmq(net, tmp_path / "a.bmq").read_bytes()
    again = save_bmq(load_bmq(tmp_path / "a.bmq"), tmp_path / "b.bmq").read_bytes()
    assert first == again == dumps(net)


def test_readable_without_bmhw(net, tmp_path):
    path = save_bmq(net, tmp_path / "a.bmq")
    with zipfile.ZipFile(path) as archive:
        doc = json.loads(archive.read("model.json"))
        ln = np.load(io.BytesIO(archive.read(f"{doc['layers'][0]['name']}/ln_lut.npy")), allow_pickle=False)
    assert doc["format"] == "bmhw-bmq" and doc["version"] == 1 and ln.dtype == np.int64 and len(ln) == 256


def rewrite(path, out, edit):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "model.json":
                doc = json.loads(data)
                edit(doc)
                data = json.dumps(doc).encode()
            dst.writestr(name, data)


@pytest.mark.parametrize("damage, fragment", [
    ("truncate", "truncated or corrupt"),
    ("garbage", "truncated or corrupt"),
    ("version", "version 99"),
    ("format", "format tag"),
    ("op", "unknown operation"),
    ("missing", "not found"),
])
def test_bad_files_are_one_line_errors(net, tmp_path, damage, fragment):
    good = save_bmq(net, tmp_path / "good.bmq")
    bad = tmp_path / "bad.bmq"
    if damage == "truncate":
        bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    elif damage == "garbage":
        bad.write_bytes(bytes(range(256)) * 10)
    elif damage == "version":
        rewrite(good, bad, lambda d: d.update(version=99))
    elif damage == "format":
        rewrite(good, bad, lambda d: d.update(format="other"))
    elif damage == "op":
        rewrite(good, bad, lambda d: d["layers"][0].update(op="conv3d"))
    with pytest.raises(BmhwError, match=fragment) as err:
        load_bmq(bad)
    assert "\n" not in str(err.value)


def test_save_is_atomic_on_a_folder(net, tmp_path):
    with pytest.raises(BmhwError, match="is a folder"):
        save_bmq(net, tmp_path)
