"""The built-in MNIST sample: the first 500 images of the MNIST test set, shipped in the package.

It lets the demo, the examples and the hardware backends run without any download or data folder.
``benchmarks/make_mnist_sample.py`` regenerates it; ``mnist_sample/README.md`` gives attribution.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from bmhw.data.mnist import load_mnist
from bmhw.errors import BmhwError

SAMPLE_SIZE = 500


def builtin_mnist_dir() -> Path:
    """The folder holding the sample's ``t10k-*-ubyte.gz`` files, inside the installed package."""
    # importlib.resources finds package data wherever bmhw is installed (editable or not).
    folder = resources.files("bmhw.data") / "mnist_sample"
    if not isinstance(folder, Path):
        # Only a zipped install gives a non-filesystem Traversable; bmhw is never shipped so.
        raise BmhwError("the built-in MNIST sample is not on the file system (zipped install?); "
                        "reinstall bmhw normally or pass --data DIR")
    return folder


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """Return the 500 sample images (uint8, (500, 1, 28, 28)) and labels (int64, (500,))."""
    folder = builtin_mnist_dir()
    try:
        return load_mnist(folder, "test")
    except BmhwError as err:
        # A broken sample means a broken install, not a user mistake with their data.
        raise BmhwError(f"the built-in MNIST sample is damaged ({err}); reinstall bmhw") from None
