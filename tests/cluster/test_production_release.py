"""values/production.yaml installed for real: S3 artifacts, basic auth, enforced NetworkPolicy.

One install for the module (:func:`support.production.installed_production`): charts/dagma
with ``-f values/production.yaml -f tests/support/production-overlay.yaml``, MLflow on its
own PostgreSQL, artifacts in SeaweedFS, two MLflow replicas behind the Service, the
cluster's kube-network-policies enforcing the chart's NetworkPolicy. ``train_model_stub``
is launched through the webserver (a port-forward, dagster-graphql's client); what it
wrote is read back from MLflow and from the bucket itself.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from dagster_graphql import DagsterGraphQLClient
from kubernetes import client
from kubernetes.client.rest import ApiException
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from support.example_runs import example_run_filter
from support.production import (
    MLFLOW_DB,
    OBJECTS,
    OVERLAY,
    PREFIX,
    Production,
    installed_production,
    read_object,
    script_result,
)
from support.production_checks import (
    FINISHED,
    HEALTH,
    admin_tracking,
    env_names,
    login,
    pods_of,
    reach_from_new_pod,
    reach_from_running_pod,
    schema_hook_log,
    server_pods,
    servers_ready,
    submit,
    user_code_image,
    wait_finished,
)
from support.production_load import levels_of, ramp_script
from support.production_transfers import (
    MB,
    PROXIED_UPLOADS,
    UPLOAD_UNDER_FAULT,
    client_pod,
    direct_upload_seconds,
    object_sizes,
    when_logged,
)
from support.release_install import describe, helm
from support.umbrella import RELEASE, values_paths
from support.workloads import port_forward, unique, wait_for

from localcluster import engine
from localcluster.cluster import kubectl
from localcluster.components import Layout

SUMMARY = "n_estimators=10\nrmse=0.123\n"  # what train_model_stub writes (src/dagma/defs)
# The first test also waits for the images, databases, object store and the install.
pytestmark = pytest.mark.timeout(1500)
STREAM = 6  # materializations per stream: bounded, a few minutes on 2 cores


@dataclass(frozen=True)
class Endpoints:
    mlflow: str  # http://127.0.0.1:<port>
    dagster: DagsterGraphQLClient


@dataclass(frozen=True)
class Materialized:
    run_id: str
    status: str
    mlflow_run_id: str
    artifact_uri: str


@pytest.fixture(scope="module")
def production(layout: Layout, kube, release_images, pod_image, cluster_measure) -> Iterator[
        Production]:  # fmt: skip
    with installed_production(layout, kube, pod_image, release_images.mlflow.tag) as installed:
        cluster_measure("production: helm install to all Ready",
                        f"{installed.install_seconds:.0f} s")  # fmt: skip
        yield installed


@pytest.fixture(scope="module")
def endpoints(layout: Layout, production: Production) -> Iterator[Endpoints]:
    forward = (layout.bin / "kubectl", layout.kubeconfig, production.namespace)
    webserver = "svc/dagma-dagster-webserver"
    with port_forward(*forward, "svc/mlflow", 5000) as mlflow_port, \
            port_forward(*forward, webserver, 3000) as dagster_port:  # fmt: skip
        yield Endpoints(f"http://127.0.0.1:{mlflow_port}",
                        DagsterGraphQLClient("127.0.0.1", port_number=dagster_port))  # fmt: skip


@pytest.fixture(scope="module")
def materialized(layout: Layout, production: Production, endpoints: Endpoints) -> Materialized:
    run_id = submit(endpoints.dagster)
    [status] = wait_finished(endpoints.dagster, [run_id], 600,
                             lambda: describe(layout, production.namespace)).values()  # fmt: skip
    with login(*production.admin):
        tracking = MlflowClient(endpoints.mlflow)
        [run] = tracking.search_runs(
            [e.experiment_id for e in tracking.search_experiments()],
            filter_string=example_run_filter(run_id),
        )
    return Materialized(run_id, status, run.info.run_id, run.info.artifact_uri)


def test_the_overlay_changes_only_what_names_the_outside_world() -> None:
    """The user deployment of the overlay is production's but for the image, telemetry
    off and the CPU request (Helm replaces lists whole, so it is repeated)."""
    [production] = yaml.safe_load(values_paths(["production.yaml"])[0].read_text())["dagster"][
        "dagster-user-deployments"]["deployments"]  # fmt: skip
    [overlay] = yaml.safe_load(OVERLAY.read_text())["dagster"]["dagster-user-deployments"][
        "deployments"]  # fmt: skip
    assert overlay.pop("image") == {**production.pop("image"), "repository": "dagma-user-code"}
    assert {v["name"] for v in overlay.pop("env")} == {"MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}
    assert overlay["resources"].pop("requests") == {"cpu": "100m", "memory": "1Gi"}
    production["resources"].pop("requests")
    assert overlay == production


def test_train_model_stub_writes_its_artifact_through_the_proxy_into_the_bucket(
    core: client.CoreV1Api, production: Production, endpoints: Endpoints,
    materialized: Materialized, release_images,
) -> None:  # fmt: skip
    assert materialized.status == "SUCCESS", materialized
    assert materialized.artifact_uri.startswith("mlflow-artifacts:")  # the server's proxy
    with login(*production.admin):
        tracking = MlflowClient(endpoints.mlflow)
        run = tracking.get_run(materialized.mlflow_run_id)
        assert (run.info.status, run.data.metrics) == ("FINISHED", {"rmse": 0.123})
        assert [a.path for a in tracking.list_artifacts(run.info.run_id)] == ["train_summary.txt"]
    # mlflow-artifacts:/<experiment>/<run>/artifacts maps onto s3://mlflow-artifacts/dagma/...
    path = urlsplit(materialized.artifact_uri).path.lstrip("/")
    key = f"{PREFIX}/{path}/train_summary.txt"
    assert read_object(core, release_images.mlflow.tag, key) == SUMMARY.encode()


def test_no_pod_but_mlflow_carries_s3_credentials(
    core: client.CoreV1Api, production: Production, materialized: Materialized
) -> None:
    """Run pods (the Job's template and the pods themselves), the code location and
    Dagster's pods: none reads the S3 Secret or an AWS key; MLflow's server pods do."""
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "secret:mlflow-s3"}
    pods = core.list_namespaced_pod(production.namespace).items
    run_pods = [p for p in pods if (p.metadata.labels or {}).get("dagster/run-id")]
    assert any(p.metadata.labels["dagster/run-id"] == materialized.run_id for p in run_pods)
    jobs = client.BatchV1Api(core.api_client).list_namespaced_job(production.namespace).items
    specs = {f"job/{j.metadata.name}": j.spec.template.spec for j in jobs}
    specs |= {f"pod/{p.metadata.name}": p.spec for p in pods}
    carrying = {name: sorted(found & aws) for name, spec in specs.items()
                for found in [set().union(*env_names(spec).values())] if found & aws}  # fmt: skip
    servers = {name for name in carrying if name.startswith("pod/dagma-mlflow-")
               and not name.startswith("pod/dagma-mlflow-migrate")}  # fmt: skip
    assert len(servers) == 2 and set(carrying) == servers, carrying
    for run_pod in run_pods:  # each run logs in with the client Secret
        assert "secret:dagma-mlflow-client" in set().union(*env_names(run_pod.spec).values())


def test_basic_auth_refuses_strangers_and_default_read_holds_for_another_user(
    production: Production, endpoints: Endpoints, materialized: Materialized
) -> None:
    search = f"{endpoints.mlflow}/api/2.0/mlflow/experiments/search?max_results=10"
    admin, password = production.admin
    assert requests.get(search, timeout=30).status_code == 401
    assert requests.get(search, auth=(admin, password + "x"), timeout=30).status_code == 401
    assert requests.get(search, auth=(admin, password), timeout=30).status_code == 200
    reader = (unique("reader"), "reader-password-1")
    with login(*production.admin):
        get_app_client("basic-auth", tracking_uri=endpoints.mlflow).create_user(*reader)
        experiment = MlflowClient(endpoints.mlflow).get_experiment_by_name("dagma")
    with login(*reader):
        tracking = MlflowClient(endpoints.mlflow)
        run = tracking.get_run(materialized.mlflow_run_id)  # READ: it may look
        assert run.data.metrics == {"rmse": 0.123}
        with pytest.raises(MlflowException, match="Permission denied|PERMISSION_DENIED"):
            tracking.create_run(experiment.experiment_id)
        with pytest.raises(MlflowException, match="Permission denied|PERMISSION_DENIED"):
            tracking.log_metric(materialized.mlflow_run_id, "tampered", 1.0)
    with login(*production.admin):
        assert "tampered" not in MlflowClient(endpoints.mlflow).get_run(
            materialized.mlflow_run_id).data.metrics  # fmt: skip


def test_network_policy_admits_the_release_and_its_clients_and_nobody_else(
    layout: Layout, core: client.CoreV1Api, production: Production, pod_image: str,
    materialized: Materialized, cluster_measure,
) -> None:  # fmt: skip
    """As the production comments promise, now enforced by kube-router's firewall: the code
    location, Dagster's webserver and daemon, the run pods (they logged the run above) and a
    labelled client reach MLflow; a pod without the label, and a pod in another namespace
    even with the release's labels, do not (kube-router rejects: connection refused)."""
    namespace = production.namespace
    url = HEALTH.format(namespace=namespace)
    assert materialized.status == "SUCCESS"  # a run pod reached MLflow through the policy
    reached = {}
    for component in ("user-deployments", "dagster-webserver", "dagster-daemon"):
        [first, *_] = pods_of(core, namespace, component)
        reached[component] = reach_from_running_pod(layout, namespace, first.metadata.name, url)
    reached["labelled client"] = reach_from_new_pod(
        core, namespace, pod_image, "labelled-client", {"dagma/mlflow-client": "true"}, url
    )
    assert reached == dict.fromkeys(reached, "200"), reached

    refused = {"no label": reach_from_new_pod(core, namespace, pod_image, "stranger", {}, url)}
    elsewhere = unique("elsewhere")
    core.create_namespace({"metadata": {"name": elsewhere}})
    try:
        labels = {"app.kubernetes.io/instance": "dagma", "dagma/mlflow-client": "true"}
        refused["other namespace"] = reach_from_new_pod(
            core, elsewhere, pod_image, "stranger", labels, url
        )
    finally:
        core.delete_namespace(elsewhere)
    cluster_measure("production NetworkPolicy, refused", str(refused))
    assert all("Connection refused" in r for r in refused.values()), refused


# --- item 4: two replicas behind the Service ------------------------------------------


def test_deleting_a_server_replica_during_a_stream_of_runs_fails_none(
    layout: Layout, core: client.CoreV1Api, production: Production, endpoints: Endpoints,
    materialized: Materialized, cluster_measure,
) -> None:  # fmt: skip
    """Six materializations; once the first is running, one of the two MLflow pods is
    deleted (its replacement starts behind the Service). Every run succeeds and each one's
    MLflow run is FINISHED with its metric."""
    namespace = production.namespace
    run_ids = [submit(endpoints.dagster) for _ in range(STREAM)]
    wait_for("the first run started", lambda: endpoints.dagster.get_run_status(
        run_ids[0]).value in ("STARTED", *FINISHED), 300)  # fmt: skip
    victim = server_pods(core, namespace)[0].metadata.name
    core.delete_namespaced_pod(victim, namespace)
    statuses = wait_finished(endpoints.dagster, run_ids, 900,
                             lambda: describe(layout, namespace))  # fmt: skip
    cluster_measure("production: runs while a server replica was deleted",
                    f"{list(statuses.values()).count('SUCCESS')}/{STREAM} succeeded")  # fmt: skip
    assert set(statuses.values()) == {"SUCCESS"}, statuses
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready again", lambda: servers_ready(apps, namespace), 300)
    # kubectl port-forward to a Service holds one pod: the module's forward may have been
    # to the deleted one, so read back through a new forward to the Service.
    forward = (layout.bin / "kubectl", layout.kubeconfig, namespace)
    with port_forward(*forward, "svc/mlflow", 5000) as port, login(*production.admin):
        tracking = MlflowClient(f"http://127.0.0.1:{port}")
        experiment = tracking.get_experiment_by_name("dagma").experiment_id
        for run_id in run_ids:
            [run] = tracking.search_runs([experiment], example_run_filter(run_id))
            assert (run.info.status, run.data.metrics) == ("FINISHED", {"rmse": 0.123})


def test_the_disruption_budget_keeps_one_server_through_evictions(
    layout: Layout, core: client.CoreV1Api, production: Production, cluster_measure
) -> None:
    """charts/mlflow's PodDisruptionBudget (minAvailable 1): a drain of the node, tried with
    ``kubectl drain --dry-run=server``, is allowed one server; then real evictions through
    the API: the first is granted, the second refused (429) while the first's replacement
    is not Ready yet."""
    namespace = production.namespace
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready", lambda: servers_ready(apps, namespace), 300)
    policy = client.PolicyV1Api(core.api_client)
    budget = policy.read_namespaced_pod_disruption_budget("dagma-mlflow", namespace)
    assert (budget.spec.min_available, budget.status.disruptions_allowed) == (1, 1)
    drain = kubectl(
        layout,
        "drain",
        "dagma-node",
        "--dry-run=server",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--pod-selector=app.kubernetes.io/name=mlflow",
    )
    cluster_measure("production: kubectl drain --dry-run=server (MLflow pods)",
                    " | ".join(drain.strip().splitlines()))  # fmt: skip
    first, second = (p.metadata.name for p in server_pods(core, namespace))
    evict = {"metadata": {"name": first, "namespace": namespace}}
    core.create_namespaced_pod_eviction(first, namespace, evict)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(
            second, namespace, {"metadata": {"name": second, "namespace": namespace}}
        )
    assert refused.value.status == 429, refused.value
    assert "disruption budget" in refused.value.body, refused.value.body
    assert core.read_namespaced_pod(second, namespace).metadata.deletion_timestamp is None
    wait_for("both servers Ready again", lambda: servers_ready(apps, namespace), 300)


def test_the_two_servers_sustain_a_ramp_of_materializations_and_lose_none(
    layout: Layout, core: client.CoreV1Api, production: Production, materialized: Materialized,
    cluster_measure,
) -> None:  # fmt: skip
    """Materializations a minute the two replicas sustain before the first error or a p95
    over 1 s (:mod:`support.production_load`, from a client pod: policy, auth, proxy and
    bucket on the path). Each one the pod counted is a FINISHED run with its metric; a run
    left RUNNING can only be one whose materialization raised."""
    namespace = production.namespace
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready", lambda: servers_ready(apps, namespace), 300)
    name = unique("load")
    client_pod(core, namespace, user_code_image(core, namespace), name, ramp_script())
    result = script_result(core, namespace, name, 600)
    levels = levels_of(result)
    for level in levels:
        cluster_measure("production: materializations on two servers", level.describe())
    best = max((level for level in levels if level.sustained), key=lambda level: level.per_minute,
               default=None)  # fmt: skip
    cluster_measure("production: sustained (0 errors, p95 <= 1 s)",
                    best.describe() if best else "not even 1 worker")  # fmt: skip
    with admin_tracking(layout, production) as tracking:
        experiment = tracking.get_experiment_by_name("dagma").experiment_id
        runs = tracking.search_runs([experiment], f"tags.`dagma.load_ramp` = '{result['ramp']}'",
                                    max_results=10_000)  # fmt: skip
    statuses = Counter(run.info.status for run in runs)
    finished = [run for run in runs if run.info.status == "FINISHED"]
    assert len(finished) == sum(level.done for level in levels), statuses
    assert all(run.data.metrics == {"rmse": 0.123} for run in finished)
    assert statuses["RUNNING"] <= sum(level.errors for level in levels), statuses


# --- item 6 and the transfer figures: large artifacts, and faults under them ------------

SIZE = 200 * MB  # the artifact


def _run_prefix(artifact_uri: str) -> str:
    """The bucket prefix of a run's proxied artifacts (mlflow-artifacts:/<exp>/<run>/...)."""
    return f"{PREFIX}/{urlsplit(artifact_uri).path.lstrip('/')}/"


def test_a_200_mb_artifact_through_the_proxy_lands_whole_in_the_bucket(
    core: client.CoreV1Api, production: Production, materialized: Materialized,
    release_images, cluster_measure,
) -> None:  # fmt: skip
    """From a pod with the run pods' settings and login: 200 MB through the server's proxy,
    as one request and with MLflow's proxied multipart upload; then the same bytes straight
    into the bucket with boto3. Each proxied file is read back from the store, whole."""
    namespace = production.namespace
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready", lambda: servers_ready(apps, namespace), 300)
    name = unique("uploads")
    client_pod(core, namespace, user_code_image(core, namespace), name,
               PROXIED_UPLOADS.format(size=SIZE))  # fmt: skip
    proxied = script_result(core, namespace, name, 900)
    direct = direct_upload_seconds(core, release_images.mlflow.tag, SIZE)
    cluster_measure("production: 200 MB straight into the bucket (boto3 upload_file)",
                    f"{direct:.1f} s, {SIZE / MB / direct:.0f} MB/s")  # fmt: skip
    for mode, found in proxied.items():
        prefix = _run_prefix(found["artifact_uri"])
        stored = object_sizes(core, release_images.mlflow.tag, prefix)
        assert stored == {f"{prefix}model.bin": SIZE}, (mode, stored)
        seconds = found["seconds"]
        cluster_measure(f"production: 200 MB through the proxy, {mode}",
                        f"{seconds:.1f} s, {SIZE / MB / seconds:.0f} MB/s, "
                        f"{direct / seconds:.2f}x of direct")  # fmt: skip


def test_the_object_store_restarted_during_an_upload_leaves_no_claim_without_the_bytes(
    layout: Layout, core: client.CoreV1Api, production: Production, materialized: Materialized,
    release_images, cluster_measure,
) -> None:  # fmt: skip
    """SeaweedFS's pod deleted as a 200 MB upload through the proxy starts: the upload
    either succeeds (the client's bounded retries outlast the restart) or fails the run
    with the error; either way every artifact the run lists is in the bucket, whole."""
    namespace = production.namespace
    name = unique("upload-fault")
    client_pod(core, namespace, user_code_image(core, namespace), name,
               UPLOAD_UNDER_FAULT.format(size=SIZE))  # fmt: skip

    def restart_store() -> None:
        [store] = core.list_namespaced_pod(OBJECTS, label_selector="app=seaweedfs").items
        core.delete_namespaced_pod(store.metadata.name, OBJECTS, grace_period_seconds=0)

    when_logged(core, namespace, name, "uploading", restart_store)
    outcome = script_result(core, namespace, name, 900)
    apps = client.AppsV1Api(core.api_client)
    wait_for("SeaweedFS Ready again", lambda: apps.read_namespaced_deployment(
        "seaweedfs", OBJECTS).status.ready_replicas == 1, 300)  # fmt: skip
    cluster_measure("production: object store restarted during a 200 MB upload",
                    f"{outcome['error'] or 'uploaded'} ({outcome['seconds']:.1f} s)")  # fmt: skip
    prefix = _run_prefix(outcome["artifact_uri"])
    stored = object_sizes(core, release_images.mlflow.tag, prefix)
    with admin_tracking(layout, production) as tracking:
        run = tracking.get_run(outcome["run_id"])
        listed = {
            f"{prefix}{a.path}": a.file_size for a in tracking.list_artifacts(run.info.run_id)
        }
    assert listed == stored, (listed, stored)
    assert set(stored.values()) <= {SIZE}, stored  # no part of a file
    if outcome["error"] is None:
        assert (run.info.status, stored) == ("FINISHED", {f"{prefix}model.bin": SIZE})
    else:
        assert run.info.status == "FAILED", run.info


def test_mlflows_database_restarted_during_runs_loses_nothing(
    layout: Layout, core: client.CoreV1Api, production: Production, endpoints: Endpoints,
    materialized: Materialized, cluster_measure,
) -> None:  # fmt: skip
    """MLflow's PostgreSQL pod deleted while a run is in flight: each run succeeds (and its
    MLflow run is FINISHED with its metric) or fails with its MLflow run ended, never
    RUNNING; every run recorded before reads back unchanged."""
    namespace = production.namespace
    with admin_tracking(layout, production) as tracking:
        experiment = tracking.get_experiment_by_name("dagma").experiment_id
        before = {r.info.run_id: r.to_dictionary() for r in tracking.search_runs([experiment])}
    run_ids = [submit(endpoints.dagster) for _ in range(3)]
    wait_for("the first run started", lambda: endpoints.dagster.get_run_status(
        run_ids[0]).value in ("STARTED", *FINISHED), 300)  # fmt: skip
    core.delete_namespaced_pod("postgresql-0", MLFLOW_DB)
    statuses = wait_finished(endpoints.dagster, run_ids, 900,
                             lambda: describe(layout, namespace))  # fmt: skip
    cluster_measure("production: runs while MLflow's PostgreSQL restarted",
                    str(sorted(statuses.values())))  # fmt: skip
    apps = client.AppsV1Api(core.api_client)
    wait_for("PostgreSQL Ready again", lambda: apps.read_namespaced_stateful_set(
        "postgresql", MLFLOW_DB).status.ready_replicas == 1, 300)  # fmt: skip
    with admin_tracking(layout, production) as tracking:
        for run_id, recorded in before.items():
            assert tracking.get_run(run_id).to_dictionary() == recorded
        for run_id, status in statuses.items():
            found = tracking.search_runs([experiment], example_run_filter(run_id))
            if status == "SUCCESS":
                [run] = found
                assert (run.info.status, run.data.metrics) == ("FINISHED", {"rmse": 0.123})
            else:
                assert status == "FAILURE", statuses
                assert all(r.info.status == "FAILED" for r in found), found


# --- item 5: upgrades under load -----------------------------------------------------


def test_a_helm_upgrade_to_a_new_server_image_during_a_stream_of_runs_loses_none(
    layout: Layout, core: client.CoreV1Api, production: Production, endpoints: Endpoints,
    materialized: Materialized, cluster_measure,
) -> None:  # fmt: skip
    """``helm upgrade --reuse-values`` to a new MLflow image tag (the same build under a new
    tag, as a patch release would come) while six materializations run: the upgrade's
    migration Job completes, the servers are replaced, every run SUCCESS with its MLflow run
    FINISHED, and every run recorded before reads back unchanged."""
    namespace = production.namespace
    apps = client.AppsV1Api(core.api_client)
    wait_for("both servers Ready", lambda: servers_ready(apps, namespace), 300)
    deployment = apps.read_namespaced_deployment("dagma-mlflow", namespace)
    image = deployment.spec.template.spec.containers[0].image
    repository, tag = image.rsplit(":", 1)
    new_tag = f"{tag}-next"
    engine.docker().command(["tag", image, f"{repository}:{new_tag}"])
    with admin_tracking(layout, production) as tracking:
        experiment = tracking.get_experiment_by_name("dagma").experiment_id
        before = {r.info.run_id: r.to_dictionary() for r in tracking.search_runs([experiment])}
    run_ids = [submit(endpoints.dagster) for _ in range(STREAM)]
    wait_for("the first run started", lambda: endpoints.dagster.get_run_status(
        run_ids[0]).value in ("STARTED", *FINISHED), 300)  # fmt: skip
    began = time.monotonic()
    helm(layout, namespace, "upgrade", RELEASE, str(production.chart), "--reuse-values",
         "--set", f"mlflow.image.tag={new_tag}", "--wait", "--timeout", "10m")  # fmt: skip
    upgraded = time.monotonic() - began
    statuses = wait_finished(endpoints.dagster, run_ids, 900,
                             lambda: describe(layout, namespace))  # fmt: skip
    cluster_measure("production: helm upgrade to a new MLflow image under 6 runs",
                    f"{upgraded:.0f} s to Ready; runs {sorted(statuses.values())}")  # fmt: skip
    assert set(statuses.values()) == {"SUCCESS"}, statuses
    migration = client.BatchV1Api(core.api_client).read_namespaced_job(
        "dagma-mlflow-migrate-2", namespace)  # fmt: skip
    assert migration.status.succeeded == 1, migration.status
    # The same schema: charts/mlflow's pre-upgrade hook stopped nothing, the servers rolled.
    assert "every schema is current: nothing to stop" in str(schema_hook_log(core, namespace))
    wait_for("both servers Ready on the new image", lambda: servers_ready(apps, namespace), 300)
    images = {p.spec.containers[0].image for p in server_pods(core, namespace)}
    assert images == {f"{repository}:{new_tag}"}, images
    with admin_tracking(layout, production) as tracking:
        for run_id, recorded in before.items():
            assert tracking.get_run(run_id).to_dictionary() == recorded
        for run_id in run_ids:
            [run] = tracking.search_runs([experiment], example_run_filter(run_id))
            assert (run.info.status, run.data.metrics) == ("FINISHED", {"rmse": 0.123})
