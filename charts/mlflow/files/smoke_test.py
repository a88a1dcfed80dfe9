"""``helm test``: log a run with a small artifact through the Service and read it back.

It checks what users depend on: the server accepts the Service's Host header, hands out a
proxied ``mlflow-artifacts:`` artifact URI (not a path on the client's disk), stores the
artifact, and serves the same bytes back. The last line printed is a JSON summary.

Environment: MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_USERNAME/PASSWORD with basic auth).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from mlflow import MlflowClient

EXPERIMENT = "helm-test"
ARTIFACT_DIR = "helm-test"
ARTIFACT_NAME = "payload.txt"


def main() -> int:
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id, run_name=f"helm-test-{uuid.uuid4().hex[:8]}")
    run_id = run.info.run_id
    if not run.info.artifact_uri.startswith("mlflow-artifacts:"):
        print(
            f"FAIL: the server gave artifact URI {run.info.artifact_uri!r}: clients would write "
            "artifacts to their own disk. The server must run with --serve-artifacts.",
            file=sys.stderr,
        )
        return 1
    payload = f"written by helm test, run {run_id}\n"
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch, ARTIFACT_NAME)
        local.write_text(payload)
        client.log_param(run_id, "source", "helm test")
        client.log_metric(run_id, "payload_bytes", len(payload))
        client.log_artifact(run_id, str(local), artifact_path=ARTIFACT_DIR)
        back = client.download_artifacts(run_id, f"{ARTIFACT_DIR}/{ARTIFACT_NAME}", scratch + "/b")
        read_back = Path(back).read_text()
    if read_back != payload:
        print(f"FAIL: read back {read_back!r}, logged {payload!r}", file=sys.stderr)
        client.set_terminated(run_id, status="FAILED")
        return 1
    client.set_terminated(run_id)
    summary = {
        "experiment_id": experiment_id,
        "run_id": run_id,
        "artifact_uri": run.info.artifact_uri,
        "artifact_path": f"{ARTIFACT_DIR}/{ARTIFACT_NAME}",
        "payload": payload,
    }
    print(f"OK: logged run {run_id} with an artifact and read the same bytes back")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
