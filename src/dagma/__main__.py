"""``python -m dagma doctor`` / ``python -m dagma verify``: the same as the ``dagma`` command."""

import sys

from dagma.cli import main

sys.exit(main())
