"""Atomic file output: a file is either written whole or not at all (no half-written outputs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from bmhw.errors import BmhwError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write: Callable[[str], None], what: str, example: str) -> Path:
    """Call ``write(tmp_name)`` on a temporary file beside ``path``, then rename it into place.

    ``what`` names the output in errors ("checkpoint"); ``example`` is a file name to suggest when
    ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise BmhwError(f"output {path} is a folder: give a file name such as {path / example}")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; outputs are ordinary files
        write(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise BmhwError(f"cannot write {what} {path}: {err.strerror or err}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
