"""The production topology upgraded to an MLflow with a newer schema, under a stream of runs.

The install of test_production_release.py (:func:`support.production.installed_production`:
PostgreSQL, SeaweedFS, basic auth, two replicas, enforced NetworkPolicy), started on MLflow
3.16.1's server image (images/mlflow/Dockerfile with that release's pins, whose tracking
schema is two migrations behind 3.17.2's). Runs are recorded; then ``helm upgrade`` to the
chart's own image while more runs go. charts/mlflow's pre-upgrade hook must find the schema
behind, scale the servers to 0, migrate once no server pod and no other database session is
left, and only then may Helm start the new servers. Read back: the hook's log, the server
pods seen every half second through the upgrade, the runs from MLflow and the Dagster runs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import yaml
from alembic.script import ScriptDirectory
from dagster_graphql import DagsterGraphQLClient
from kubernetes import client
from mlflow.store.db.utils import _get_alembic_config
from support.example_runs import example_run_filter
from support.images import build_older_mlflow_image
from support.production import PREFIX, Production, installed_production, read_object
from support.production_checks import (
    admin_tracking,
    schema_hook_log,
    server_pods,
    servers_ready,
    submit,
    wait_finished,
)
from support.release_install import describe, helm
from support.umbrella import RELEASE
from support.workloads import port_forward, wait_for

from localcluster import engine
from localcluster.components import Layout

pytestmark = pytest.mark.timeout(1800)
STREAM = 4  # runs launched just before the upgrade: some meet the servers stopped
SERVERS = "app.kubernetes.io/name=mlflow,app.kubernetes.io/component=server"


@dataclass(frozen=True)
class Seen:
    """The server pods at one moment: ``{name: (image, ready)}``, terminating ones included."""

    at: float  # epoch seconds
    pods: dict[str, tuple[str, bool]]


class ServerWatch(threading.Thread):
    """Lists the server pods every half second until stopped (a stopping pod still writes)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.seen: list[Seen] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=SERVERS).items
            self.seen.append(Seen(time.time(), {
                p.metadata.name: (p.spec.containers[0].image, _ready(p)) for p in pods
            }))  # fmt: skip
            self.stopping.wait(0.5)


def _ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


@pytest.fixture(scope="module")
def older_image(release_images, pod_image: str) -> str:
    repository = release_images.mlflow.tag.rsplit(":", 1)[0]
    return build_older_mlflow_image(engine.docker(), pod_image, repository).tag


@pytest.fixture(scope="module")
def production(
    layout: Layout, kube, release_images, pod_image: str, older_image: str, tmp_path_factory
) -> Iterator[Production]:
    older = tmp_path_factory.mktemp("values") / "older-mlflow.yaml"
    older.write_text(yaml.safe_dump({"mlflow": {"image": {"tag": older_image.split(":")[-1]}}}))
    with installed_production(layout, kube, pod_image, release_images.mlflow.tag,
                              [older]) as installed:  # fmt: skip
        yield installed


def _when(lines: list[tuple[float, str]], pattern: str) -> float:
    [at] = [at for at, text in lines if re.search(pattern, text)] or [None]
    assert at is not None, f"no {pattern!r} in the hook's log:\n" + "\n".join(t for _, t in lines)
    return at


def _summary_key(run: dict) -> str:
    """train_summary.txt's key in the bucket (mlflow-artifacts:/<experiment>/<run>/artifacts
    maps onto s3://mlflow-artifacts/dagma/...)."""
    return f"{PREFIX}/{urlsplit(run['info']['artifact_uri']).path.lstrip('/')}/train_summary.txt"


