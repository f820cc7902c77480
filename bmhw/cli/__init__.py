"""The ``bmhw`` command line: ``bmhw train | convert | distill | quantize | eval | export | import-onnx | csim |
sim | gates | demo``; ``bmhw COMMAND --help`` for each.

``parser`` builds the arguments; each command lives in the module of its group (``train``, ``evaluate``,
``export``, ``gates``, ``demo``), parses what the library needs, calls it and prints. User mistakes raise
:class:`bmhw.errors.BmhwError`; ``main`` prints them as one line on stderr and exits with status 2.
"""

from __future__ import annotations

import importlib
import sys

from bmhw.cli.parser import build_parser
from bmhw.errors import BmhwError

# Command -> the module of its group (imported on use, so that `bmhw --help` answers without loading torch).
COMMANDS = {"train": "train", "convert": "train", "distill": "train", "quantize": "evaluate", "calibrate": "evaluate",
            "eval": "evaluate",
            "export": "export", "import-onnx": "export", "csim": "export", "sim": "export", "gates": "gates",
            "demo": "demo"}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        module = importlib.import_module(f"bmhw.cli.{COMMANDS[args.command]}")
        return getattr(module, f"cmd_{args.command.replace('-', '_')}")(args) or 0
    except BmhwError as err:
        print(f"bmhw: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bmhw: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
