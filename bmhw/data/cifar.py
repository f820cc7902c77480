"""Load CIFAR-10 from a local folder, in either official distribution. Nothing is downloaded.

* python version: pickled dicts ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, usually
  in a ``cifar-10-batches-py`` folder;
* binary version: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``, records of
  one label byte and 3072 pixel bytes, usually in a ``cifar-10-batches-bin`` folder.

Unpickling an arbitrary file can run arbitrary code, so the python batches are read with
:class:`SafeUnpickler`, which only builds numpy arrays and plain containers and refuses every
other global with a :class:`BmhwError` before anything is called.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np

from bmhw.errors import BmhwError

NUM_CLASSES = 10
CHANNELS, SIDE = 3, 32
PIXELS = CHANNELS * SIDE * SIDE  # 3072: 1024 red, then 1024 green, then 1024 blue, row-major
RECORD = 1 + PIXELS  # binary version: label byte + pixels

SPLIT_BATCHES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
SUBFOLDERS = ("cifar-10-batches-py", "cifar-10-batches-bin")


def load_cifar10(root: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load one CIFAR-10 split from ``root`` (or its ``cifar-10-batches-{py,bin}`` subfolder).

    Returns ``(images, labels)``: uint8 images of shape (N, 3, 32, 32) and int64 labels (N,).
    """
    root = Path(root).expanduser()
    if split not in SPLIT_BATCHES:
        raise BmhwError(f"unknown CIFAR-10 split {split!r}: choose 'train' or 'test'")
    paths, reader = _locate(root, split)
    parts = [reader(path) for path in paths]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images.reshape(-1, CHANNELS, SIDE, SIDE), labels


def _locate(root: Path, split: str):
    """Find a complete set of batch files for ``split``: return (paths, reader function).

    The binary version is preferred when both are present, since reading it needs no unpickling.
    """
    names = SPLIT_BATCHES[split]
    folders = [root] + [root / sub for sub in SUBFOLDERS]
    for folder in folders:
        for suffix, reader in ((".bin", read_binary_batch), ("", read_python_batch)):
            paths = [folder / f"{name}{suffix}" for name in names]
            if all(p.is_file() for p in paths):
                return paths, reader
    expected = _expected_text(names)
    searched = ", ".join(str(f) for f in folders)
    exists = "" if root.is_dir() else " (the folder does not exist)"
    raise BmhwError(
        f"CIFAR-10 {split} split not found in {root}{exists}: expected {expected} "
        f"(python version) or the same with .bin (binary version), searched {searched}"
    )