def test_an_upgrade_to_a_newer_schema_stops_every_server_migrates_and_loses_nothing(
    layout: Layout, core: client.CoreV1Api, production: Production, release_images,
    older_image: str, cluster_measure,
) -> None:  # fmt: skip
    namespace = production.namespace
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready", lambda: servers_ready(apps, namespace), 300)
    assert {p.spec.containers[0].image for p in server_pods(core, namespace)} == {older_image}
    forward = (layout.bin / "kubectl", layout.kubeconfig, namespace)
    explain = lambda: describe(layout, namespace)  # noqa: E731
    with port_forward(*forward, "svc/dagma-dagster-webserver", 3000) as port:
        dagster = DagsterGraphQLClient("127.0.0.1", port_number=port)
        earlier = [submit(dagster) for _ in range(2)]
        assert set(wait_finished(dagster, earlier, 600, explain).values()) == {"SUCCESS"}
        with admin_tracking(layout, production) as tracking:
            experiment = tracking.get_experiment_by_name("dagma").experiment_id
            before = {r.info.run_id: r.to_dictionary() for r in tracking.search_runs([experiment])}
            stub_runs = [tracking.search_runs([experiment], example_run_filter(run_id))[0]
                         .info.run_id for run_id in earlier]  # fmt: skip
        assert len(stub_runs) == 2 and len(before) == 4  # each with its parent run
        files = {run_id: read_object(core, release_images.mlflow.tag, _summary_key(before[run_id]))
                 for run_id in stub_runs}  # fmt: skip

        watch = ServerWatch(core, namespace)
        watch.start()
        stream = [submit(dagster) for _ in range(STREAM)]
        began = time.monotonic()
        helm(layout, namespace, "upgrade", RELEASE, str(production.chart), "--reuse-values",
             "--set", f"mlflow.image.tag={release_images.mlflow.tag.split(':')[-1]}",
             "--wait", "--timeout", "10m")  # fmt: skip
        upgraded = time.monotonic() - began
        statuses = wait_finished(dagster, stream, 900, explain)
    watch.stopping.set()
    watch.join()

    # The hook found the schema behind, stopped the servers, then migrated to this MLflow's head.
    lines = schema_hook_log(core, namespace)
    print("\n".join(text for _, text in lines))
    head = ScriptDirectory.from_config(_get_alembic_config("")).get_current_head()
    [(old, new)] = [m.groups() for _, t in lines if (m := re.search(
        r"^tracking schema: (\w+) -> (\w+)$", t))]  # fmt: skip
    assert old != new == head, (old, new, head)
    stopping = _when(lines, r"^stopping deployment/dagma-mlflow: 2 replicas -> 0$")
    migrating = _when(lines, r"^upgrading the tracking schema")
    done = _when(lines, r"^schema upgraded with every writer stopped")
    # No server pod at all, not even a stopping one, from the migration's start to its end;
    # none of the new image before it was done, none of the old one after it began.
    during = [seen for seen in watch.seen if migrating <= seen.at <= done]
    assert during and not any(seen.pods for seen in during), during
    for seen in watch.seen:
        images = {image for image, _ in seen.pods.values()}
        if seen.at < done:
            assert release_images.mlflow.tag not in images, seen
        if seen.at > migrating:
            assert older_image not in images, seen
    empty = [seen.at for seen in watch.seen if not seen.pods]
    serving = [seen.at for seen in watch.seen
               if any(ready for _, ready in seen.pods.values()) and seen.at > empty[0]]  # fmt: skip
    cluster_measure("production: schema upgrade, helm upgrade to Ready",
                    f"{upgraded:.0f} s; no server for {serving[0] - empty[0]:.0f} s (servers "
                    f"stopped {migrating - stopping:.1f} s, migration {done - migrating:.1f} s); "
                    f"{STREAM} runs meanwhile: {sorted(statuses.values())}")  # fmt: skip

    # Helm put the replicas back; the revision's own migration Job found nothing to do.
    wait_for("both servers Ready on the new image", lambda: servers_ready(apps, namespace), 300)
    assert apps.read_namespaced_deployment("dagma-mlflow", namespace).spec.replicas == 2
    images = {p.spec.containers[0].image for p in server_pods(core, namespace)}
    assert images == {release_images.mlflow.tag}, images
    migration = client.BatchV1Api(core.api_client).read_namespaced_job(
        "dagma-mlflow-migrate-2", namespace)  # fmt: skip
    assert migration.status.succeeded == 1, migration.status

    # Nothing lost: every earlier run and file unchanged, every run of the stream recorded.
    assert set(statuses.values()) == {"SUCCESS"}, statuses
    with admin_tracking(layout, production) as tracking:
        for run_id, recorded in before.items():
            assert tracking.get_run(run_id).to_dictionary() == recorded
        for run_id in stub_runs:
            assert [a.path for a in tracking.list_artifacts(run_id)] == ["train_summary.txt"]
        created = []  # when each run of the stream was created, from the servers' return
        for run_id in stream:
            [run] = tracking.search_runs([experiment], example_run_filter(run_id))
            assert (run.info.status, run.data.metrics) == ("FINISHED", {"rmse": 0.123})
            created.append(run.info.start_time / 1000 - serving[0])
    cluster_measure("production: schema upgrade, the stream's MLflow runs created",
                    ", ".join(f"{s:+.0f} s" for s in sorted(created)) + " from the servers' "
                    "return (all submitted before the upgrade began)")  # fmt: skip
    for run_id, summary in files.items():  # the bytes, from the bucket itself
        assert read_object(core, release_images.mlflow.tag, _summary_key(before[run_id])) == summary
