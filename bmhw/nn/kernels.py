"""The fused C++ max-plus kernels (``csrc/maxplus.cpp``): compiled on first use, cached, optional.

``extension()`` returns the compiled module, or None where it cannot be had (no C++ compiler, a failed
build, or ``BMHW_KERNELS=0`` in the environment); the first failure says so once, as a warning, and BM
layers fall back to the chunked PyTorch path of ``bmhw.nn.maxplus`` (same results, slower).

The build uses PyTorch's own extension builder (g++ with OpenMP, ``-O3 -march=native``) into
``$BMHW_CACHE_DIR/kernels`` (default ``~/.cache/bmhw/kernels``), keyed by the PyTorch and Python versions;
later imports load it in a fraction of a second.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_state = {"tried": False, "module": None, "reason": None}
SOURCE = Path(__file__).with_name("csrc") / "maxplus.cpp"


def cache_dir() -> Path:
    root = os.environ.get("BMHW_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "bmhw") / "kernels"


def _build():
    import torch
    from torch.utils.cpp_extension import load

    # The ninja of the `ninja` wheel sits beside this Python, which need not be on PATH.
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    version = f"torch{torch.__version__.replace('+', '_')}-py{sys.version_info.major}{sys.version_info.minor}"
    build_dir = cache_dir() / version
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("*.so")):
        print(f"bmhw: compiling the C++ max-plus kernels once (about a minute) into {build_dir}", file=sys.stderr)
    return load(name="bmhw_maxplus", sources=[str(SOURCE)], build_directory=str(build_dir),
                extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)


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
