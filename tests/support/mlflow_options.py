"""Values for each option of charts/mlflow, shared by the rendering and security tests.

Every option is rendered, validated for each Kubernetes version, linted and checked for the
restricted Pod Security Standard, so a new option belongs here.
"""

from __future__ import annotations

from typing import Any

POSTGRESQL = {"backendStore": {"type": "postgresql", "postgresql": {"existingSecret": "mlflow-db"}}}
S3 = {
    "artifacts": {
        "type": "s3",
        "s3": {
            "destination": "s3://mlflow-artifacts/dagma",
            "endpointUrl": "http://minio.storage:9000",
            "region": "eu-west-1",
            "existingSecret": "mlflow-s3",
        },
    }
}
AUTH = {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}}
NETWORK_POLICY = {"networkPolicy": {"enabled": True}}
# An ingress without MLflow's own login: only as an explicit opt-in (a proxy in front logs in).
INGRESS = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "hosts": ["mlflow.example.com"],
        "tls": [{"hosts": ["mlflow.example.com"], "secretName": "mlflow-tls"}],
    },
    "auth": {"allowUnauthenticatedExposure": True},
}
EXTERNAL = {
    **POSTGRESQL,
    **S3,
    **NETWORK_POLICY,
    **INGRESS,
    **AUTH,
    "replicaCount": 2,
    "server": {"workers": 2},
    "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:x"}},
}

OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "postgresql": POSTGRESQL,
    "s3": S3,
    "postgresql-and-s3": {**POSTGRESQL, **S3},
    "auth": AUTH,
    "auth-postgresql": {**AUTH, **POSTGRESQL},
    "network-policy": NETWORK_POLICY,
    "ingress": INGRESS,
    "ingress-with-auth": {**INGRESS, **AUTH},
    "existing-claim": {"persistence": {"existingClaim": "mlflow-data"}},
    "read-write-many": {"persistence": {"accessMode": "ReadWriteMany", "storageClass": "nfs"}},
    "everything-external": EXTERNAL,
}
