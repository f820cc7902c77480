"""Tests for bmhw.data: IDX parsing, MNIST and CIFAR-10 loaders, the built-in MNIST sample.

All data files are written here, byte by byte where the format matters, so the tests need no
data folder (CI may not have ../shared).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmhw.data import (
    builtin_mnist_dir,
    load_cifar10,
    load_dataset,
    load_mnist,
    load_mnist_sample,
    read_idx,
    write_idx,
)
from bmhw.errors import BmhwError

# --------------------------------------------------------------------------------------------
# helpers: hand-made files


def idx_bytes(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """IDX bytes built from the spec directly (not via bmhw's writer)."""
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(f">{len(dims)}I", *dims) + payload


def put(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, gzipped when the name ends in .gz."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def mnist_arrays(n: int) -> tuple[np.ndarray, np.ndarray]:
    images = (np.arange(n * 28 * 28) % 251).astype(np.uint8).reshape(n, 28, 28)
    labels = (np.arange(n) * 3 % 10).astype(np.uint8)
    return images, labels


def write_mnist(folder: Path, split: str = "test", n: int = 5, gz: bool = True,
                images: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
    """Write an MNIST split into ``folder`` from the raw IDX spec."""
    default_images, default_labels = mnist_arrays(n)
    images = default_images if images is None else images
    labels = default_labels if labels is None else labels
    prefix = "t10k" if split == "test" else "train"
    ext = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        put(folder / f"{prefix}-{kind}-ubyte{ext}", idx_bytes(0x08, array.shape, array.tobytes()))


def cifar_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n)


def write_cifar_python(path: Path, data: np.ndarray, labels, protocol: int = 2,
                       bytes_keys: bool = True) -> None:
    """A python-version batch: a pickled dict like the official one."""
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    batch = {key("batch_label"): b"testing batch 1 of 1", key("data"): data,
             key("labels"): [int(v) for v in labels],
             key("filenames"): [b"img%d.png" % i for i in range(len(data))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def write_cifar_binary(path: Path, data: np.ndarray, labels) -> None:
    """A binary-version batch: per image, 1 label byte then 3072 pixel bytes."""
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())


def error_of(func, *args, **kwargs) -> str:
    with pytest.raises(BmhwError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "BmhwError messages are one line"
    return message


# --------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_idx_ubyte_exact_values(tmp_path, name):
    payload = bytes(range(24))
    path = put(tmp_path / name, idx_bytes(0x08, (2, 3, 4), payload))
    array = read_idx(path)
    assert array.dtype == np.uint8
    assert array.shape == (2, 3, 4)
    assert array[0, 0, 0] == 0 and array[1, 2, 3] == 23 and array[1, 0, 1] == 13
    array[0, 0, 0] = 1  # result is writable


def test_idx_multibyte_big_endian(tmp_path):
    path = put(tmp_path / "s.idx", idx_bytes(0x0B, (3,), struct.pack(">3h", 1, -2, 258)))
    assert read_idx(path).tolist() == [1, -2, 258]
    path = put(tmp_path / "f.idx.gz", idx_bytes(0x0D, (2,), struct.pack(">2f", 1.5, -0.25)))
    array = read_idx(path)
    assert array.dtype == np.float32 and array.dtype.isnative
    assert array.tolist() == [1.5, -0.25]


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (2,), b"\x05\x06")))
    assert read_idx(path).tolist() == [5, 6]


def test_write_idx_round_trip_and_deterministic(tmp_path):
    array = np.arange(60, dtype=np.int32).reshape(3, 4, 5) - 30
    write_idx(tmp_path / "a.gz", array)
    first = (tmp_path / "a.gz").read_bytes()
    write_idx(tmp_path / "a.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == first
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)
    write_idx(tmp_path / "a.raw", array.astype(np.uint8))
    assert (tmp_path / "a.raw").read_bytes()[:4] == b"\x00\x00\x08\x03"


@pytest.mark.parametrize("name", ["t.idx", "t.idx.gz"])
def test_idx_truncated_data(tmp_path, name):
    path = put(tmp_path / name, idx_bytes(0x08, (4, 5), bytes(19)))
    message = error_of(read_idx, path)
    assert str(path) in message and "truncated" in message and "20" in message


def test_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))[:-12])
    message = error_of(read_idx, path)
    assert str(path) in message and "truncated" in message


