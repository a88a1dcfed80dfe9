"""Running a command line that dagma printed the way a user pastes it into a new shell.

The shell has the user's environment without the project's virtualenv on PATH (as before
``source .venv/bin/activate``) and without any MLFLOW_*/DAGSTER_* setting of this test
process: whatever the line needs must be in the line itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = str(Path(sys.executable).parent)


def fresh_shell_env() -> dict[str, str]:
    """This process's environment as a new shell of the user's would have it."""
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry != VENV_BIN]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MLFLOW_", "DAGSTER_", "VIRTUAL_ENV"))
    }
    return {**env, "PATH": os.pathsep.join(path), "DO_NOT_TRACK": "true"}


def printed_lines(output: str, marker: str) -> list[str]:
    """The indented command lines printed right after the line containing ``marker``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line) + 1
    commands = []
    for line in lines[start:]:
        if not line.startswith("      ") or line.strip().startswith("("):
            break
        commands.append(line.strip())
    return commands


def run_as_printed(line: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``line`` through ``sh -c`` in a fresh shell's environment, in ``cwd``."""
    return subprocess.run(
        ["sh", "-c", line], cwd=cwd, env=fresh_shell_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
