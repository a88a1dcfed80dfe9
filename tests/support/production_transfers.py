"""Large artifacts on the production topology: through MLflow's proxy, and straight to S3.

A *client pod* is what a run pod is to MLflow: the user-code image, the release's client
label (admitted by the NetworkPolicy), ``envFrom`` the MLflow ConfigMap and the client
Secret, so the official client there has the run pods' URI, login and HTTP bounds. Its
script prints progress lines and, last, one JSON line: what it measured or what happened.
Both sides write the same bytes (``random.Random(0).randbytes``), so the proxied and the
direct upload move the same file.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kubernetes import client

from support.production import BUCKET, s3_script
from support.workloads import pod, pod_log, wait_for

MB = 2**20
CLIENT_LABEL = {"dagma/mlflow-client": "true"}
WRITE_FILE = """
import json, os, random, sys, time
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
path = "/tmp/model.bin"
with open(path, "wb") as out:
    out.write(random.Random(0).randbytes({size}))
"""
PROXIED_UPLOADS = (
    WRITE_FILE
    + """
from mlflow import MlflowClient
tracking = MlflowClient()
experiment = tracking.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT"]).experiment_id
found = {{}}
for mode in ("single request", "multipart"):
    os.environ["MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD"] = str(mode == "multipart").lower()
    run = tracking.create_run(experiment, run_name=f"upload {{mode}}")
    began = time.monotonic()
    tracking.log_artifact(run.info.run_id, path)
    found[mode] = {{"seconds": time.monotonic() - began, "run_id": run.info.run_id,
                   "artifact_uri": run.info.artifact_uri}}
    tracking.set_terminated(run.info.run_id)
print(json.dumps(found))
"""
)
UPLOAD_UNDER_FAULT = (
    WRITE_FILE
    + """
from mlflow import MlflowClient
tracking = MlflowClient()
experiment = tracking.get_experiment_by_name(os.environ["MLFLOW_EXPERIMENT"]).experiment_id
run = tracking.create_run(experiment, run_name="upload while the store restarts")
print("uploading", flush=True)
began = time.monotonic()
try:
    tracking.log_artifact(run.info.run_id, path)
    error, status = None, "FINISHED"
except Exception as failure:  # what a step sees: the resource fails the run with it
    error, status = f"{{type(failure).__name__}}: {{failure}}", "FAILED"
seconds = time.monotonic() - began
tracking.set_terminated(run.info.run_id, status)
print(json.dumps({{"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri,
                  "error": error, "seconds": seconds}}))
"""
)
DIRECT_UPLOAD = (
    WRITE_FILE
    + """
began = time.monotonic()
s3.upload_file(path, {bucket!r}, "direct/model.bin")
print(json.dumps({{"seconds": time.monotonic() - began}}))
"""
)


def client_pod(core: client.CoreV1Api, namespace: str, image: str, name: str, script: str) -> None:
    """Start ``script`` in a pod the release's NetworkPolicy admits, with the run pods'
    MLflow settings and login (the ConfigMap and Secret of values/production.yaml)."""
    spec = pod(name, image, ["python", "-c", script], container={
        "envFrom": [{"configMapRef": {"name": "dagma-mlflow-env"}},
                    {"secretRef": {"name": "dagma-mlflow-client"}}],
        "env": [{"name": "HOME", "value": "/tmp"}]})  # fmt: skip
    spec["metadata"]["labels"] |= CLIENT_LABEL
    core.create_namespaced_pod(namespace, spec)


def when_logged(core: client.CoreV1Api, namespace: str, name: str, line: str,
                action: Callable[[], None], timeout: float = 300) -> float:  # fmt: skip
    """Run ``action`` as soon as the pod's log shows ``line``; the seconds waited."""
    began = time.monotonic()

    def logged() -> bool:
        try:
            return line in pod_log(core, namespace, name)
        except client.ApiException:  # not started yet
            return False

    wait_for(f"{name} logged {line!r}", logged, timeout)
    action()
    return time.monotonic() - began


def direct_upload_seconds(core: client.CoreV1Api, mlflow_image: str, size: int) -> float:
    """boto3's ``upload_file`` of the same bytes into the bucket, from beside the store."""
    script = DIRECT_UPLOAD.format(size=size, bucket=BUCKET)
    return s3_script(core, mlflow_image, "direct-upload", script)["seconds"]


def object_sizes(core: client.CoreV1Api, mlflow_image: str, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` in the bucket with its size, read from the store itself."""
    script = f"""
pages = s3.get_paginator('list_objects_v2').paginate(Bucket={BUCKET!r}, Prefix={prefix!r})
print(json.dumps({{o['Key']: o['Size'] for p in pages for o in p.get('Contents', [])}}))
"""
    return s3_script(core, mlflow_image, "object-sizes", script)
