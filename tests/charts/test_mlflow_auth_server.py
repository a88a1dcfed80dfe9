"""With ``auth.enabled`` the server, run exactly as rendered, admits only the admin Secret's user.

One release per module, like test_mlflow_server.py: rendered with basic auth on and the
admin credentials in a Secret (``username``/``password``, the contract charts/dagma relies
on); the Secret's data is handed to the pods the way the kubelet would hand it over.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from support import container_spec, mlflow_servers
from support.helm import Rendered, render

from dagma.dev.local_mlflow import free_port

ADMIN_SECRET = "mlflow-admin"
USERNAME = "dagma-admin"
PASSWORD = secrets.token_urlsafe(24)
CREDENTIALS = {ADMIN_SECRET: {"username": USERNAME, "password": PASSWORD}}


@pytest.fixture(scope="module", autouse=True)
def _basic_auth_installed() -> None:
    mlflow_servers.require_basic_auth()


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render(
        "mlflow",
        {
            "server": {"port": free_port()},
            "auth": {"enabled": True, "existingSecret": ADMIN_SECRET},
        },
    )


@pytest.fixture(scope="module")
def pod(
    rendered: Rendered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[mlflow_servers.ServerPod]:
    with mlflow_servers.serving(
        rendered, tmp_path_factory.mktemp("mlflow-auth-release"), secrets=CREDENTIALS
    ) as started:
        yield started


def _status(url: str, username: str | None = None, password: str | None = None) -> int:
    headers = {}
    if username is not None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return mlflow_servers.http_status(url, headers)


def _search(pod: mlflow_servers.ServerPod) -> str:
    return f"{pod.url}/api/2.0/mlflow/experiments/search?max_results=1"


def test_helm_test_pod_logs_an_artifact_with_the_admin_secrets_credentials(
    pod: mlflow_servers.ServerPod, rendered: Rendered, tmp_path: Path
):
    test_pod = rendered.tests[0]
    local = mlflow_servers.localizer(rendered, tmp_path, pod.volume, CREDENTIALS)(
        test_pod, test_pod["spec"]["containers"][0]["name"]
    )
    assert local.env["MLFLOW_TRACKING_USERNAME"] == USERNAME
    # The one change: the Service URL is this local server.
    local = replace(local, env={**local.env, "MLFLOW_TRACKING_URI": pod.url})
    result = local.run(timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr


def test_admin_from_the_secret_is_admitted(pod: mlflow_servers.ServerPod):
    assert _status(_search(pod), USERNAME, PASSWORD) == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), (USERNAME, "wrong-password-123"), ("admin", PASSWORD)],
    ids=["anonymous", "wrong-password", "wrong-user"],
)
def test_others_are_refused(
    pod: mlflow_servers.ServerPod, username: str | None, password: str | None
):
    assert _status(_search(pod), username, password) == 401


def test_health_stays_open_for_probes(pod: mlflow_servers.ServerPod):
    assert _status(f"{pod.url}/health") == 200


def test_users_are_stored_on_the_volume(pod: mlflow_servers.ServerPod):
    with sqlite3.connect(pod.volume / "basic_auth.db") as db:
        admins = db.execute("SELECT username FROM users WHERE is_admin").fetchall()
    assert admins == [(USERNAME,)]


def test_admin_password_appears_in_no_manifest_argv_file_or_log(
    pod: mlflow_servers.ServerPod, rendered: Rendered
):
    manifests = yaml.safe_dump_all(rendered.all()) + rendered.notes
    argv = [
        Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        for pid in container_spec.process_tree(pod.process.pid)
    ]
    files = [p.read_text(errors="replace") for p in pod.volume.parent.rglob("*.ini")]
    files += [p.read_text(errors="replace") for p in pod.volume.parent.rglob("*.log")]
    assert files and argv
    for where, text in [
        ("manifests", manifests),
        ("argv", "\n".join(argv)),
        ("files", "".join(files)),
    ]:
        assert PASSWORD not in text, f"the admin password leaked into {where}"


def test_auth_config_keeps_a_url_encoded_database_password(rendered: Rendered, tmp_path: Path):
    # With PostgreSQL the auth database URI carries a password; "%40" must survive MLflow's
    # interpolating config parser.
    uri = "postgresql://mlflow:p%40ss%25word@db.example:5432/mlflow"
    localize = mlflow_servers.localizer(rendered, tmp_path, tmp_path / "volume", CREDENTIALS)
    writer = localize(rendered.one("Deployment"), "auth-config")
    writer = replace(writer, env={**writer.env, "MLFLOW_AUTH_DATABASE_URI": uri})
    assert writer.run(timeout=60).returncode == 0
    read = subprocess.run(
        [
            writer.argv[0],
            "-c",
            "import json; from mlflow.server.auth.config import read_auth_config as r; "
            "c = r(); print(json.dumps([c.database_uri, c.default_permission]))",
        ],
        env=writer.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout.strip().splitlines()[-1]) == [uri, "READ"]
