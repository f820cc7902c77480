"""``python -m bmhw.cli``: the bmhw command."""

import sys

from bmhw.cli import main

sys.exit(main())