def _expected_text(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return f"{names[0]}..{names[-1]}"


# ---------------------------------------------------------------------------------------------
# binary version


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a binary-version batch: returns uint8 (n, 3072) pixels and int64 (n,) labels."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise BmhwError(f"cannot read CIFAR-10 batch {path}: {err.strerror or err}") from None
    if raw.size == 0 or raw.size % RECORD:
        raise BmhwError(
            f"{path} is not a CIFAR-10 binary batch: its size {raw.size} bytes is not a "
            f"positive multiple of {RECORD} (1 label byte + {PIXELS} pixel bytes per image); "
            f"the file may be truncated"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    _check_labels(labels, path)
    return np.ascontiguousarray(records[:, 1:]), labels


# ---------------------------------------------------------------------------------------------
# python version


def _latin1_encode(text, encoding="latin1"):
    """Stand-in for ``_codecs.encode``, which Python 3 pickles (protocol < 3) use for bytes.

    Only the latin-1 round trip that pickle emits is allowed, not arbitrary codecs.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise BmhwError("refusing codecs.encode with anything but a latin-1 string")
    return text.encode("latin1")


@functools.lru_cache(maxsize=None)
def _numpy_globals() -> dict:
    """The numpy callables an array pickle names, keyed by every (module, name) spelling.

    numpy 2 renamed ``numpy.core`` to ``numpy._core`` and pickles may use either name; we hand
    back the objects directly rather than importing the name given, so the deprecated
    ``numpy.core`` shim is never touched.
    """
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric
    table = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        # ndarray.__reduce__ (protocols 0-4) and numpy scalars.
        table[(package + ".multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(package + ".multiarray", "scalar")] = multiarray.scalar
        # ndarray.__reduce_ex__ for protocol 5 stores the raw buffer and rebuilds with this.
        table[(package + ".numeric", "_frombuffer")] = numeric._frombuffer
    return table


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild numpy arrays, dtypes and plain containers.

    A pickle names every callable it wants to invoke through ``find_class``; refusing all but
    an allow-list there means a malicious file cannot reach ``os.system`` or anything like it.
    """

    # Plain-container constructors that protocols 0-2 may name (Python 2 says __builtin__).
    _BUILTINS = {"list", "dict", "tuple", "set", "frozenset", "bytes", "bytearray"}

    def __init__(self, file, name: str):
        super().__init__(file, encoding="bytes")
        self._name = name

    def find_class(self, module: str, name: str):
        allowed = _numpy_globals().get((module, name))
        if allowed is not None:
            return allowed
        if module in ("builtins", "__builtin__") and name in self._BUILTINS:
            return super().find_class(module, name)
        if (module, name) in (("_codecs", "encode"), ("codecs", "encode")):
            return _latin1_encode
        raise BmhwError(
            f"{self._name} is not a plain CIFAR-10 batch: it asks to load {module}.{name}, "
            f"which a data file never needs; refusing to unpickle it"
        )

    def persistent_load(self, pid):
        raise BmhwError(f"{self._name} uses pickle persistent ids; not a CIFAR-10 batch")


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a python-version batch safely: returns uint8 (n, 3072) pixels and int64 labels."""
    batch = _safe_unpickle(path)
    if not isinstance(batch, dict):
        raise BmhwError(f"{path} is not a CIFAR-10 batch: it holds a {type(batch).__name__}, "
                        f"not a dict")
    data = _get(batch, "data", path)
    labels = _get(batch, "labels", path)
    pixels = _as_pixels(data, path)
    labels = _as_labels(labels, path)
    if len(labels) != len(pixels):
        raise BmhwError(f"{path} is inconsistent: {len(pixels)} images but {len(labels)} labels")
    return pixels, labels


def _safe_unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, str(path)).load()
    except BmhwError:
        raise
    except OSError as err:
        raise BmhwError(f"cannot read CIFAR-10 batch {path}: {err.strerror or err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError,
            IndexError, ImportError, UnicodeError, MemoryError) as err:
        # Anything a damaged pickle can trigger; the file is unusable, say so in one line.
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BmhwError(f"{path} is not a valid CIFAR-10 python batch (truncated or corrupt: "
                        f"{detail})") from None


def _get(batch: dict, key: str, path: Path):
    """Look a key up as bytes (encoding='bytes' keeps Python 2 str keys as bytes) or as str."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    hint = " (this looks like CIFAR-100)" if key == "labels" and (
        b"fine_labels" in batch or "fine_labels" in batch) else ""
    raise BmhwError(f"{path} is not a CIFAR-10 batch: it has no {key!r} entry{hint}")


def _as_pixels(data, path: Path) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != PIXELS:
        shape = getattr(data, "shape", type(data).__name__)
        raise BmhwError(f"{path}: 'data' must be an array of shape (N, {PIXELS}), got {shape}")
    if data.dtype != np.uint8:
        if data.dtype.kind not in "iu" or (data.size and (data.min() < 0 or data.max() > 255)):
            raise BmhwError(f"{path}: 'data' must hold bytes 0..255, got dtype {data.dtype}")
        data = data.astype(np.uint8)
    return np.ascontiguousarray(data)


def _as_labels(labels, path: Path) -> np.ndarray:
    try:
        array = np.asarray(labels)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise BmhwError(f"{path}: 'labels' must be a flat list of integers")
    array = array.astype(np.int64)
    _check_labels(array, path)
    return array


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise BmhwError(f"{path} has label {int(bad)}; CIFAR-10 labels must be "
                        f"0..{NUM_CLASSES - 1}")
