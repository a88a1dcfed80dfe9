"""One build of the cluster's binaries per cache: a second process waits for the first.

`.ci/run` builds in the background while other tests run; a `make cluster-up` started
meanwhile must wait for that build, not race it into the same `.partial` directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localcluster import binaries

HOLD_SECONDS = 2.0

HOLDER = f"""
import time
from localcluster import binaries
with binaries.build_lock():
    print("holding", flush=True)
    time.sleep({HOLD_SECONDS})
print("released", flush=True)
"""


def test_a_second_build_waits_for_the_first_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = dict(os.environ, DAGMA_CLUSTER_CACHE=str(tmp_path / "cache"))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(binaries.__file__).parents[1],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("DAGMA_CLUSTER_CACHE", str(tmp_path / "cache"))
        said: list[str] = []
        began = time.monotonic()
        with binaries.build_lock(log=said.append):
            waited = time.monotonic() - began
            assert holder.stdout.readline().strip() == "released"  # it let go first
        assert waited > HOLD_SECONDS / 2, f"took the lock after {waited:.1f} s, while it was held"
        assert any("waiting for another build" in line for line in said), said
        assert any(str(tmp_path / "cache") in line for line in said), said
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0


def test_a_build_alone_takes_the_lock_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGMA_CLUSTER_CACHE", str(tmp_path / "cache"))
    said: list[str] = []
    with binaries.build_lock(log=said.append):
        pass
    assert said == []
    assert (tmp_path / "cache" / "build.lock").exists()
