"""Where the files that ship with bmhw live, in a checkout and in an installed package alike."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def templates_dir() -> Path:
    """Jinja2 templates (templates/ in the repository)."""
    return _package_dir("bmhw.templates")


def hls_dir() -> Path:
    """Hand-written HLS support headers (hls/ in the repository)."""
    return _package_dir("bmhw.hls")


def sim_dir() -> Path:
    """cocotb testbenches (sim/ in the repository)."""
    return _package_dir("bmhw.sim")


def examples_dir() -> Path:
    """The bundled example checkpoints (examples/ in the repository)."""
    return _package_dir("bmhw.examples")
