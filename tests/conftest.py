"""Shared fixtures: a tiny synthetic MNIST-format dataset that a short training run learns.

No test reads a real dataset (CI may not have one): every file is written here, in tmp folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from torch import nn

from bmhw.data import write_idx

# CI replays the same examples every run (reproducible verdicts); local runs keep exploring.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

SYNTH_TRAIN = 512
SYNTH_TEST = 256
# Top-left corners of the bright 7x7 blob that marks each class (jittered by +-1 pixel, so it stays
# inside the 28x28 image).
CLASS_POSITIONS = [(2, 2), (2, 10), (2, 19), (10, 2), (10, 10), (10, 19), (19, 2), (19, 10), (19, 19),
                   (6, 6)]


def synthetic_mnist(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 uint8 images and uint8 labels: class c is a bright blob at CLASS_POSITIONS[c],
    jittered by up to one pixel, over uniform noise; labels cycle so every class is present."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        top, left = CLASS_POSITIONS[label]
        dy, dx = rng.integers(-1, 2, size=2)
        images[i, top + dy:top + dy + 7, left + dx:left + dx + 7] = rng.integers(200, 256, size=(7, 7))
    return images, labels


def write_synthetic_mnist(folder: Path, n_train: int = SYNTH_TRAIN, n_test: int = SYNTH_TEST) -> Path:
    """Write all four gzipped MNIST IDX files of a synthetic dataset into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_mnist(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture(scope="session")
def synth_mnist(tmp_path_factory) -> Path:
    """Folder with a learnable synthetic MNIST (512 train, 256 test images, gzipped IDX files).

    Session-scoped and shared: tests must not write into it.
    """
    return write_synthetic_mnist(tmp_path_factory.mktemp("synth_mnist"))


@pytest.fixture(scope="session")
def mnist_writer():
    """``write_synthetic_mnist(folder, n_train=512, n_test=256)``, for tests that need their own copy."""
    return write_synthetic_mnist


@pytest.fixture(scope="session")
def synth_arrays(synth_mnist):
    """The synthetic dataset as loaded by bmhw: {"train": (images, labels), "test": (...)}."""
    from bmhw.data import load_mnist

    return {split: load_mnist(synth_mnist, split) for split in ("train", "test")}


def build_sequential(spec: dict, classical: bool = False) -> nn.Sequential:
    """A Sequential of BM layers (classical ones with ``classical``) from a spec: {"seed", "in": (C, H, W),
    "convs": [(out, k, stride, pad, pool)], "linears": [outs]}; ReLU after every weight layer but the last,
    pool after the ReLU. ``spec["maxima"]`` (BM only, optional): one maxima value per weight layer ("N", "Ns",
    "K", "Ks" or an int; a count above the layer's fan-in is cut to it)."""
    torch.manual_seed(spec["seed"])
    from bmhw.nn import BMConv2d, BMLinear

    if classical:
        BMConv2d, BMLinear = nn.Conv2d, nn.Linear  # noqa: N806 - the same constructor signatures

    c, h, w = spec["in"]
    modules = []
    n_weight = len(spec["convs"]) + len(spec["linears"])
    index = 0
    maxima = list(spec.get("maxima") or []) if not classical else []

    def grouping(fan_in):  # the keyword arguments of the next weight layer's maxima
        if index >= len(maxima):
            return {}
        text = str(maxima[index])
        split = text.endswith("s")
        count = text[:-1] if split else text
        count = fan_in if count == "K" else min(int(count), fan_in)
        return {"maxima": f"{count}{'s' if split else ''}"}

    for out, k, stride, pad, pool in spec["convs"]:
        modules.append(BMConv2d(c, out, k, stride=stride, padding=pad, **grouping(c * k * k)))
        index += 1
        if index < n_weight:
            modules.append(nn.ReLU())
        c, h, w = out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if pool:
            modules.append(nn.MaxPool2d(pool))
            h, w = h // pool, w // pool
    modules.append(nn.Flatten())
    features = c * h * w
    for out in spec["linears"]:
        modules.append(BMLinear(features, out, **grouping(features)))
        index += 1
        if index < n_weight:
            modules.append(nn.ReLU())
        features = out
    net = nn.Sequential(*modules).eval()
    if spec.get("signed") and not classical:
        # Mirror a random half of every layer's outputs (sign -1), drawn from the spec's seed.
        g = torch.Generator().manual_seed(spec["seed"])
        with torch.no_grad():
            for m in net:
                if hasattr(m, "sign") and not getattr(m, "split_sign", False):
                    m.sign.copy_(torch.where(torch.rand(m.sign.shape, generator=g) < 0.5, -1.0, 1.0))
    return net


def draw_layers(draw, max_side: int, max_pool: int) -> dict:
    """Hypothesis: a random network spec for ``build_sequential`` (seed, input of up to ``max_side`` pixels a
    side, 0-2 convolutions with padding, stride and max pooling of 2 .. ``max_pool``, 1-3 linear layers)."""
    from hypothesis import strategies as st

    spec = {"seed": draw(st.integers(0, 2**31 - 1))}
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    spec["in"] = (c, h, w)
    convs = []
    for _ in range(draw(st.integers(0, 2))):
        pad = draw(st.integers(0, 1))
        k = draw(st.integers(1, min(3, h + 2 * pad, w + 2 * pad)))
        stride = draw(st.integers(1, 2))
        out = draw(st.integers(1, 3))
        h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        pool = 0
        if min(h, w) >= 2 and draw(st.booleans()):
            pool = draw(st.integers(2, min(max_pool, h, w))) if max_pool > 2 else 2
            h, w = h // pool, w // pool
        convs.append((out, k, stride, pad, pool))
    spec["convs"] = convs
    spec["linears"] = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    return spec
