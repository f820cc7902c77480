"""Dataset loaders (numpy only, no torch: the hardware backends use them too).

``load_dataset(name, root, split)`` is the single entry point the CLI uses; the per-format
loaders are exported for direct use.
"""

from __future__ import annotations

import os

import numpy as np

from bmhw.data.cifar import load_cifar10
from bmhw.data.idx import encode_idx, read_idx, write_idx
from bmhw.data.mnist import load_mnist
from bmhw.data.sample import SAMPLE_SIZE, builtin_mnist_dir, load_mnist_sample
from bmhw.errors import BmhwError

DATASETS = ("mnist", "cifar10")
SPLITS = ("train", "test")


def calibration_sample(images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` images drawn without replacement (all if fewer), in their original order: the
    calibration batch of re-fits and quantization, the same for the same images and seed."""
    rng = np.random.default_rng(seed)
    return images[np.sort(rng.choice(len(images), size=min(count, len(images)), replace=False))]


def load_dataset(
    name: str, root: str | os.PathLike | None = None, split: str = "test"
) -> tuple[np.ndarray, np.ndarray]:
    """Load ``split`` of dataset ``name`` from folder ``root``.

    Returns ``(images, labels)``: uint8 images (N, C, H, W) and int64 labels (N,).
    With ``root=None``, MNIST means the built-in 500-image test sample; CIFAR-10 is not bundled.
    """
    if name not in DATASETS:
        raise BmhwError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise BmhwError(f"unknown split {split!r}: choose 'train' or 'test'")
    if name == "mnist":
        if root is not None:
            return load_mnist(root, split)
        if split != "test":
            raise BmhwError("the built-in MNIST sample has only test images (the first "
                            f"{SAMPLE_SIZE}); pass --data DIR with the MNIST files for the "
                            "train split")
        return load_mnist_sample()
    if root is None:
        raise BmhwError("CIFAR-10 is not bundled with bmhw and never downloaded; pass --data DIR "
                        "with the CIFAR-10 python or binary batches")
    return load_cifar10(root, split)


__all__ = [
    "DATASETS",
    "SPLITS",
    "SAMPLE_SIZE",
    "builtin_mnist_dir",
    "calibration_sample",
    "encode_idx",
    "load_cifar10",
    "load_dataset",
    "load_mnist",
    "load_mnist_sample",
    "read_idx",
    "write_idx",
]
