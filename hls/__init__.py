"""Hand-written Vitis HLS support headers; see README.md here. Installed as ``bmhw.hls``."""
