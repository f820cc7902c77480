"""Project folders (bmhw.backends.project): a generated project carries a manifest of its files; an export never
removes what it did not write, and cleans the temporary folders of exports that were killed."""

from __future__ import annotations

import json
import os
import time

from bmhw.backends import project
from bmhw.backends.hls import csim
from bmhw.backends.verilog import rtlsim
from bmhw.resources import examples_dir
from cli_runner import run_main

BMQ = examples_dir() / "lenet_bm15_mnist.bmq"


def export(out, target="hls") -> tuple[int, str]:
    code, _, err = run_main(["export", BMQ, "--target", target, "-o", out])
    return code, err


def test_the_manifest_lists_exactly_the_files_written(tmp_path):
    assert export(tmp_path / "p") == (0, "")
    doc = json.loads((tmp_path / "p" / project.MANIFEST).read_text())
    on_disk = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert sorted(doc["files"] + [project.MANIFEST]) == on_disk
    assert doc["format"] == "bmhw-project" and doc["project"] == "HLS project"


def test_the_work_folders_are_those_the_tools_write():
    assert set(project.WORK_FOLDERS) == {csim.DATA_DIR, csim.BUILD_DIR, rtlsim.BUILD_DIR}


def test_a_users_folder_holding_a_model_is_kept_whole(tmp_path):
    """The reported data loss: bmhw export mywork/model.bmq -o mywork deleted the user's other files."""
    work = tmp_path / "mywork"
    (work / "results").mkdir(parents=True)
    (work / "model.bmq").write_bytes(BMQ.read_bytes())
    (work / "important.txt").write_text("keep me")
    (work / "results" / "run1.csv").write_text("1,2")
    code, err = export(work)
    assert code == 2 and err.count("\n") == 1
    assert "is a non-empty folder that is not a bmhw HLS project" in err
    assert (work / "important.txt").read_text() == "keep me" and (work / "results" / "run1.csv").read_text() == "1,2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mywork"]  # no temporary folder left either


def test_a_re_export_replaces_a_project_and_its_work_folders(tmp_path):
    out = tmp_path / "p"
    assert export(out)[0] == 0
    (out / "tb_data").mkdir()
    (out / "tb_data" / "input.txt").write_text("1 2 3")
    (out / "firmware" / "parameters.h").write_text("edited")  # a generated file, edited: the export's to replace
    assert export(out) == (0, "")
    assert not (out / "tb_data").exists()
    assert "edited" not in (out / "firmware" / "parameters.h").read_text()


def test_a_file_the_user_added_to_a_project_stops_the_re_export(tmp_path):
    out = tmp_path / "p"
    assert export(out, "verilog")[0] == 0
    (out / "rtl" / "my_wrapper.v").write_text("module my_wrapper; endmodule")
    code, err = export(out, "verilog")
    assert code == 2 and err.count("\n") == 1
    assert "holds rtl/my_wrapper.v, which bmhw did not write" in err
    assert (out / "rtl" / "my_wrapper.v").is_file()


def test_the_temporary_folders_of_killed_exports_are_removed(tmp_path):
    dead = tmp_path / ".p.999999999.abcdefgh.tmp"  # no such process
    old = tmp_path / f".p.{os.getpid()}.zyxwvuts.old"  # this process, but untouched for two hours
    young = tmp_path / f".p.{os.getpid()}.youngone.tmp"  # this process, just now: an export under way
    other = tmp_path / ".q.999999999.abcdefgh.tmp"  # beside another target
    for folder in (dead, old, young, other):
        (folder / "firmware").mkdir(parents=True)
    hours_ago = time.time() - 7200
    os.utime(old, (hours_ago, hours_ago))
    assert export(tmp_path / "p")[0] == 0
    assert not dead.exists() and not old.exists()
    assert young.exists() and other.exists()
