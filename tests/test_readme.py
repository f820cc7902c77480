"""The README's test command is what CI runs, character for character."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _code_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    blocks = _code_blocks((ROOT / "README.md").read_text())
    test_commands = [b for b in blocks if "pytest" in b and "\n" not in b]
    assert len(test_commands) == 1, f"expected one one-line test command in README, found {test_commands}"
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_commands[0] in ci_lines


def test_readme_main_command_runs_the_demo():
    blocks = _code_blocks((ROOT / "README.md").read_text())
    assert any(b.startswith("python3 -m venv .venv") and b.endswith("bmhw demo") for b in blocks)


def test_readme_states_the_patent_application():
    assert "US 2025/0328776 A1" in (ROOT / "README.md").read_text()
