"""The ``dagma`` command: ``dagma doctor`` and ``dagma verify`` (also ``python -m dagma``)."""

from __future__ import annotations

import argparse
import sys

from dagma import example
from dagma.cli.endpoints import DEFAULT_DAGSTER_URL, DEFAULT_MLFLOW_URL
from dagma.cli.verify import DEFAULT_TIMEOUT


def parser() -> argparse.ArgumentParser:
    """The command line of ``dagma``."""
    top = argparse.ArgumentParser(prog="dagma", description="Dagster + MLflow Tracking checks.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doctor = commands.add_parser(
        "doctor",
        help="check why runs would not reach MLflow (settings, server, login, experiment)",
        description="Check the MLflow settings of this environment, as the code location "
        "reads them, and the server or local store they point at. Exit 0 when all pass; "
        "MLFLOW_USE_TRACKING off is a failure (nothing reaches MLflow) unless --server-only.",
    )
    doctor.add_argument(
        "--server-only",
        action="store_true",
        help="check only the server or store, also with MLFLOW_USE_TRACKING off",
    )
    doctor.add_argument(
        "--write-test",
        action="store_true",
        help="also write a throw-away run (param, metric, artifact), read it back, delete it",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document")
    verify = commands.add_parser(
        "verify",
        help=f"materialize {example.ASSET} through Dagster and check the run in MLflow",
        description=f"End-to-end acceptance of a running deployment: launch {example.ASSET} "
        "through the Dagster webserver's GraphQL API, then find its MLflow run by the "
        f"dagster.run_id tag and check {example.describe()}.",
    )
    verify.add_argument(
        "--dagster-url",
        default=DEFAULT_DAGSTER_URL,
        help="Dagster webserver (default: %(default)s)",
    )
    verify.add_argument(
        "--mlflow-url", default=DEFAULT_MLFLOW_URL, help="MLflow server (default: %(default)s)"
    )
    verify.add_argument("--location", help="code location to use (default: the one with the asset)")
    verify.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help="seconds to wait for the run (default: %(default)s)",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON document")
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dagma`` console script; returns the exit code."""
    args = parser().parse_args(argv)
    if args.command == "doctor":
        from dagma.cli.doctor import doctor

        return doctor(write_test=args.write_test, as_json=args.json, server_only=args.server_only)
    from dagma.cli.verify import verify

    return verify(
        dagster_url=args.dagster_url,
        mlflow_url=args.mlflow_url,
        location=args.location,
        timeout=args.timeout,
        as_json=args.json,
    )


if __name__ == "__main__":
    sys.exit(main())
