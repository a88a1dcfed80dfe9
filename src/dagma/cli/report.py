"""One line per check: a mark, what was found, and the fix; or the same as JSON for machines."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TextIO


class Status(StrEnum):
    """How a check came out. Only ``FAIL`` makes the command exit non-zero."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"


MARKS = {Status.OK: "✔", Status.WARN: "!", Status.FAIL: "✘", Status.SKIPPED: "-"}


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``found`` says what was seen, ``fix`` what to do about it."""

    name: str
    status: Status
    found: str
    fix: str = ""


@dataclass
class Report:
    """The checks of one command, in the order they ran."""

    title: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        """True when no check failed (warnings and skipped checks do not fail the command)."""
        return all(check.status is not Status.FAIL for check in self.checks)

    def add(self, check: Check) -> Check:
        """Record ``check`` and return it."""
        self.checks.append(check)
        return check

    def write(self, out: TextIO, as_json: bool = False, **extra: object) -> None:
        """Print the report as lines for people, or as one JSON document with ``extra`` keys."""
        if as_json:
            document = {
                "command": self.title,
                "ok": self.passed,
                **extra,
                "checks": [
                    {**asdict(check), "status": check.status.value} for check in self.checks
                ],
            }
            out.write(json.dumps(document, indent=2) + "\n")
            return
        width = max((len(check.name) for check in self.checks), default=0)
        for check in self.checks:
            out.write(f"{MARKS[check.status]} {check.name:<{width}}  {check.found}\n")
            if check.fix and check.status is not Status.OK:
                out.write(f"  {' ' * width}  fix: {check.fix}\n")
        verdict = "all checks passed" if self.passed else "some checks failed"
        out.write(f"{self.title}: {verdict}\n")
