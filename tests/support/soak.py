"""How heavy the reliability loops run: small counts in `make test`, big ones in `make soak`.

The one test setting for it is ``DAGMA_SOAK`` (read in :mod:`support.settings`; ``make
soak`` sets it to 1). The tests are the same either way; only their counts change, so
nothing is skipped in either mode.
"""

from __future__ import annotations

from support.settings import TEST_SETTINGS


def count(test: int, soak: int) -> int:
    """``soak`` under ``make soak`` (DAGMA_SOAK=1), else ``test``."""
    return soak if TEST_SETTINGS.soak else test
