"""The production topology on the local cluster: values/production.yaml, really installed.

charts/dagma goes in with ``-f values/production.yaml -f tests/support/production-overlay.yaml``
(the overlay swaps host names, the image registry and the ingress for a port-forward, and
sizes CPU requests for 2 cores; docs/testing.md lists every line). Beside it, each in a
namespace of its own, as the production comments expect them to exist already:

- ``dagma-prod-objects``: SeaweedFS (``weed server -s3``, built from the pinned Go module
  by the cluster tool) on a PersistentVolumeClaim, its access key pair from a Secret, the
  bucket ``mlflow-artifacts`` created through the S3 API with boto3;
- ``dagma-prod-db``: Dagster's PostgreSQL; ``dagma-prod-mlflow-db``: MLflow's (database and
  role ``mlflow``), both the Debian PostgreSQL stand-in with TLS (production asks
  ``sslmode: require``);
- ``dagma-prod``: the release and the five Secrets values/production.yaml names.

The names are fixed (the overlay is a plain file): a run that died leaves namespaces behind,
which the next install deletes first. S3 reads and direct uploads run in a pod of the
MLflow image (it has boto3) in the object store's namespace, with the key pair.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster import engine, standins
from localcluster.cluster import kubectl
from localcluster.components import Layout
from support.dagster_chart import dagster_version_in_lock
from support.dagster_manifests import dagster_objects
from support.release_install import external_postgres, helm, wait_release_ready
from support.settings import load_test_settings
from support.umbrella import (
    RELEASE,
    effective_values,
    find_official_chart,
    umbrella_dir,
    values_paths,
)
from support.workloads import (
    RESTRICTED_CONTAINER,
    pod,
    pod_log,
    restricted_namespace,
    wait_for,
    wait_pod_phase,
)

OVERLAY = Path(__file__).with_name("production-overlay.yaml")
VALUES = [*values_paths(["production.yaml"]), OVERLAY]
NAMESPACE = "dagma-prod"
DAGSTER_DB = "dagma-prod-db"
MLFLOW_DB = "dagma-prod-mlflow-db"
OBJECTS = "dagma-prod-objects"
BUCKET = "mlflow-artifacts"  # of values/production.yaml's s3://mlflow-artifacts/dagma
PREFIX = "dagma"
S3_ENDPOINT = f"http://seaweedfs.{OBJECTS}.svc.cluster.local:8333"
KEYS_SECRET = "seaweedfs-keys"


@dataclass(frozen=True)
class Production:
    """The installed production topology and the logins it was given."""

    namespace: str
    admin: tuple[str, str]  # MLflow's admin (also the run pods' login, dagma-mlflow-client)
    access_key: tuple[str, str]  # the object store's key pair
    mlflow_db_password: str
    dagster: dict  # the Dagster chart's effective values
    install_seconds: float  # helm install to every Deployment Ready
    chart: Path  # the umbrella chart it was installed from (for helm upgrade)


def _secret(name: str, data: dict[str, str]) -> dict:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"metadata": {"name": name}, "data": encoded}


def _delete_namespaces(core: client.CoreV1Api, names: list[str]) -> None:
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise

    def gone() -> bool:
        existing = {n.metadata.name for n in core.list_namespace().items}
        return not existing & set(names)

    wait_for(f"namespaces {names} deleted", gone, 300)


def object_store(core: client.CoreV1Api, image: str, access_key: tuple[str, str]) -> None:
    """SeaweedFS in ``dagma-prod-objects``: a Deployment (Recreate: one writer of the
    volume) on a claim, the key pair from a Secret, Service ``seaweedfs:8333``."""
    restricted_namespace(core, OBJECTS)
    key_id, secret_key = access_key
    core.create_namespaced_secret(OBJECTS, _secret(KEYS_SECRET, {
        "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret_key}))  # fmt: skip
    core.create_namespaced_persistent_volume_claim(OBJECTS, {
        "metadata": {"name": "seaweedfs-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    })  # fmt: skip
    labels = {"app": "seaweedfs"}
    container = {
        "name": "seaweedfs", "image": image, "imagePullPolicy": "IfNotPresent",
        "envFrom": [{"secretRef": {"name": KEYS_SECRET}}],
        "ports": [{"name": "s3", "containerPort": 8333}],
        "readinessProbe": {"tcpSocket": {"port": 8333}, "periodSeconds": 2},
        "securityContext": {**RESTRICTED_CONTAINER, "runAsUser": 10002, "runAsGroup": 10002},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }  # fmt: skip
    apps = client.AppsV1Api(core.api_client)
    apps.create_namespaced_deployment(OBJECTS, {
        "metadata": {"name": "seaweedfs", "labels": labels},
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "securityContext": {"fsGroup": 10002}, "containers": [container],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {
                         "claimName": "seaweedfs-data"}}]}}},
    })  # fmt: skip
    core.create_namespaced_service(OBJECTS, {
        "metadata": {"name": "seaweedfs"},
        "spec": {"selector": labels, "ports": [{"name": "s3", "port": 8333}]},
    })  # fmt: skip
    wait_for("SeaweedFS Ready", lambda: apps.read_namespaced_deployment(
        "seaweedfs", OBJECTS).status.ready_replicas == 1, 300)  # fmt: skip


def s3_script(core: client.CoreV1Api, mlflow_image: str, name: str, script: str,
              timeout: float = 600) -> dict:  # fmt: skip
    """Run ``script`` (Python with boto3; ``s3`` is a client of the object store) in a pod
    of the MLflow image beside the store; return the JSON its last line prints."""
    prelude = (
        "import boto3, json, os, time\n"
        f"s3 = boto3.client('s3', endpoint_url={S3_ENDPOINT!r}, region_name='eu-west-1')\n"
    )
    spec = pod(name, mlflow_image, ["python", "-c", prelude + script], container={
        "envFrom": [{"secretRef": {"name": KEYS_SECRET}}],
        "env": [{"name": "HOME", "value": "/tmp"}]})  # fmt: skip
    core.create_namespaced_pod(OBJECTS, spec)
    return script_result(core, OBJECTS, name, timeout)


def script_result(core: client.CoreV1Api, namespace: str, name: str, timeout: float) -> Any:
    """The JSON line a script pod printed last, once it succeeded; the pod is deleted."""
    phase = wait_pod_phase(core, namespace, name, {"Succeeded", "Failed"}, timeout)
    log = pod_log(core, namespace, name)
    core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    assert phase == "Succeeded", f"pod {namespace}/{name}: {phase}\n{log}"
    return json.loads(log.strip().splitlines()[-1])


def create_bucket(core: client.CoreV1Api, mlflow_image: str) -> None:
    """The bucket production's artifact destination names, through the S3 API."""
    result = s3_script(
        core,
        mlflow_image,
        "create-bucket",
        f"""
for attempt in range(30):  # the S3 gateway answers before the filer has a volume
    try:
        s3.create_bucket(Bucket={BUCKET!r})
        break
    except Exception as error:
        last = repr(error); time.sleep(2)
print(json.dumps([b['Name'] for b in s3.list_buckets()['Buckets']]))
""",
    )
    assert BUCKET in result, result


