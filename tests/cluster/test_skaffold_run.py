"""`skaffold run` and `skaffold dev` with the `local` profile, in a copy of the repository.

Skaffold builds both images on the cluster's engine and installs the release; the
Dagster chart's objects come as a second release of the same ``skaffold.yaml`` (see
:func:`support.skaffold_harness.add_dagster_objects_release`). Everything is read back through
the API, Helm, the engine and the served UIs, never taken from Skaffold's own word.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from mlflow import MlflowClient
from support.dagster_chart import dagster_version_in_lock, image_name, user_deployment
from support.dagster_manifests import dagster_objects
from support.example_runs import example_run_filter
from support.images import image_layers
from support.release import TRAINING_CODE, USER_CODE
from support.release_install import external_postgres, machine_overlay
from support.skaffold_harness import (
    add_dagster_objects_release,
    copy_repository,
    deployed_tags,
    global_config,
    prepare_copy,
    skaffold_binary,
    skaffold_command,
    skaffold_env,
)
from support.umbrella import RELEASE, effective_values, values_paths
from support.workloads import restricted_namespace, unique, wait_for

from dagma.dev.local_mlflow import free_port
from localcluster import engine
from localcluster.cluster import kubectl
from localcluster.components import Layout
from localcluster.standins import ensure_release_standins

KIND = values_paths(["local.yaml"])
RUN_TIMEOUT_S = 1800  # a first deploy with cold builds of both images on 2 shared cores
pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT_S)  # dev: deploy, two runs, a redeploy


@dataclass(frozen=True)
class Prepared:
    """A repository copy ready for Skaffold, and the namespaces it deploys to."""

    copy: Path
    namespace: str
    database: str


def prepare(core: client.CoreV1Api, pod_image: str, destination: Path, name: str) -> Prepared:
    """Database, restricted namespace and the adapted repository copy for one release."""
    version = dagster_version_in_lock()
    standins = ensure_release_standins(engine.docker(), pod_image, version)
    database = unique(f"{name}-db")
    core.create_namespace({"metadata": {"name": database}})
    namespace = restricted_namespace(core, unique(name))
    prepared = Prepared(destination, namespace, database)
    try:
        password = secrets.token_hex(12)
        host = external_postgres(core, database, standins["postgres"], password)
        overlay = machine_overlay(host, password)
        copy = copy_repository(destination)
        config = prepare_copy(copy, namespace=namespace, base_image=pod_image, overlay=overlay)
        dagster = effective_values(overlay, values_files=KIND)["dagster"]
        objects = dagster_objects(dagster, namespace, standins["dagster"], version)
        images = {image_name(user_deployment(dagster, name)["image"], version): name
                  for name in (USER_CODE, TRAINING_CODE)}  # artifact = deployment name  # fmt: skip
        add_dagster_objects_release(copy, config, objects, images)
    except BaseException:
        remove(core, prepared)
        raise
    return prepared


def remove(core: client.CoreV1Api, prepared: Prepared) -> None:
    """Delete both namespaces (the MLflow volume's claim goes with its namespace)."""
    core.delete_namespace(prepared.namespace)
    core.delete_namespace(prepared.database)


def helm_values(layout: Layout, namespace: str, release: str = RELEASE) -> dict:
    """The values a release was installed with (Helm's own record)."""
    result = subprocess.run(
        [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n", namespace,
         "get", "values", release, "-o", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def wait_deployments_ready(layout: Layout, kube: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(kube)
    for deployment in apps.list_namespaced_deployment(namespace).items:
        name = deployment.metadata.name

        def ready(name: str = name) -> bool:
            status = apps.read_namespaced_deployment(name, namespace).status
            return status.ready_replicas == 1 and status.updated_replicas == 1

        wait_for(f"deployment {name} Ready", ready, 600,
                 lambda: kubectl(layout, "-n", namespace, "get", "pods,events"))  # fmt: skip


def running_images(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """``{image as rendered: image ID}`` of the pods; fails on one not Ready (terminating and
    completed Job pods aside)."""
    running = {}
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.metadata.deletion_timestamp:  # replaced by a rollout, on its way out
            continue
        if pod.status.phase == "Succeeded":  # the migration Job's pod: done, never Ready
            assert (pod.metadata.labels or {}).get("job-name"), pod.metadata.name
            continue
        conditions = {c.type: c.status for c in pod.status.conditions or []}
        assert conditions.get("Ready") == "True", f"{pod.metadata.name}: {conditions}"
        # The engine may report an image under another tag of the same ID: use the spec's.
        specified = {c.name: c.image for c in pod.spec.containers}
        for status in pod.status.container_statuses:
            running[specified[status.name]] = status.image_id
    return running


@pytest.fixture(scope="module")
def skaffold_run(
    layout: Layout, core: client.CoreV1Api, kube: client.ApiClient, pod_image: str,
    tmp_path_factory: pytest.TempPathFactory, cluster_measure,
) -> Iterator[tuple[str, dict[str, str]]]:  # fmt: skip
    """`skaffold run` in a prepared copy; yields the namespace and Skaffold's tags."""
    global_config(layout)
    prepared = prepare(core, pod_image, tmp_path_factory.mktemp("repository"), "skaffold")
    began = time.monotonic()
    output = skaffold_command(layout, "run", "--interactive=false",
                              cwd=prepared.copy, timeout=RUN_TIMEOUT_S)  # fmt: skip
    cluster_measure("skaffold run (build, deploy, status check)",
                    f"{time.monotonic() - began:.0f} s")  # fmt: skip
    tags = deployed_tags(output)
    try:
        yield prepared.namespace, tags
    finally:
        skaffold_command(layout, "delete", cwd=prepared.copy, timeout=600)
        remove(core, prepared)


def test_skaffold_run_builds_both_images_and_the_release_runs_them(
    layout: Layout, core: client.CoreV1Api, kube: client.ApiClient,
    skaffold_run: tuple[str, dict[str, str]],
) -> None:  # fmt: skip
    namespace, tags = skaffold_run
    assert set(tags) == {"dagma-user-code", "dagma-mlflow", "dagma-training"}
    ids = {}
    for artifact, image in tags.items():
        assert image.split(":")[0] == artifact, image
        inspected = engine.docker().command(["image", "inspect", "--format", "{{.Id}}", image])
        ids[image] = inspected.stdout.strip()
    # What Helm recorded is exactly what Skaffold built...
    values = helm_values(layout, namespace)
    for name in (USER_CODE, TRAINING_CODE):  # each code location's artifact has its name
        code = user_deployment(effective_values(values)["dagster"], name)
        assert image_name(code["image"], dagster_version_in_lock()) == tags[name]
    mlflow = values["mlflow"]["image"]
    assert f"{mlflow['repository']}:{mlflow['tag']}" == tags["dagma-mlflow"]
    # ...every pod is Ready (Skaffold's status check waited; this reads it back), the
    # servers on those very images, and run pods will start from the same one.
    wait_deployments_ready(layout, kube, namespace)
    running = running_images(core, namespace)
    for image, image_id in ids.items():
        assert image in running, f"no pod runs {image}: {sorted(running)}"
        assert running[image].endswith(image_id.removeprefix("sha256:")), running[image]
    for name in (USER_CODE, TRAINING_CODE):
        [code_server] = [
            c for d in client.AppsV1Api(kube).list_namespaced_deployment(namespace).items
            for c in d.spec.template.spec.containers if c.image == tags[name]
        ]  # fmt: skip
        env = {e.name: e.value for e in code_server.env or []}
        assert env["DAGSTER_CURRENT_IMAGE"] == tags[name]


class Background:
    """A long-running command whose merged output is collected line by line."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, count: int, timeout: float) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` times; fail with the output otherwise."""

        def seen() -> list[re.Match[str]] | None:
            assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.output}"
            found = list(re.finditer(pattern, self.output, re.MULTILINE))
            return found if len(found) >= count else None

        return wait_for(f"{pattern!r} x{count}", seen, timeout, lambda: self.output[-6000:])

    def interrupt(self, timeout: float) -> int:
        """Send SIGINT as Ctrl-C does; wait for the exit."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)


WATCHING = r"^Watching for changes\.\.\.$"
FORWARD = (
    r"Port forwarding service/(\S+) in namespace \S+, remote port \d+ -> http://127\.0\.0\.1:(\d+)"
)
ASSETS = Path("src/dagma/defs/train_model.py")
SUMMARY_LINE = 'summary.write_text(f"n_estimators={n_estimators}\\nrmse={rmse}\\n")'


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _forwarded_uis(dev: Background) -> tuple[str, str]:
    """Dagster's and MLflow's URLs on Skaffold's latest port-forwards, once both answer."""

    def answering() -> tuple[str, str] | None:
        ports = {m[1]: int(m[2]) for m in re.finditer(FORWARD, dev.output, re.MULTILINE)}
        dagster = f"http://127.0.0.1:{ports[f'{RELEASE}-dagster-webserver']}"
        mlflow = f"http://127.0.0.1:{ports['mlflow']}"
        if _answers(f"{dagster}/server_info") and _answers(f"{mlflow}/health"):
            return dagster, mlflow
        return None

    return wait_for("both forwarded UIs answer", answering, 180, lambda: dev.output[-6000:])


def _verify(dagster_url: str, mlflow_url: str) -> str:
    """`dagma verify` through the forwarded UIs; returns train_summary.txt of its run."""
    result = subprocess.run(
        [sys.executable, "-m", "dagma", "verify", "--dagster-url", dagster_url,
         "--mlflow-url", mlflow_url, "--timeout", "600"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"dagma verify failed:\n{output}"
    [run_id] = re.findall(r"as run ([0-9a-f-]{36})", output)
    tracking = MlflowClient(mlflow_url)
    [run] = tracking.search_runs(
        [e.experiment_id for e in tracking.search_experiments()],
        filter_string=example_run_filter(run_id),
    )
    with tempfile.TemporaryDirectory() as tmp:
        return Path(
            tracking.download_artifacts(run.info.run_id, "train_summary.txt", tmp)
        ).read_text()


def test_skaffold_dev_redeploys_an_edit_and_ctrl_c_removes_the_release(
    layout: Layout, core: client.CoreV1Api, kube: client.ApiClient, pod_image: str,
    tmp_path: Path, cluster_measure,
) -> None:  # fmt: skip
    global_config(layout)
    prepared = prepare(core, pod_image, tmp_path / "repository", "skaffold-dev")
    # Free local ports through Skaffold's own option: the portForward entries' localPort.
    config_file = prepared.copy / "skaffold.yaml"
    config = yaml.safe_load(config_file.read_text())
    for forward in config["portForward"]:
        forward["localPort"] = free_port()
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    dev = Background(
        [str(skaffold_binary()), "dev", "--interactive=false", "--port-forward=user"],
        prepared.copy, skaffold_env(layout),
    )  # fmt: skip
    try:
        began = time.monotonic()
        dev.wait_for(WATCHING, 1, RUN_TIMEOUT_S)
        cluster_measure("skaffold dev, first deploy", f"{time.monotonic() - began:.0f} s")
        dev.wait_for(FORWARD, 2, 120)
        dagster_url, mlflow_url = _forwarded_uis(dev)
        first_tags = deployed_tags(dev.output)
        assert "edited" not in _verify(dagster_url, mlflow_url)

        token = secrets.token_hex(4)
        assets = prepared.copy / ASSETS
        text = assets.read_text()
        assert text.count(SUMMARY_LINE) == 1
        edited = SUMMARY_LINE.replace('\\n")', f'\\nedited={token}\\n")')
        assets.write_text(text.replace(SUMMARY_LINE, edited))
        edited_at = time.monotonic()
        dev.wait_for(WATCHING, 2, RUN_TIMEOUT_S)
        cluster_measure("skaffold dev, edit to redeployed", f"{time.monotonic() - edited_at:.0f} s")
        second_tags = deployed_tags(dev.output, last=True)
        assert second_tags["dagma-mlflow"] == first_tags["dagma-mlflow"], "MLflow was rebuilt"
        old, new = first_tags["dagma-user-code"], second_tags["dagma-user-code"]
        assert new != old
        old_layers, new_layers = (
            image_layers(engine.docker(), old),
            image_layers(engine.docker(), new),
        )
        rebuilt = [layer for layer in new_layers if layer not in old_layers]
        cluster_measure("skaffold dev, layers rebuilt by the edit",
                        f"{len(rebuilt)} of {len(new_layers)}")  # fmt: skip
        # Only dagma's own layer (the runtime stage's COPY --from=project): the base, the
        # user and the dependency venv are reused from the first build.
        assert len(rebuilt) == 1, (old_layers, new_layers)
        wait_deployments_ready(layout, kube, prepared.namespace)
        assert new in running_images(core, prepared.namespace)
        # Skaffold re-establishes its port-forwards after a redeploy.
        dagster_url, mlflow_url = _forwarded_uis(dev)
        assert f"edited={token}" in _verify(dagster_url, mlflow_url)

        assert dev.interrupt(timeout=600) == 0, dev.output[-6000:]
        releases = subprocess.run(
            [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n",
             prepared.namespace, "list", "-q"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.split()  # fmt: skip
        assert releases == [], releases
        claims = core.list_namespaced_persistent_volume_claim(prepared.namespace).items
        assert [c.metadata.name for c in claims if "mlflow" in c.metadata.name], claims
    finally:
        dev.kill()
        remove(core, prepared)
