"""Running the bmhw command line in tests: in-process (``run_main``) or as the installed script."""

from __future__ import annotations
import contextlib
import io
import re
import sys
from pathlib import Path
from bmhw.cli import main


ACCURACY_LINE = re.compile(r"^accuracy: (\d+\.\d\d)%$", re.M)


BMHW_SCRIPT = Path(sys.executable).parent / "bmhw"


def run_main(argv) -> tuple[int, str, str]:
    """Run ``bmhw.cli.main`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def ok(argv) -> str:
    code, out, err = run_main(argv)
    assert code == 0, f"bmhw {' '.join(map(str, argv))} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err
    return out


def accuracy_of(stdout: str) -> float:
    """The percentage from the single 'accuracy: NN.NN%' line of ``bmhw eval``."""
    lines = ACCURACY_LINE.findall(stdout)
    assert len(lines) == 1, f"expected one accuracy line in:\n{stdout}"
    return float(lines[0])


def flat(text: str) -> str:
    """Whitespace-normalised text (rich wraps long console lines)."""
    return " ".join(text.split())


def assert_one_line_error(code: int, stderr: str) -> str:
    assert code == 2, f"exit code {code}, stderr:\n{stderr}"
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"stderr is not one line:\n{stderr}"
    assert lines[0].startswith("bmhw: error: ")
    return lines[0]