def test_idx_truncated_header(tmp_path):
    path = put(tmp_path / "h.idx", idx_bytes(0x08, (4, 5), b"")[:9])
    assert "truncated inside its header" in error_of(read_idx, path)
    path = put(tmp_path / "tiny.idx", b"\x00\x00")
    assert "too short" in error_of(read_idx, path)


def test_idx_extra_bytes(tmp_path):
    path = put(tmp_path / "x.idx", idx_bytes(0x08, (2,), b"\x01\x02\x03"))
    assert "extra bytes" in error_of(read_idx, path)


def test_idx_bad_magic(tmp_path):
    path = put(tmp_path / "m.idx", b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    message = error_of(read_idx, path)
    assert str(path) in message and "bad magic" in message and "0x12340801" in message


def test_idx_unknown_dtype_and_ndim(tmp_path):
    path = put(tmp_path / "d.idx", idx_bytes(0x07, (1,), b"\x00"))
    assert "dtype code 0x07" in error_of(read_idx, path)
    path = put(tmp_path / "z.idx", b"\x00\x00\x08\x00")
    assert "0 dimensions" in error_of(read_idx, path)
    path = put(tmp_path / "n.idx", idx_bytes(0x08, (2,), b"\x00\x00"))
    assert "has 1 dimensions, expected 3" in error_of(read_idx, path, expect_ndim=3)


def test_idx_corrupt_gzip_and_missing(tmp_path):
    path = tmp_path / "c.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage garbage garbage")
    message = error_of(read_idx, path)
    assert str(path) in message and "gzip" in message
    assert "not found" in error_of(read_idx, tmp_path / "nope.idx")


