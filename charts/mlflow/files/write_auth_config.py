"""Write the basic-auth config file that MLflow reads from MLFLOW_AUTH_CONFIG_PATH.

MLflow takes the auth database URI only from this file. With an external PostgreSQL the URI
carries a password, so the server pod's init container writes the file at start (mode 0600,
into a memory-backed emptyDir) instead of the chart shipping it in a ConfigMap. The admin
user's name and password are not written: MLflow reads them from MLFLOW_AUTH_ADMIN_*.

Environment: MLFLOW_AUTH_CONFIG_PATH, MLFLOW_AUTH_DATABASE_URI, MLFLOW_AUTH_DEFAULT_PERMISSION.
"""

from __future__ import annotations

import configparser
import os


def main() -> None:
    path = os.environ["MLFLOW_AUTH_CONFIG_PATH"]
    config = configparser.ConfigParser(interpolation=None)
    config["mlflow"] = {
        "default_permission": os.environ.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
        # MLflow reads the file with interpolation on: a URL-encoded password's % must be doubled.
        "database_uri": os.environ["MLFLOW_AUTH_DATABASE_URI"].replace("%", "%%"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        config.write(handle)
    print(f"wrote the basic-auth config to {path}")


if __name__ == "__main__":
    main()
