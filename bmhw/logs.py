"""Reading the logs of the external tools (Verilator, Yosys, nextpnr) for the one line a user needs."""

from __future__ import annotations

from pathlib import Path


def first_problem(text: str, fallback: str) -> str:
    """The first error or warning line of a tool's output (or ``fallback``). Verilator's warnings, fatal by
    default, come before its "Exiting due to" summary, which is skipped when anything else was found."""
    problems = [line.strip() for line in text.splitlines()
                if line.startswith(("%Error", "%Warning")) or "error:" in line.lower()]
    problems = [line for line in problems if "Exiting due to" not in line] or problems
    return (problems or [fallback])[0]


def first_problem_in(log: Path, fallback: str) -> str:
    """``first_problem`` of a log file; ``fallback`` when it cannot be read."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        text = ""
    return first_problem(text, fallback)