# --------------------------------------------------------------------------------------------
# MNIST


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_loads_exactly(tmp_path, gz):
    write_mnist(tmp_path, n=4, gz=gz)
    images, labels = load_mnist(tmp_path)
    expected_images, expected_labels = mnist_arrays(4)
    assert images.shape == (4, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (4,) and labels.dtype == np.int64
    np.testing.assert_array_equal(images[:, 0], expected_images)
    assert labels.tolist() == [0, 3, 6, 9]
    # A known pixel: flat index 1*784 + 2*28 + 3 = 843, value 843 % 251 = 90.
    assert images[1, 0, 2, 3] == 90


def test_mnist_train_split_and_mixed_compression(tmp_path):
    write_mnist(tmp_path, split="train", n=3, gz=False)
    (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "moved")
    put(tmp_path / "train-images-idx3-ubyte.gz", (tmp_path / "moved").read_bytes())
    images, labels = load_mnist(tmp_path, split="train")
    assert images.shape == (3, 1, 28, 28) and labels.tolist() == [0, 3, 6]


def test_mnist_prefers_raw_over_gz(tmp_path):
    write_mnist(tmp_path, n=2, gz=False)
    # A broken .gz beside a good raw file is never opened.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"broken")
    assert load_mnist(tmp_path)[0].shape == (2, 1, 28, 28)


def test_mnist_missing_folder(tmp_path):
    message = error_of(load_mnist, tmp_path / "absent")
    assert message.startswith(f"MNIST test split not found in {tmp_path / 'absent'}: expected "
                              "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
    assert "does not exist" in message


def test_mnist_missing_files(tmp_path):
    message = error_of(load_mnist, tmp_path, "train")
    assert f"MNIST train split not found in {tmp_path}" in message
    assert "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]" in message
    write_mnist(tmp_path, n=2)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "missing: t10k-labels-idx1-ubyte[.gz]" in error_of(load_mnist, tmp_path)


def test_mnist_count_mismatch(tmp_path):
    images, _ = mnist_arrays(3)
    write_mnist(tmp_path, images=images, labels=np.array([1, 2], np.uint8))
    message = error_of(load_mnist, tmp_path)
    assert "3 images" in message and "2 labels" in message


def test_mnist_bad_labels_and_shapes(tmp_path):
    write_mnist(tmp_path, n=2, labels=np.array([1, 10], np.uint8))
    assert "label 10" in error_of(load_mnist, tmp_path)
    write_mnist(tmp_path, images=np.zeros((2, 27, 28), np.uint8))
    assert "27x28" in error_of(load_mnist, tmp_path)
    # Files swapped: a labels file where images belong.
    write_mnist(tmp_path, n=2, images=np.zeros(2, np.uint8))
    assert "expected 3" in error_of(load_mnist, tmp_path)


def test_mnist_truncated_file_names_it(tmp_path):
    write_mnist(tmp_path, n=2, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    message = error_of(load_mnist, tmp_path)
    assert str(path) in message and "truncated" in message


def test_mnist_bad_split(tmp_path):
    assert "unknown MNIST split" in error_of(load_mnist, tmp_path, "valid")


# --------------------------------------------------------------------------------------------
# CIFAR-10


def check_cifar(images, labels, data, expected_labels):
    n = len(data)
    assert images.shape == (n, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.tolist() == [int(v) for v in expected_labels]
    # Layout: 1024 red, 1024 green, 1024 blue bytes, each plane row-major.
    assert images[1, 0, 0, 0] == data[1, 0]
    assert images[1, 1, 0, 0] == data[1, 1024]
    assert images[0, 2, 31, 31] == data[0, 3071]
    assert images[2, 0, 1, 5] == data[2, 32 + 5]
    np.testing.assert_array_equal(images.reshape(n, -1), data)


@pytest.mark.parametrize("protocol,bytes_keys", [(2, True), (4, False), (5, True)])
def test_cifar_python_version(tmp_path, protocol, bytes_keys):
    data, labels = cifar_arrays(4)
    write_cifar_python(tmp_path / "cifar-10-batches-py" / "test_batch", data, labels,
                       protocol=protocol, bytes_keys=bytes_keys)
    check_cifar(*load_cifar10(tmp_path), data, labels)


def test_cifar_python_numpy1_pickle(tmp_path):
    # numpy < 2 (and the official batches) name numpy.core.multiarray; numpy 2 numpy._core.
    data, labels = cifar_arrays(3)
    path = tmp_path / "test_batch"
    write_cifar_python(path, data, labels, protocol=2)
    raw = path.read_bytes()
    old = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != raw or b"cnumpy.core.multiarray\n" in raw
    path.write_bytes(old)
    check_cifar(*load_cifar10(tmp_path), data, labels)


def test_cifar_binary_version(tmp_path):
    data, labels = cifar_arrays(3, seed=1)
    write_cifar_binary(tmp_path / "cifar-10-batches-bin" / "test_batch.bin", data, labels)
    check_cifar(*load_cifar10(tmp_path), data, labels)
    # The folder itself can be passed too.
    check_cifar(*load_cifar10(tmp_path / "cifar-10-batches-bin"), data, labels)


def test_cifar_train_concatenates_batches_in_order(tmp_path):
    parts = [cifar_arrays(3, seed=i) for i in range(5)]
    for i, (data, labels) in enumerate(parts, start=1):
        write_cifar_python(tmp_path / f"data_batch_{i}", data, labels)
    images, labels = load_cifar10(tmp_path, "train")
    check_cifar(images, labels, np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]))


def test_cifar_missing(tmp_path):
    message = error_of(load_cifar10, tmp_path / "absent")
    assert f"CIFAR-10 test split not found in {tmp_path / 'absent'}" in message
    assert "test_batch" in message and ".bin" in message and "does not exist" in message
    # An incomplete train split (4 of 5 batches) is reported, not silently loaded.
    for i in range(1, 5):
        write_cifar_binary(tmp_path / f"data_batch_{i}.bin", *cifar_arrays(1))
    message = error_of(load_cifar10, tmp_path, "train")
    assert "data_batch_1..data_batch_5" in message and "cifar-10-batches-py" in message


def test_cifar_binary_truncated_and_bad_label(tmp_path):
    data, labels = cifar_arrays(2)
    path = tmp_path / "test_batch.bin"
    write_cifar_binary(path, data, labels)
    path.write_bytes(path.read_bytes()[:-1])
    message = error_of(load_cifar10, tmp_path)
    assert str(path) in message and "3073" in message
    write_cifar_binary(path, data, [3, 12])
    assert "label 12" in error_of(load_cifar10, tmp_path)


def test_cifar_python_truncated_and_wrong_content(tmp_path):
    data, labels = cifar_arrays(2)
    path = tmp_path / "test_batch"
    write_cifar_python(path, data, labels)
    path.write_bytes(path.read_bytes()[:-50])
    message = error_of(load_cifar10, tmp_path)
    assert str(path) in message and "not a valid CIFAR-10 python batch" in message

    path.write_bytes(pickle.dumps([1, 2, 3]))
    assert "not a dict" in error_of(load_cifar10, tmp_path)

    path.write_bytes(pickle.dumps({b"data": data, b"fine_labels": [0, 1]}))
    assert "CIFAR-100" in error_of(load_cifar10, tmp_path)

    write_cifar_python(path, data, [0])
    assert "2 images but 1 labels" in error_of(load_cifar10, tmp_path)

    write_cifar_python(path, data[:, :100], labels)
    assert "(N, 3072)" in error_of(load_cifar10, tmp_path)


class _SystemCall:
    """Pickles as a call to os.system, the classic malicious pickle."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalCall:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


@pytest.mark.parametrize("make", [_SystemCall, _EvalCall])
def test_cifar_malicious_pickle_executes_nothing(tmp_path, make):
    marker = tmp_path / "pwned"
    if make is _SystemCall:
        payload = make(f"touch {marker}")
    else:
        payload = make(f"open({str(marker)!r}, 'w').close()")
    data, labels = cifar_arrays(1)
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({b"data": data, b"labels": [int(labels[0])], b"x": payload}, protocol=2))
    message = error_of(load_cifar10, tmp_path)
    assert "refusing to unpickle" in message and str(tmp_path / "test_batch") in message
    assert ("system" in message) if make is _SystemCall else ("eval" in message)
    assert not marker.exists()


def test_cifar_pickle_codecs_only_latin1(tmp_path):
    # _codecs.encode is allowed (protocol-2 bytes), but only for latin-1, not other codecs.
    evil = (b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlib"
            b"q\x02\x86q\x03Rq\x04.")
    (tmp_path / "test_batch").write_bytes(evil)
    assert "latin-1" in error_of(load_cifar10, tmp_path)


def test_cifar_bad_split(tmp_path):
    assert "unknown CIFAR-10 split" in error_of(load_cifar10, tmp_path, "valid")


# --------------------------------------------------------------------------------------------
# built-in sample and load_dataset


def test_builtin_sample():
    images, labels = load_mnist_sample()
    assert images.shape == (500, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (500,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() <= 9
    assert len(np.unique(images.reshape(500, -1), axis=0)) == 500
    assert len(np.unique(labels)) == 10
    # Independent fact: the MNIST test set starts with these labels.
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # Digits are white on black: background 0, strokes up to 255.
    assert images[:, 0, 0, 0].max() == 0 and images.max() == 255


def test_builtin_sample_files():
    folder = builtin_mnist_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "README.md"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) < 1_000_000
    readme = (folder / "README.md").read_text()
    assert "Yann LeCun" in readme and "Corinna Cortes" in readme and "Burges" in readme


def test_load_dataset(tmp_path):
    images, labels = load_dataset("mnist")
    assert images.shape == (500, 1, 28, 28) and labels[0] == 7
    assert "--data" in error_of(load_dataset, "mnist", None, "train")
    assert "--data" in error_of(load_dataset, "cifar10")
    assert "unknown dataset" in error_of(load_dataset, "imagenet")
    assert "unknown split" in error_of(load_dataset, "mnist", None, "val")
    write_mnist(tmp_path, split="train", n=2)
    assert load_dataset("mnist", tmp_path, "train")[0].shape == (2, 1, 28, 28)
    write_cifar_binary(tmp_path / "test_batch.bin", *cifar_arrays(2))
    assert load_dataset("cifar10", str(tmp_path))[0].shape == (2, 3, 32, 32)


def test_data_does_not_import_torch():
    code = "import sys, bmhw.data; assert 'torch' not in sys.modules, 'torch imported'"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
