"""bmhw: bipolar morphological neural networks from training to verified FPGA hardware."""

__version__ = "0.1.0"

from bmhw.errors import BmhwError  # noqa: E402

__all__ = ["BmhwError", "__version__"]
