"""The server runs exactly as the rendered Deployment says, and loses nothing.

One release per module (the server takes 15-60 s to start on a small machine): the chart is
rendered with default values (plus a free port), the migration Job, the init containers and
the server run as local processes from the manifests (support.mlflow_servers), then the
``helm test`` Pod's command and a separate client process talk to the server.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support import mlflow_servers
from support.helm import Rendered, render

from dagma.dev.local_mlflow import free_port

CLIENT_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # A dead server fails the test at once instead of after minutes of retries.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # Straight to 127.0.0.1, even where a proxy is configured.
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}

# A separate client process: it writes a file in its own working directory and logs it.
LOG_ARTIFACT = """
import json, os, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
experiment_id = client.create_experiment("artifact-roundtrip")
run = client.create_run(experiment_id)
with open("model.bin", "wb") as handle:
    handle.write(bytes.fromhex(sys.argv[2]))
client.log_artifact(run.info.run_id, "model.bin", artifact_path="model")
client.set_terminated(run.info.run_id)
print(json.dumps({"experiment_id": experiment_id, "run_id": run.info.run_id,
                  "artifact_uri": run.info.artifact_uri}))
"""


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    # Defaults, except the port: a free one, so parallel suites and `make demo` do not clash.
    return render("mlflow", {"server": {"port": free_port()}})


@pytest.fixture(scope="module")
def pod(
    rendered: Rendered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[mlflow_servers.ServerPod]:
    with mlflow_servers.serving(rendered, tmp_path_factory.mktemp("mlflow-release")) as started:
        yield started


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def _get(url: str, host: str | None = None) -> int:
    return mlflow_servers.http_status(url, {"Host": host} if host else None)


def _artifacts_destination(pod: mlflow_servers.ServerPod) -> Path:
    return Path(_arg(pod.server.argv, "--artifacts-destination"))


def test_servers_wait_for_the_migration_job_instead_of_migrating(pod: mlflow_servers.ServerPod):
    assert pod.waited_for_job, "wait-for-schema ended before the migration Job had run"
    assert (pod.volume / "mlflow.db").is_file()
    assert "Creating initial MLflow database tables" not in pod.log(), (
        "the server initialised the schema itself: it raced the migration Job"
    )


def test_helm_test_pod_logs_a_run_and_reads_its_artifact_back(
    pod: mlflow_servers.ServerPod, rendered: Rendered, tmp_path: Path
):
    test_pod = rendered.tests[0]
    local = mlflow_servers.localizer(rendered, tmp_path, pod.volume, {})(
        test_pod, test_pod["spec"]["containers"][0]["name"]
    )
    # The one change: the Service URL (http://mlflow:5000) is this local server.
    assert local.env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    local = replace(local, env={**local.env, "MLFLOW_TRACKING_URI": pod.url})
    result = local.run(timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])

    stored = list(_artifacts_destination(pod).rglob(Path(summary["artifact_path"]).name))
    assert [p for p in stored if summary["run_id"] in p.parts], f"not on the volume: {stored}"
    assert stored[0].read_text() == summary["payload"]
    with sqlite3.connect(pod.volume / "mlflow.db") as db:
        status = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (summary["run_id"],))
        assert status.fetchone() == ("FINISHED",)


def test_artifact_from_another_process_and_directory_lands_on_the_volume_and_downloads(
    pod: mlflow_servers.ServerPod, tmp_path: Path
):
    client_dir = tmp_path / "elsewhere"
    client_dir.mkdir()
    payload = os.urandom(4096)
    result = subprocess.run(
        [sys.executable, "-c", LOG_ARTIFACT, pod.url, payload.hex()],
        cwd=client_dir,
        env={**os.environ, **CLIENT_ENV},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    logged = json.loads(result.stdout.strip().splitlines()[-1])

    assert logged["artifact_uri"].startswith("mlflow-artifacts:/")
    # The client kept nothing but its own file: no mlruns/ or mlartifacts/ on its disk.
    assert sorted(p.name for p in client_dir.iterdir()) == ["model.bin"]
    on_volume = [
        p for p in _artifacts_destination(pod).rglob("model.bin") if logged["run_id"] in p.parts
    ]
    assert len(on_volume) == 1 and on_volume[0].read_bytes() == payload

    relative = logged["artifact_uri"].removeprefix("mlflow-artifacts:/")
    download = f"{pod.url}/api/2.0/mlflow-artifacts/artifacts/{relative}/model/model.bin"
    with mlflow_servers.DIRECT.open(download, timeout=30) as response:
        assert response.read() == payload


def test_server_hands_out_proxied_artifact_locations_only(pod: mlflow_servers.ServerPod):
    with mlflow_servers.DIRECT.open(
        f"{pod.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default", timeout=30
    ) as response:
        location = json.load(response)["experiment"]["artifact_location"]
    assert location.startswith("mlflow-artifacts:"), location


def test_every_generated_allowed_host_is_accepted(
    pod: mlflow_servers.ServerPod, rendered: Rendered
):
    hosts = _arg(pod.server.argv, "--allowed-hosts").split(",")
    service_port = rendered.one("Service")["spec"]["ports"][0]["port"]
    api = f"{pod.url}/api/2.0/mlflow/experiments/search?max_results=1"
    refused = {
        host: status
        for pattern in hosts
        for host in [pattern.replace(":*", f":{service_port}")]
        if (status := _get(api, host)) != 200
    }
    assert not refused, f"Host headers from the rendered list refused: {refused}"


@pytest.mark.parametrize(
    "host",
    ["attacker.example.com", "mlflow.other-namespace", "10.1.2.3:5000", "192.168.1.5"],
    ids=["foreign-name", "other-namespace", "private-ip", "private-ip-bare"],
)
def test_hosts_outside_the_list_are_refused(pod: mlflow_servers.ServerPod, host: str):
    # The private IPs prove MLflow's defaults were replaced, not extended.
    api = f"{pod.url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api, host) == 403


def test_health_answers_any_host_so_kubelet_probes_pass(pod: mlflow_servers.ServerPod):
    assert _get(f"{pod.url}/health", "10.244.0.17:5000") == 200


def test_server_writes_only_to_its_volume_and_temp_dirs(pod: mlflow_servers.ServerPod):
    writable = set(pod.server.mounts.values())
    assert pod.server.cwd not in writable
    assert list(pod.server.cwd.iterdir()) == [], "the server wrote into its working directory"


def test_default_workers_fit_the_default_memory_limit(
    pod: mlflow_servers.ServerPod, rendered: Rendered
):
    if not Path("/proc/self/smaps_rollup").exists():
        pytest.skip("needs Linux /proc to measure memory")
    limit = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]
    limit_bytes = _quantity_bytes(limit["limits"]["memory"])
    used = pod.memory_bytes()
    print(f"server PSS {used / 2**20:.0f} MiB of limit {limit_bytes / 2**20:.0f} MiB")
    assert used < 0.8 * limit_bytes, f"{used / 2**20:.0f} MiB leaves no headroom"


def _quantity_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(quantity)


def test_a_schema_newer_than_the_image_stops_the_wait_at_once(
    pod: mlflow_servers.ServerPod, rendered: Rendered, tmp_path: Path
):
    # A downgraded image would wait forever for a schema it cannot have: it must say so.
    volume = tmp_path / "volume"
    volume.mkdir()
    shutil.copy(pod.volume / "mlflow.db", volume / "mlflow.db")
    with sqlite3.connect(volume / "mlflow.db") as db:
        db.execute("UPDATE alembic_version SET version_num = 'f00dfacef00d'")
    localize = mlflow_servers.localizer(rendered, tmp_path, volume, {})
    result = localize(rendered.one("Deployment"), "wait-for-schema").run(timeout=120)
    assert result.returncode == 3
    assert "f00dfacef00d, newer than this MLflow knows" in result.stderr
