"""The fused C++ max-plus kernels (``csrc/maxplus.cpp``): compiled on first use, cached, optional.

``extension()`` returns the compiled module, or None where it cannot be had (no C++ compiler, a failed
build, or ``BMHW_KERNELS=0`` in the environment); the first failure says so once, as a warning, and BM
layers fall back to the chunked PyTorch path of ``bmhw.nn.maxplus`` (same results, slower).

The build uses PyTorch's own extension builder (g++ with OpenMP, ``-O3 -march=native``) into
``$BMHW_CACHE_DIR/kernels`` (default ``~/.cache/bmhw/kernels``), in a folder keyed by the PyTorch and Python
versions and a hash of the source, the flags and the PyTorch install (:func:`build_dir`), so that installs
with other sources or another PyTorch never share or overwrite a build; later imports load it in a fraction
of a second. A compile says so on stderr first (about a minute).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import warnings
from pathlib import Path

from bmhw.atomic import write_atomically

_state = {"tried": False, "module": None, "reason": None}
SOURCE = Path(__file__).with_name("csrc") / "maxplus.cpp"
NAME = "bmhw_maxplus"
CFLAGS = ("-O3", "-march=native", "-fopenmp")
LDFLAGS = ("-fopenmp",)


def cache_dir() -> Path:
    root = os.environ.get("BMHW_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "bmhw") / "kernels"


def build_key(source: bytes, cflags, ldflags, torch_version: str, torch_dir: str, python=sys.version_info[:2]) -> str:
    """The name of the cache folder of one build. Everything that goes into the compile command is in it: the
    source, the flags, and the PyTorch install whose headers it includes (ninja recompiles whenever the command
    changes, so two installs sharing a folder would rebuild over each other)."""
    digest = hashlib.sha256()
    for part in (source, "\0".join(cflags).encode(), "\0".join(ldflags).encode(), torch_dir.encode()):
        digest.update(hashlib.sha256(part).digest())  # each part hashed alone: no two splits give one stream
    return f"torch{torch_version.replace('+', '_')}-py{python[0]}{python[1]}-{digest.hexdigest()[:16]}"


def build_dir() -> Path:
    """The cache folder of the kernels of this install (:func:`build_key`)."""
    import torch

    key = build_key(SOURCE.read_bytes(), CFLAGS, LDFLAGS, torch.__version__, str(Path(torch.__file__).parent))
    return cache_dir() / key


def _source_copy(folder: Path) -> Path:
    """The source, copied into its build folder: the compile command then names the same file for every install
    with this source (the folder's key says it is this source), and ninja finds nothing to redo."""
    copy = folder / SOURCE.name
    if not copy.is_file() or copy.read_bytes() != SOURCE.read_bytes():
        write_atomically(copy, lambda tmp: shutil.copyfile(SOURCE, tmp), "kernel source", SOURCE.name)
    return copy


def _build():
    from torch.utils.cpp_extension import load

    # The ninja of the `ninja` wheel sits beside this Python, which need not be on PATH.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    folder = build_dir()
    folder.mkdir(parents=True, exist_ok=True)
    source = _source_copy(folder)
    if not (folder / f"{NAME}.so").is_file():  # a minute of silence looks like a hang: say why
        print(f"bmhw: compiling the fused max-plus kernels (once per install, about a minute) into {folder} ...",
              file=sys.stderr, flush=True)
    return load(name=NAME, sources=[str(source)], build_directory=str(folder), extra_cflags=list(CFLAGS),
                extra_ldflags=list(LDFLAGS), verbose=False)


def extension():
    """The compiled kernels, or None (with a one-time warning) where they cannot be built."""
    if not _state["tried"]:
        _state["tried"] = True
        if os.environ.get("BMHW_KERNELS", "1") == "0":
            _state["reason"] = "turned off by BMHW_KERNELS=0"
            return None
        try:
            _state["module"] = _build()
        except Exception as err:  # noqa: BLE001 - no compiler, no ninja, a failed build: all mean "fall back"
            # The compiler's first error says more than the command line ninja repeats.
            text = str(err)
            errors = [line for line in text.splitlines() if "error" in line.lower() and "Error building" not in line]
            detail = " ".join((errors[0] if errors else text).split())[:200]
            _state["reason"] = f"build failed: {detail}"
            warnings.warn(f"bmhw: the C++ max-plus kernels could not be built ({detail}); BM layers use the slower "
                          "PyTorch path (install a C++ compiler, g++, to get them)", RuntimeWarning, stacklevel=2)
    return _state["module"]


def status() -> str:
    """One line: whether the fused kernels are in use, and why not."""
    module = extension()
    return "fused C++ kernels" if module is not None else f"PyTorch fallback ({_state['reason']})"
