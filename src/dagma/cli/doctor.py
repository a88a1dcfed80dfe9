"""``dagma doctor``: why is my run not in MLflow? Each cause checked in order, each in seconds.

Settings come from :mod:`dagma.settings`, exactly as the code location reads them;
then either the server's checks (:mod:`dagma.cli.server_checks`) or the local store's
(:func:`dagma.local_store.path_findings`), and optionally a throw-away run
(:mod:`dagma.cli.write_check`).
Once a check fails, the checks that depend on it are listed as not run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from dagma import local_store
from dagma.cli.deadline import Deadline
from dagma.cli.report import Check, Report, Status
from dagma.settings import SettingsError, TrackingSettings, load_settings, near_misses

# Seconds the checks may spend waiting for the network; with Python and MLflow's import
# (~3 s of CPU) the whole command stays under 15 s on an idle machine.
BUDGET_SECONDS = 10.0
CHECK_OF_VARIABLE = {"MLFLOW_USE_TRACKING": "switch", "MLFLOW_TRACKING_URI": "uri"}
API_CHECKS = ("host-header", "credentials", "experiment", "artifacts")


def settings_checks(report: Report, server_only: bool = False) -> TrackingSettings | None:
    """The switch and the URI, as :func:`dagma.settings.load_settings` resolves them, and any
    variable set under a near-miss name. Tracking off fails unless ``server_only``."""
    for name, meant in near_misses():
        report.add(
            Check(
                "names",
                Status.WARN,
                f"{name} is set, but dagma reads {meant} and ignores {name}",
                f"rename it to {meant} (its value is kept out of this report)"
                if name != "MLFLOW_EXPERIMENT_ID"  # MLflow's experiment id, not dagma's name
                else f"set {meant} to the experiment's name (dagma looks experiments up by name)",
            )
        )
    try:
        settings = load_settings()
    except SettingsError as exc:
        # Name the check after the variable the message starts with (switch, uri, ...).
        variable = str(exc).split("=", 1)[0]
        report.add(
            Check(
                CHECK_OF_VARIABLE.get(variable, "settings"),
                Status.FAIL,
                str(exc),
                "the code location refuses to load with this value too; correct the variable",
            )
        )
        return None
    if settings.tracking_enabled:
        report.add(Check("switch", Status.OK, "MLFLOW_USE_TRACKING is on: runs go to MLflow"))
    else:
        # "Why is my run not in MLflow?": with tracking off, this is the answer.
        report.add(
            Check(
                "switch",
                Status.WARN if server_only else Status.FAIL,
                "MLFLOW_USE_TRACKING is off (or unset): assets log to the in-memory stub and "
                "nothing reaches MLflow; the checks below show whether turning it on would work",
                "set MLFLOW_USE_TRACKING=true in the code location's environment "
                "(`dagma doctor --server-only` checks only the server and store)",
            )
        )
    report.add(
        Check(
            "uri",
            Status.OK,
            f"{settings.tracking_uri} (from {settings.tracking_uri_source}), "
            f"experiment {settings.experiment!r}",
        )
    )
    return settings


Step = tuple[tuple[str, ...], Callable[[], list[Check]]]


def _run_in_order(report: Report, steps: Iterable[Step], deadline: Deadline) -> bool:
    """Run steps until one fails; list the checks of the rest as not run. True when none failed."""
    failed: str | None = None
    for names, step in steps:
        if failed is None and deadline.expired:
            report.add(
                Check(
                    names[0],
                    Status.FAIL,
                    f"not checked: the command's {BUDGET_SECONDS:.0f} s budget ran out",
                    "this machine is very slow right now; run again",
                )
            )
            failed, names = names[0], names[1:]
        if failed is not None:
            for name in names:
                report.add(Check(name, Status.SKIPPED, f"not checked: fix {failed} first"))
            continue
        try:
            checks = step()
        except Exception as exc:  # doctor's output is a report, never a traceback
            checks = [_unexpected(names[0], exc)]
        for check in checks:
            report.add(check)
            if check.status is Status.FAIL and failed is None:
                failed = check.name
        if failed is not None:
            returned = {check.name for check in checks}
            for name in (name for name in names if name not in returned):
                report.add(Check(name, Status.SKIPPED, f"not checked: fix {failed} first"))
    return failed is None


def _unexpected(name: str, exc: Exception) -> Check:
    return Check(
        name,
        Status.FAIL,
        f"the check itself failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
        "an answer dagma did not expect: check that the URI is the MLflow server's base URL, "
        "and please report this with the line above",
    )


def server_checks(report: Report, settings: TrackingSettings, deadline: Deadline) -> bool:
    """DNS, TCP, /health, /version, then one API call for Host header, login and experiment."""
    from dagma.cli import server_checks as checks

    server = checks.TrackingServer(settings.tracking_uri, settings.tracking_uri_source)
    steps = [
        (("dns",), lambda: [checks.resolve(server, deadline)]),
        (("tcp",), lambda: [checks.connect(server, deadline)]),
        (("health",), lambda: [checks.health(server, deadline)]),
        (("version",), lambda: [checks.version(server, deadline)]),
        (API_CHECKS, lambda: checks.api_access(server, settings.experiment, deadline)),
    ]
    return _run_in_order(report, steps, deadline)


def store_checks(settings: TrackingSettings) -> list[Check]:
    """The local store's rules (:mod:`dagma.local_store`) as checks: MLflow's opt-in, the path."""
    findings = local_store.path_findings(
        settings.tracking_uri, settings.tracking_uri_source, settings.allow_file_store
    )
    return [
        Check(found.name, Status.OK if found.ok else Status.FAIL, found.found, found.fix)
        for found in findings
    ]


def doctor(
    write_test: bool = False,
    out: TextIO = sys.stdout,
    as_json: bool = False,
    server_only: bool = False,
) -> int:
    """Run every check, print the report; return the exit code (0 only when all pass).

    Tracking switched off is a failure (nothing reaches MLflow) unless ``server_only``.
    """
    deadline = Deadline(BUDGET_SECONDS)
    report = Report("dagma doctor", [])
    settings = settings_checks(report, server_only=server_only)
    if settings is not None:
        if settings.local_store:
            checks = store_checks(settings)
            names = tuple(check.name for check in checks)
            healthy = _run_in_order(report, [(names, lambda: checks)], deadline)
        else:
            healthy = server_checks(report, settings, deadline)
        if write_test:
            if healthy:
                from dagma.cli.write_check import write_check

                try:
                    check = write_check(settings.tracking_uri, settings.experiment, deadline)
                except Exception as exc:  # a report, never a traceback
                    check = _unexpected("write-test", exc)
                report.add(check)
            else:
                report.add(Check("write-test", Status.SKIPPED, "not run: fix the failures first"))
    report.write(out, as_json=as_json, duration_seconds=round(deadline.elapsed, 2))
    return 0 if report.passed else 1
