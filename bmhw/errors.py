"""The one exception type that the CLI turns into a one-line message.

Everything a user can get wrong (a missing file, a corrupt checkpoint, an unsupported layer, a width
that would overflow, a missing tool) raises :class:`BmhwError` with a message that names the problem
and the fix. Anything else reaching the CLI is a bug in bmhw and keeps its traceback.
"""


class BmhwError(Exception):
    """A user-facing error: ``str(err)`` is a complete, one-line explanation."""
