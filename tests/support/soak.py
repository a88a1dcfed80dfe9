"""How heavy the reliability loops run: small counts in `make test`, big ones in `make soak`.

The one test setting for it, ``DAGMA_SOAK`` (``make soak`` sets it to 1). The tests are the
same either way; only their counts change, so nothing is skipped in either mode.
"""

from __future__ import annotations

import os

SOAK_WORDS = {"1": True, "true": True, "0": False, "false": False, "": False}


def _soak(raw: str) -> bool:
    value = raw.strip().lower()
    if value not in SOAK_WORDS:
        raise ValueError(
            f"DAGMA_SOAK={raw!r} is not 1/true (the heavy counts of `make soak`) or "
            "0/false/unset (the small counts of `make test`)."
        )
    return SOAK_WORDS[value]


SOAK = _soak(os.environ.get("DAGMA_SOAK", ""))


def count(test: int, soak: int) -> int:
    """``soak`` under ``make soak`` (DAGMA_SOAK=1), else ``test``."""
    return soak if SOAK else test
