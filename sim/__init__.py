"""cocotb testbenches for the generated RTL; see README.md here. Installed as ``bmhw.sim``."""
