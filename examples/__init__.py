"""Example checkpoints; see README.md here. Installed as ``bmhw.examples``."""