def read_object(core: client.CoreV1Api, mlflow_image: str, key: str) -> bytes:
    """The bytes of ``key`` in the bucket, read from the object store itself."""
    result = s3_script(
        core,
        mlflow_image,
        "read-object",
        f"""
import base64
body = s3.get_object(Bucket={BUCKET!r}, Key={key!r})['Body'].read()
print(json.dumps(base64.b64encode(body).decode()))
""",
    )
    return base64.b64decode(result)


def list_keys(core: client.CoreV1Api, mlflow_image: str) -> list[str]:
    """Every key in the bucket."""
    return s3_script(
        core,
        mlflow_image,
        "list-keys",
        f"""
pages = s3.get_paginator('list_objects_v2').paginate(Bucket={BUCKET!r})
print(json.dumps([o['Key'] for p in pages for o in p.get('Contents', [])]))
""",
    )


def mlflow_database(core: client.CoreV1Api, layout: Layout, image: str) -> str:
    """MLflow's PostgreSQL (role and database ``mlflow``); returns the role's password."""
    admin_password, password = secrets.token_hex(12), secrets.token_hex(12)
    core.create_namespace({"metadata": {"name": MLFLOW_DB}})
    host = external_postgres(core, MLFLOW_DB, image, admin_password)
    assert host == f"postgresql.{MLFLOW_DB}.svc.cluster.local"
    sql = (f"CREATE ROLE mlflow LOGIN PASSWORD '{password}';",
           "CREATE DATABASE mlflow OWNER mlflow;")  # fmt: skip
    for statement in sql:
        kubectl(layout, "-n", MLFLOW_DB, "exec", "postgresql-0", "--", "env",
                f"PGPASSWORD={admin_password}", "psql", "-h", "127.0.0.1", "-U", "dagster",
                "-d", "dagster", "-v", "ON_ERROR_STOP=1", "-c", statement)  # fmt: skip
    return password


