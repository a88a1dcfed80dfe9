"""The migration Job: bring a database's schema up to this MLflow, with MLflow's own commands.

The database URI is read from the environment (a secretKeyRef), never passed as an argument:
an argument holding a password shows in ``ps``, in /proc and in the pod spec. This calls the
same functions as ``mlflow db upgrade URL`` and ``python -m mlflow.server.auth db upgrade
--url URL`` do.

Usage: ``migrate.py tracking`` (MLFLOW_BACKEND_STORE_URI) or ``migrate.py auth``
(MLFLOW_AUTH_DATABASE_URI).
"""

from __future__ import annotations

import os
import sys

import sqlalchemy


def upgrade_tracking(uri: str) -> None:
    from mlflow.db import upgrade

    upgrade.callback(uri)


def upgrade_auth(uri: str) -> None:
    from mlflow.server.auth.db.cli import upgrade

    upgrade.callback(url=uri, revision="head")


DATABASES = {
    "tracking": ("MLFLOW_BACKEND_STORE_URI", upgrade_tracking),
    "auth": ("MLFLOW_AUTH_DATABASE_URI", upgrade_auth),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in DATABASES:
        print(f"usage: migrate.py {{{'|'.join(DATABASES)}}}", file=sys.stderr)
        return 2
    variable, upgrade = DATABASES[argv[0]]
    uri = os.environ.get(variable)
    if not uri:
        print(f"{variable} is not set: the Job reads the database URI from it", file=sys.stderr)
        return 2
    # The URL without its password, for the log.
    shown = sqlalchemy.engine.make_url(uri).render_as_string(hide_password=True)
    print(f"upgrading the {argv[0]} schema of {shown}", flush=True)
    upgrade(uri)
    print(f"the {argv[0]} schema is current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
