"""The quantized network: the one intermediate representation that every backend reads.

A ``.bmq`` file is a zip archive (readable without bmhw; see docs/datapath.md, "The .bmq file") holding
``model.json`` (format tag, version, input description, the list of layers with every constant, scale
and width) and one ``.npy`` file per integer table. Writing is deterministic: the same network gives
byte-identical files. This module imports NumPy only, never torch.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bmhw.atomic import write_atomically
from bmhw.errors import BmhwError
from bmhw.ir.fields import check_layers
from bmhw.ir.ops import BM_OPS, WEIGHT_OPS, family_of

FORMAT = "bmhw-bmq"
VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class QuantizedNet:
    """``layers``: list of dicts (op, name, shapes, constants, widths); ``arrays``: "layer/table" -> int64."""

    input_shape: tuple
    input_scale: tuple  # (numerator, denominator) of the input code's scale, e.g. (1, 255)
    layers: list
    arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def table(self, layer: dict, name: str) -> np.ndarray:
        return self.arrays[f"{layer['name']}/{name}"]

    def signs(self, layer: dict) -> np.ndarray | None:
        """The per-output signs of a BM layer (+1 / -1), or None when every output is +1."""
        return self.arrays.get(f"{layer['name']}/sign")

    def bm_layers(self) -> list:
        return [layer for layer in self.layers if layer["op"] in BM_OPS]

    def weight_layers(self) -> list:
        """The BM or MAC layers, in order."""
        return [layer for layer in self.layers if layer["op"] in WEIGHT_OPS]

    @property
    def family(self) -> str | None:
        """The key of the neuron family of its weighted layers (``bmhw.ir.ops.FAMILIES``)."""
        return family_of(self.layers)

    @property
    def is_mac(self) -> bool:
        """A classical integer network (the MAC twin) rather than a BM one."""
        return self.family == "mac"

    @property
    def is_adder(self) -> bool:
        """An AdderNet integer network (adder_conv2d / adder_linear layers)."""
        return self.family == "adder"

    @property
    def is_bise(self) -> bool:
        """A binarised BiSE network (docs/datapath.md, "The BiSE layer")."""
        return self.family == "bise"

    @property
    def num_classes(self) -> int:
        return int(self.layers[-1]["out_shape"][0])


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.int64), allow_pickle=False)
    return buffer.getvalue()


def _document(net: QuantizedNet) -> dict:
    return {"format": FORMAT, "version": VERSION, "input": {"shape": list(net.input_shape),
            "scale": list(net.input_scale)}, "layers": net.layers, "meta": net.meta}


def dumps(net: QuantizedNet) -> bytes:
    """The ``.bmq`` bytes of ``net`` (deterministic: sorted keys, fixed timestamps, sorted entries)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = {"model.json": json.dumps(_document(net), indent=1, sort_keys=True).encode() + b"\n"}
        entries.update({f"{name}.npy": _npy_bytes(array) for name, array in net.arrays.items()})
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def save_bmq(net: QuantizedNet, path) -> Path:
    """Write ``net`` to ``path`` atomically (a temporary file renamed into place)."""
    data = dumps(net)
    return write_atomically(path, lambda tmp: Path(tmp).write_bytes(data), "quantized network", "model.bmq")


def _damaged(path, what: str) -> BmhwError:
    return BmhwError(f"{path} is not a valid .bmq file ({what}); re-create it with bmhw quantize")


def load_bmq(path) -> QuantizedNet:
    """Read a ``.bmq`` file and check it before anything runs on it (``bmhw.ir.validate``): a missing, truncated,
    corrupt, unknown-version or inconsistent file is a one-line error naming what is wrong."""
    from bmhw.ir import validate

    path = Path(path)
    if not path.is_file():
        raise BmhwError(f"{path} not found: give a .bmq file written by bmhw quantize")
    try:
        with zipfile.ZipFile(path) as archive:
            doc = json.loads(validate.read_model_json(archive, path))
            _check_header(doc, path)
            check_layers(path, doc)
            shapes = validate.check_entries(archive.infolist(), doc["layers"], path)
            arrays = {}
            for name, dims in sorted(shapes.items()):
                arrays[name[:-4]] = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
                validate.check_table(arrays[name[:-4]], name[:-4], dims, path)
    except BmhwError:
        raise
    except (zipfile.BadZipFile, KeyError, EOFError, OSError, ValueError, UnicodeDecodeError) as err:
        raise _damaged(path, f"truncated or corrupt: {type(err).__name__}") from None
    except Exception as err:  # noqa: BLE001 - zlib and numpy raise various errors on damaged data
        raise _damaged(path, f"truncated or corrupt: {type(err).__name__}") from None
    meta = doc.get("meta")
    net = QuantizedNet(input_shape=tuple(doc["input"]["shape"]), input_scale=tuple(doc["input"]["scale"]),
                       layers=list(doc["layers"]), arrays=arrays, meta=dict(meta) if isinstance(meta, dict) else {})
    validate.check_values(net, path)  # the fields, entries, dtypes and shapes were checked as they were read
    return net


def _check_header(doc, path) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _damaged(path, f"no '{FORMAT}' format tag")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _damaged(path, f"format version {version!r} is not a positive integer")
    if version > VERSION:
        raise BmhwError(f"{path} has .bmq format version {version}; this bmhw reads version {VERSION}: upgrade bmhw")
