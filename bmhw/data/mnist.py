"""Load MNIST from a local folder holding the four standard IDX files (raw or gzipped)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bmhw.data.idx import read_idx
from bmhw.errors import BmhwError

# split -> (images file, labels file), the official names without the optional ".gz".
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_SIZE = 28
NUM_CLASSES = 10


def load_mnist(root: str | os.PathLike, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Load one MNIST split from ``root``.

    Returns ``(images, labels)``: uint8 images of shape (N, 1, 28, 28) and int64 labels of
    shape (N,) with values 0..9.
    """
    root = Path(root).expanduser()
    images_path, labels_path = mnist_paths(root, split)
    images = read_idx(images_path, expect_ndim=3)
    labels = read_idx(labels_path, expect_ndim=1)
    _check_images(images, images_path)
    _check_labels(labels, labels_path)
    if len(images) != len(labels):
        raise BmhwError(
            f"MNIST {split} split in {root} is inconsistent: {images_path.name} has "
            f"{len(images)} images but {labels_path.name} has {len(labels)} labels"
        )
    return images.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE), labels.astype(np.int64)


def mnist_paths(root: Path, split: str) -> tuple[Path, Path]:
    """Return the (images, labels) files of ``split`` in ``root``, or raise a BmhwError that
    names exactly what was expected where."""
    if split not in MNIST_FILES:
        raise BmhwError(f"unknown MNIST split {split!r}: choose 'train' or 'test'")
    names = MNIST_FILES[split]
    found = [_find(root, name) for name in names]
    if all(found):
        return found[0], found[1]
    expected = " and ".join(f"{name}[.gz]" for name in names)
    if not root.is_dir():
        why = " (the folder does not exist)"
    else:
        missing = [f"{name}[.gz]" for name, path in zip(names, found) if path is None]
        why = f" (missing: {', '.join(missing)})" if len(missing) < len(names) else ""
    raise BmhwError(f"MNIST {split} split not found in {root}: expected {expected}{why}")


def _find(root: Path, name: str) -> Path | None:
    """The raw file if present (no decompression needed), else the gzipped one, else None."""
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.dtype != np.uint8:
        raise BmhwError(f"{path} holds {images.dtype} values; MNIST images are unsigned bytes")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise BmhwError(
            f"{path} holds images of size {images.shape[1]}x{images.shape[2]}; "
            f"MNIST images are {IMAGE_SIZE}x{IMAGE_SIZE}"
        )


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if labels.dtype != np.uint8:
        raise BmhwError(f"{path} holds {labels.dtype} values; MNIST labels are unsigned bytes")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise BmhwError(
            f"{path} has label {int(labels.max())}; MNIST labels must be 0..{NUM_CLASSES - 1}"
        )
