"""Read and write IDX files, the format MNIST ships in.

An IDX file is: two zero bytes, a dtype code byte, a byte giving the number of dimensions, one
big-endian uint32 per dimension, then the values in row-major order (big-endian for multi-byte
types). Files may be gzip-compressed; we recognise gzip by its magic bytes rather than by the
``.gz`` suffix, since IDX data always starts with two zero bytes and gzip with ``1f 8b``.

Every problem with a file raises :class:`bmhw.errors.BmhwError` with a one-line message naming the
file, so a corrupt download is reported as such instead of as a numpy reshape error.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bmhw.errors import BmhwError

# dtype code -> numpy dtype (big-endian, as stored on disk).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"
# Read decompressed data in bounded chunks, so that a header claiming absurd sizes (or a gzip bomb)
# costs at most the size the header claims plus one chunk, never an unbounded read.
_CHUNK = 1 << 24


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzipped) into a native-endian numpy array.

    ``expect_ndim``, when given, is checked against the header so that e.g. a labels file passed
    where an images file belongs is reported clearly.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if is_gzip:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _read_idx_stream(stream, str(path), expect_ndim)
            return _read_idx_stream(raw, str(path), expect_ndim)
    except FileNotFoundError:
        raise BmhwError(f"IDX file not found: {path}") from None
    except IsADirectoryError:
        raise BmhwError(f"expected an IDX file but {path} is a directory") from None
    except PermissionError:
        raise BmhwError(f"cannot read IDX file {path}: permission denied") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise BmhwError(f"{path} is not a valid gzip file ({err}); re-download it") from None
    except EOFError:
        # gzip raises this when the compressed stream stops before its end marker.
        raise BmhwError(
            f"{path} is truncated: the gzip stream ends early; re-download it"
        ) from None


def _read_idx_stream(stream: BinaryIO, name: str, expect_ndim: int | None) -> np.ndarray:
    """Parse an IDX stream whose decompressed bytes are ``stream``; ``name`` is for messages."""
    dtype, dims = _read_header(stream, name, expect_ndim)
    count = 1
    for d in dims:
        count *= d
    expected = count * dtype.itemsize
    data = _read_exactly(stream, expected, name)
    if stream.read(1):
        raise BmhwError(
            f"{name} has extra bytes after the {expected} data bytes that its header "
            f"{_shape_text(dims)} promises; the file is corrupt"
        )
    # ``data`` is a bytearray, not bytes, so the array is writable without an extra copy; the
    # astype only copies for multi-byte types, which must be byte-swapped to native order.
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_header(stream: BinaryIO, name: str, expect_ndim: int | None):
    """Read and validate the magic and the dimension sizes; return (dtype, dims)."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise BmhwError(f"{name} is too short to be an IDX file ({len(magic)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", magic)
    if zero != 0:
        raise BmhwError(
            f"{name} is not an IDX file: bad magic number 0x{magic.hex()} "
            f"(IDX files start with 00 00)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise BmhwError(f"{name} has unknown IDX dtype code 0x{code:02x} (known: {known})")
    if ndim == 0:
        raise BmhwError(f"{name} declares 0 dimensions; an IDX file needs at least one")
    if expect_ndim is not None and ndim != expect_ndim:
        raise BmhwError(f"{name} has {ndim} dimensions, expected {expect_ndim}")
    raw_dims = stream.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise BmhwError(f"{name} is truncated inside its header ({ndim} dimension sizes expected)")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    return IDX_DTYPES[code], dims


def _read_exactly(stream: BinaryIO, expected: int, name: str) -> bytearray:
    """Read exactly ``expected`` bytes, or raise a 'truncated' BmhwError."""
    data = bytearray()
    while len(data) < expected:
        chunk = stream.read(min(_CHUNK, expected - len(data)))
        if not chunk:
            raise BmhwError(
                f"{name} is truncated: its header promises {expected} data bytes "
                f"but only {len(data)} are present"
            )
        data += chunk
    return data


def _shape_text(dims) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def encode_idx(array: np.ndarray) -> bytes:
    """Return the raw (uncompressed) IDX bytes for ``array``."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODE_OF:
        raise BmhwError(f"cannot store dtype {array.dtype} in an IDX file")
    if array.ndim == 0 or array.ndim > 255:
        raise BmhwError(f"cannot store a {array.ndim}-dimensional array in an IDX file")
    code = _CODE_OF[native]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    return header + body


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip it (with mtime 0, so bytes are reproducible) if the
    name ends in ``.gz``."""
    path = Path(path)
    payload = encode_idx(array)
    if path.suffix == ".gz":
        # filename="" and mtime=0 keep the gzip header free of anything machine-specific.
        with open(path, "wb") as raw, gzip.GzipFile(
            filename="", fileobj=raw, mode="wb", compresslevel=9, mtime=0
        ) as out:
            out.write(payload)
    else:
        path.write_bytes(payload)
