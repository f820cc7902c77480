"""Jinja2 templates of the generated hardware; see README.md here. Installed as ``bmhw.templates``."""
