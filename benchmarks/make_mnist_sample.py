#!/usr/bin/env python3
"""Regenerate bmhw's built-in MNIST sample: the first N (default 500) images of the test set.

Reads ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` from an MNIST folder,
checks them against the official md5s, and writes gzipped IDX files (gzip mtime 0, so the bytes
are the same on every run) plus README.md into ``bmhw/data/mnist_sample/``.

    python benchmarks/make_mnist_sample.py [--mnist DIR] [--out DIR] [--count N]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing bmhw

from bmhw.data.idx import encode_idx, write_idx  # noqa: E402
from bmhw.data.mnist import load_mnist  # noqa: E402

# md5 of the decompressed official test files (the IDX encoding is canonical, so re-encoding the
# loaded arrays reproduces those bytes exactly).
OFFICIAL_MD5 = {
    "images": "2646ac647ad5339dbf082846283269ea",
    "labels": "27ae3e4e09519cfbb04c329615203637",
}
IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"

README = """\
# Built-in MNIST sample

The first {count} images and labels of the MNIST **test** set (`t10k-*`, indices 0..{last}), in
the official order, stored as gzipped IDX files in the same format as the originals:

| file | contents | md5 of the .gz file |
| --- | --- | --- |
| `{images}` | uint8, shape ({count}, 28, 28) | {images_md5} |
| `{labels}` | uint8, shape ({count},), values 0..9 | {labels_md5} |

The MNIST digits are by Yann LeCun, Corinna Cortes and Christopher Burges (THE MNIST DATABASE of
handwritten digits). Only this small excerpt ships with bmhw, for the built-in demo, the examples
and tests; use the full data set (`--data DIR`) for real training and accuracy numbers.

Made by `python benchmarks/make_mnist_sample.py` from the official test files
`t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`, whose decompressed md5s
({src_images_md5} and {src_labels_md5}) the script checks.
It keeps the first {count} entries and writes them with gzip level 9 and mtime 0, so re-running
it gives byte-identical files. Load them with `bmhw.data.load_mnist_sample()`.
"""


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ROOT / ".." / "shared" / "data" / "mnist",
                        help="folder with the MNIST test files (default: ../shared/data/mnist)")
    parser.add_argument("--out", type=Path, default=ROOT / "bmhw" / "data" / "mnist_sample",
                        help="output folder (default: bmhw/data/mnist_sample)")
    parser.add_argument("--count", type=int, default=500, help="images to keep (default 500)")
    args = parser.parse_args(argv)

    images, labels = load_mnist(args.mnist, "test")
    images = images.reshape(-1, 28, 28)  # back to the IDX layout (N, 28, 28)
    labels = labels.astype("uint8")
    found = {"images": md5(encode_idx(images)), "labels": md5(encode_idx(labels))}
    for kind, digest in found.items():
        if digest != OFFICIAL_MD5[kind]:
            sys.exit(f"{args.mnist}: test {kind} md5 {digest} is not the official "
                     f"{OFFICIAL_MD5[kind]}; refusing to build the sample from it")
    if not 0 < args.count <= len(images):
        sys.exit(f"--count must be in 1..{len(images)}")

    args.out.mkdir(parents=True, exist_ok=True)
    write_idx(args.out / IMAGES, images[: args.count])
    write_idx(args.out / LABELS, labels[: args.count])
    readme = README.format(
        count=args.count, last=args.count - 1, images=IMAGES, labels=LABELS,
        images_md5=md5((args.out / IMAGES).read_bytes()),
        labels_md5=md5((args.out / LABELS).read_bytes()),
        src_images_md5=found["images"], src_labels_md5=found["labels"],
    )
    (args.out / "README.md").write_text(readme)
    total = sum((args.out / f).stat().st_size for f in (IMAGES, LABELS, "README.md"))
    print(f"wrote {args.count} images to {args.out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
