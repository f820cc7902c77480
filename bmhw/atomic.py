"""Atomic file output: a file is either written whole or not at all (no half-written outputs).

The temporary file of a write is ``.NAME.PID.XXXXXXXX.tmp`` beside the target ``NAME`` (PID: the writing process,
XXXXXXXX: tempfile's random part). A process killed mid-write leaves it behind; the next write to the same target
removes such leftovers (:func:`remove_stale`): those whose process is gone, and any older than an hour (also the
``.NAME.XXXXXXXX.tmp`` of earlier versions, which name no process). Only plain files of exactly these names.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from bmhw.errors import BmhwError

# A temporary file untouched this long is a leftover whatever its process (a write takes seconds).
STALE_SECONDS = 3600
_RANDOM = r"[a-z0-9_]{8}"  # the random part of tempfile's names


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists here; True where that cannot be told (signal 0 is a probe on POSIX only)."""
    if os.name != "posix" or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: alive, someone else's
        return True
    return True


def remove_stale(path: Path, folders: bool = False) -> list[Path]:
    """Remove the temporary files that earlier, interrupted writes to ``path`` left beside it; return them. With
    ``folders``, the temporary folders of an interrupted project export instead (``.NAME.PID.XXXXXXXX.tmp`` or
    ``.old``, bmhw.backends.project). Best effort: an entry that cannot be examined or removed stays."""
    pid = r"(?P<pid>\d+)\." if folders else r"(?:(?P<pid>\d+)\.)?"
    name = re.compile(rf"\.{re.escape(path.name)}\.{pid}{_RANDOM}\.{'(?:tmp|old)' if folders else 'tmp'}")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = name.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            old = time.time() - info.st_mtime > STALE_SECONDS
            orphan = match["pid"] is not None and not _running(int(match["pid"]))
            if not (old or orphan):
                continue
            if folders and stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            elif not folders and stat.S_ISREG(info.st_mode):
                os.unlink(entry.path)
            else:
                continue
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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
