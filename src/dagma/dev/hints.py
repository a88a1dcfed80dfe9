"""The command lines ``make demo`` and ``make dev`` print, built from the settings in use.

Every line is meant to be pasted as printed: a ``make`` hint repeats all the settings the
user gave (a new port among them), and the ``dagma doctor`` / ``dagma verify`` lines carry
the very environment and ports the runs use, with this environment's ``dagma`` by its
absolute path (a shell without the virtualenv activated runs it too).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path


def make_command(target: str, settings: Mapping[str, object]) -> str:
    """``make TARGET NAME=VALUE ...`` with every one of ``settings``, in their order."""
    return shlex.join(["make", target, *(f"{name}={value}" for name, value in settings.items())])


def dagma_program() -> str:
    """This environment's ``dagma`` command (the console script beside the interpreter)."""
    script = Path(sys.executable).parent / "dagma"
    return str(script) if script.exists() else shlex.join([sys.executable, "-m", "dagma"])


def doctor_command(settings_env: Mapping[str, str]) -> str:
    """``dagma doctor`` with ``settings_env`` (the MLflow variables the runs get) in front."""
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings_env.items())
    return f"{assignments} {dagma_program()} doctor"


def verify_command(dagster_url: str, mlflow_url: str) -> str:
    """``dagma verify`` against the Dagster webserver and the MLflow server in use."""
    return f"{dagma_program()} verify " + shlex.join(
        ["--dagster-url", dagster_url, "--mlflow-url", mlflow_url]
    )
