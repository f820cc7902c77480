"""bmhw.atomic: a write is whole or absent, and the temporary files of interrupted writes do not pile up beside
their target (only plain files of exactly the names the module creates, only when stale)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bmhw.errors import BmhwError
from bmhw.atomic import write_atomically


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_the_temporary_name_names_the_writing_process(tmp_path):
    seen = []

    def write(tmp):
        seen.append(os.path.basename(tmp))
        with open(tmp, "w") as out:
            out.write("x")

    write_atomically(tmp_path / "net.bmq", write, "quantized network", "model.bmq")
    prefix, suffix = f".net.bmq.{os.getpid()}.", ".tmp"
    assert seen[0].startswith(prefix) and seen[0].endswith(suffix) and len(seen[0]) == len(prefix) + 8 + len(suffix)
    assert sorted(os.listdir(tmp_path)) == ["net.bmq"]


def test_a_killed_writer_leaves_a_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model.onnx"
    code = ("import os, sys\nfrom bmhw.atomic import write_atomically\n"
            "def write(tmp):\n    open(tmp, 'wb').write(b'half')\n    os._exit(9)  # killed mid-write\n"
            "write_atomically(sys.argv[1], write, 'ONNX model', 'model.onnx')\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    leftover = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(leftover) == 1 and leftover[0].startswith(".model.onnx.") and not target.exists()
    write_atomically(target, lambda tmp: open(tmp, "wb").write(b"whole"), "ONNX model", "model.onnx")
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"] and target.read_bytes() == b"whole"


def test_only_stale_files_of_the_targets_own_pattern_are_removed(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    target = tmp_path / "net.bmq"
    files = {
        f".net.bmq.{dead}.abcdefgh.tmp": ("file", 0, True),  # its process is gone
        f".net.bmq.{alive}.abcdefgh.tmp": ("file", 0, False),  # a write in progress
        f".net.bmq.{alive}.ijklmnop.tmp": ("file", 2 * 3600, True),  # untouched for two hours
        ".net.bmq.qrstuv_x.tmp": ("file", 2 * 3600, True),  # an earlier version's name, old
        ".net.bmq.qrstuvwy.tmp": ("file", 60, False),  # an earlier version's name, recent: can't tell
        f".net.bmq.{dead}.abcdefgh.tmp.keep": ("file", 2 * 3600, False),  # not the pattern
        f".net.bmq.{dead}.abcdefg.tmp": ("file", 2 * 3600, False),  # random part too short
        f"net.bmq.{dead}.abcdefgh.tmp": ("file", 2 * 3600, False),  # not hidden
        f".other.bmq.{dead}.abcdefgh.tmp": ("file", 2 * 3600, False),  # another target's
        f".net.{dead}.abcdefgh.tmp": ("file", 2 * 3600, False),  # another target's ("net")
        f".net.bmq.{dead}.zzzzzzzz.tmp": ("folder", 2 * 3600, False),  # a folder: never touched
        f".net.bmq.{dead}.yyyyyyyy.tmp": ("link", 2 * 3600, False),  # a link: never followed nor removed
    }
    (tmp_path / "elsewhere").write_text("the link's target")
    for name, (kind, seconds, _) in files.items():
        path = tmp_path / name
        if kind == "folder":
            path.mkdir()
            (path / "inside.txt").write_text("x")
        elif kind == "link":
            path.symlink_to(tmp_path / "elsewhere")
        else:
            path.write_text("partial")
        age(path, seconds)
    write_atomically(target, lambda tmp: open(tmp, "w").write("new"), "quantized network", "model.bmq")
    expected = {name for name, (_, _, removed) in files.items() if not removed} | {"net.bmq", "elsewhere"}
    assert set(os.listdir(tmp_path)) == expected
    assert (tmp_path / "elsewhere").read_text() == "the link's target"
    assert (tmp_path / f".net.bmq.{dead}.zzzzzzzz.tmp" / "inside.txt").is_file()


def test_a_failed_write_still_removes_its_own_temporary_file(tmp_path):
    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(BmhwError, match="cannot write checkpoint .*No space left on device"):
        write_atomically(tmp_path / "m.pt", broken, "checkpoint", "model.pt")
    assert os.listdir(tmp_path) == []