def release_secrets(admin: tuple[str, str], access_key: tuple[str, str], dagster_password: str,
                    mlflow_password: str) -> list[dict]:  # fmt: skip
    """The five Secrets the header of values/production.yaml asks for."""
    uri = (f"postgresql+psycopg2://mlflow:{quote(mlflow_password, safe='')}"
           f"@postgresql.{MLFLOW_DB}.svc.cluster.local:5432/mlflow")  # fmt: skip
    return [
        _secret("dagster-postgresql", {"postgresql-password": dagster_password}),
        _secret("mlflow-database", {"uri": uri}),
        _secret(
            "mlflow-s3",
            {"AWS_ACCESS_KEY_ID": access_key[0], "AWS_SECRET_ACCESS_KEY": access_key[1]},
        ),  # fmt: skip
        _secret("mlflow-admin", {"username": admin[0], "password": admin[1]}),
        _secret(
            "dagma-mlflow-client",
            {"MLFLOW_TRACKING_USERNAME": admin[0], "MLFLOW_TRACKING_PASSWORD": admin[1]},
        ),  # fmt: skip
    ]


def helm_install_args(extra_values: list[Path] = ()) -> list[str]:
    """``-f`` arguments: production, the overlay, then ``extra_values``."""
    return [arg for path in [*VALUES, *extra_values] for arg in ("-f", str(path))]


@contextmanager
def installed_production(
    layout: Layout, kube: client.ApiClient, pod_image: str, mlflow_image: str,
    extra_values: list[Path] = (),
) -> Iterator[Production]:  # fmt: skip
    """Object store, both databases and the production release (with ``extra_values`` after
    the overlay), Ready; removed afterwards."""
    official = find_official_chart(load_test_settings().dagster_chart)
    core = client.CoreV1Api(kube)
    namespaces = [NAMESPACE, DAGSTER_DB, MLFLOW_DB, OBJECTS]
    _delete_namespaces(core, namespaces)  # a previous run's, if it died
    docker = engine.docker()
    tags = standins.ensure_release_standins(docker, pod_image, dagster_version_in_lock())
    store_image = standins.ensure_object_store_image(docker, pod_image)
    admin = ("dagma-admin", secrets.token_urlsafe(12))
    access_key = (f"DAGMA{secrets.token_hex(6).upper()}", secrets.token_urlsafe(24))
    try:
        object_store(core, store_image, access_key)
        create_bucket(core, mlflow_image)
        mlflow_password = mlflow_database(core, layout, tags["postgres"])
        core.create_namespace({"metadata": {"name": DAGSTER_DB}})
        dagster_password = secrets.token_hex(12)
        host = external_postgres(core, DAGSTER_DB, tags["postgres"], dagster_password)
        assert host == yaml.safe_load(OVERLAY.read_text())["dagster"]["postgresql"][
            "postgresqlHost"]  # fmt: skip
        restricted_namespace(core, NAMESPACE)
        for secret in release_secrets(admin, access_key, dagster_password, mlflow_password):
            core.create_namespaced_secret(NAMESPACE, secret)
        chart = umbrella_dir(with_dagster_values=True, official=official)
        began = time.monotonic()
        helm(layout, NAMESPACE, "install", RELEASE, str(chart), *helm_install_args(extra_values),
             "--wait", "--timeout", "10m")  # fmt: skip
        dagster = effective_values(values_files=VALUES)["dagster"]
        if official is None:  # the official chart would have created these
            objects = dagster_objects(dagster, NAMESPACE, tags["dagster"],
                                      dagster_version_in_lock())  # fmt: skip
            kubectl(layout, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
        wait_release_ready(layout, kube, NAMESPACE)
        seconds = time.monotonic() - began
        yield Production(NAMESPACE, admin, access_key, mlflow_password, dagster, seconds, chart)
    finally:
        subprocess.run(
            [str(layout.bin / "helm"), f"--kubeconfig={layout.kubeconfig}", "-n", NAMESPACE,
             "uninstall", RELEASE, "--wait", "--ignore-not-found"],
            capture_output=True, timeout=300,
        )  # fmt: skip
        _delete_namespaces(core, namespaces)
