"""The table of bad chart values for both charts (tests/reliability/test_chart_values.py).

Every row is a value that would otherwise render something broken or silently do something
other than meant: the chart, the values, and the fragments the refusal must contain — the
value's path for a schema refusal, or the value and the fix for a template ``fail``, which
lists every broken value of the render (``broken`` of them for the row).
"""

from __future__ import annotations

from typing import Any, NamedTuple

# A password that must never appear in an error message.
MARKER = "Mk7-secret-marker"
DB_URI = f"postgresql+psycopg2://mlflow:{MARKER}@db.example.com:5432/mlflow"
USER_CODE = {
    "name": "dagma-user-code",
    "image": {"repository": "dagma-user-code", "tag": "0.1.0", "pullPolicy": "IfNotPresent"},
    "dagsterApiGrpcArgs": ["-m", "dagma.definitions"],
    "port": 3030,
    "includeConfigInLaunchedRuns": {"enabled": True},
    "envConfigMaps": [{"name": "dagma-mlflow-env"}],
    "envSecrets": [{"name": "dagma-mlflow-credentials"}],
}
EXTERNAL_MLFLOW = {"mlflow": {"enabled": False}}


class Bad(NamedTuple):
    """A value and what the refusal must say (every fragment)."""

    chart: str  # "mlflow" or "dagma"
    values: dict[str, Any]
    says: tuple[str, ...]
    broken: int = 1  # values a template refusal lists (schema refusals: not counted)


def _args(*args: str) -> dict[str, Any]:
    return {"server": {"extraArgs": list(args)}}


def _env(name: str, value: str) -> dict[str, Any]:
    return {"server": {"extraEnv": [{"name": name, "value": value}]}}


def _user_code(secret: str = "dagma-mlflow-credentials", **image: Any) -> dict[str, Any]:
    deployment = {
        **USER_CODE,
        "image": {**USER_CODE["image"], **image},
        "envSecrets": [{"name": secret}],
    }
    return {"dagster": {"dagster-user-deployments": {"deployments": [deployment]}}}


FIX_ARG = "set the matching chart value instead"
NO_SECURITY = "turns off MLflow's Host-header"
PLAIN_SECRET = "Use valueFrom.secretKeyRef"
BAD_VALUES: dict[str, Bad] = {
    # --- charts/mlflow, refused by its schema ---------------------------------------------
    "image-tag-with-space": Bad("mlflow", {"image": {"tag": "3.17 final"}}, ("/image/tag",)),
    "image-tag-leading-dash": Bad("mlflow", {"image": {"tag": "-rc1"}}, ("/image/tag",)),
    "image-tag-a-number": Bad("mlflow", {"image": {"tag": 3.17}}, ("/image/tag",)),
    "image-tag-in-repository": Bad(
        "mlflow", {"image": {"repository": "dagma-mlflow:3.17.2"}}, ("/image/repository",)
    ),
    "image-repository-uppercase": Bad(
        "mlflow", {"image": {"repository": "Registry/MLflow"}}, ("/image/repository",)
    ),
    "image-repository-empty": Bad("mlflow", {"image": {"repository": ""}}, ("/image/repository",)),
    "pull-secret-not-a-name": Bad(
        "mlflow", {"imagePullSecrets": [{"name": "My Registry"}]}, ("/imagePullSecrets/0/name",)
    ),
    "service-name-with-dot": Bad("mlflow", {"service": {"name": "mlflow.svc"}}, ("/service/name",)),
    "service-port-too-high": Bad("mlflow", {"service": {"port": 70000}}, ("/service/port",)),
    "service-port-zero": Bad("mlflow", {"service": {"port": 0}}, ("/service/port",)),
    "server-port-a-string": Bad("mlflow", {"server": {"port": "5000"}}, ("/server/port",)),
    "workers-beyond-any-node": Bad("mlflow", {"server": {"workers": 1000}}, ("/server/workers",)),
    "replicas-a-fraction": Bad("mlflow", {"replicaCount": 2.5}, ("/replicaCount",)),
    "memory-in-gigabytes-spelled-GB": Bad(
        "mlflow", {"resources": {"requests": {"memory": "1GB"}}}, ("/resources/requests/memory",)
    ),
    "cpu-as-a-word": Bad(
        "mlflow", {"resources": {"limits": {"cpu": "one"}}}, ("/resources/limits/cpu",)
    ),
    "cpu-negative": Bad(
        "mlflow", {"resources": {"requests": {"cpu": -1}}}, ("/resources/requests/cpu",)
    ),
    "unknown-resource-name": Bad("mlflow", {"resources": {"limits": {"GPU": 1}}}, ("'GPU'",)),
    "migration-memory-with-space": Bad(
        "mlflow",
        {"migrations": {"resources": {"limits": {"memory": "512 Mi"}}}},
        ("/migrations/resources/limits/memory",),
    ),
    "volume-size-zero": Bad("mlflow", {"persistence": {"size": "0"}}, ("/persistence/size",)),
    "volume-size-GB": Bad("mlflow", {"persistence": {"size": "10GB"}}, ("/persistence/size",)),
    "storage-class-not-a-name": Bad(
        "mlflow", {"persistence": {"storageClass": "Fast SSD"}}, ("/persistence/storageClass",)
    ),
    "claim-not-a-name": Bad(
        "mlflow", {"persistence": {"existingClaim": "Data_Claim"}}, ("/persistence/existingClaim",)
    ),
    "db-secret-not-a-name": Bad(
        "mlflow",
        {"backendStore": {"postgresql": {"existingSecret": "mlflow db"}}},
        ("/backendStore/postgresql/existingSecret",),
    ),
    "db-secret-key-with-space": Bad(
        "mlflow",
        {"backendStore": {"postgresql": {"uriKey": "uri key"}}},
        ("/backendStore/postgresql/uriKey",),
    ),
    "s3-destination-without-bucket": Bad(
        "mlflow", {"artifacts": {"s3": {"destination": "s3://"}}}, ("/artifacts/s3/destination",)
    ),
    "s3-bucket-uppercase": Bad(
        "mlflow",
        {"artifacts": {"s3": {"destination": "s3://My_Bucket/x"}}},
        ("/artifacts/s3/destination",),
    ),
    "s3-endpoint-without-scheme": Bad(
        "mlflow",
        {"artifacts": {"s3": {"endpointUrl": "minio:9000"}}},
        ("/artifacts/s3/endpointUrl",),
    ),
    "admin-secret-not-a-name": Bad(
        "mlflow", {"auth": {"existingSecret": "Admin"}}, ("/auth/existingSecret",)
    ),
    "ingress-host-with-port": Bad(
        "mlflow", {"ingress": {"hosts": ["mlflow.example.com:443"]}}, ("/ingress/hosts/0",)
    ),
    "ingress-host-uppercase": Bad(
        "mlflow", {"ingress": {"hosts": ["MLflow.Example.com"]}}, ("/ingress/hosts/0",)
    ),
    "ingress-tls-key-typo": Bad(
        "mlflow", {"ingress": {"tls": [{"hosts": ["a.example.com"], "secret": "t"}]}}, ("'secret'",)
    ),
    "ingress-class-not-a-name": Bad(
        "mlflow", {"ingress": {"className": "Nginx Class"}}, ("/ingress/className",)
    ),
    "uid-beyond-int32": Bad(
        "mlflow",
        {"podSecurityContext": {"runAsUser": 2147483648}},
        ("/podSecurityContext/runAsUser",),
    ),
    "gid-a-string": Bad(
        "mlflow", {"podSecurityContext": {"fsGroup": "10001"}}, ("/podSecurityContext/fsGroup",)
    ),
    "label-value-with-space": Bad(
        "mlflow", {"podLabels": {"team": "ml ops"}}, ("/podLabels/team",)
    ),
    "label-key-invalid": Bad("mlflow", {"podLabels": {"bad key!": "x"}}, ("'bad key!'",)),
    "pod-label-over-a-selector-label": Bad(
        "mlflow",
        {"podLabels": {"app.kubernetes.io/component": "x"}},
        ("podLabels may not set app.kubernetes.io/component", "Use a label of your own"),
    ),
    "node-selector-value-invalid": Bad(
        "mlflow", {"nodeSelector": {"disk": "fast ssd"}}, ("/nodeSelector/disk",)
    ),
    "annotation-not-a-string": Bad("mlflow", {"podAnnotations": {"a": 1}}, ("/podAnnotations/a",)),
    "probe-period-zero": Bad(
        "mlflow",
        {"probes": {"liveness": {"periodSeconds": 0}}},
        ("/probes/liveness/periodSeconds",),
    ),
    "job-deadline-zero": Bad(
        "mlflow",
        {"migrations": {"activeDeadlineSeconds": 0}},
        ("/migrations/activeDeadlineSeconds",),
    ),
    "job-retries-negative": Bad(
        "mlflow", {"migrations": {"backoffLimit": -1}}, ("/migrations/backoffLimit",)
    ),
    "network-peer-typo": Bad(
        "mlflow",
        {"networkPolicy": {"extraIngressFrom": [{"pod": {"matchLabels": {"a": "b"}}}]}},
        ("/networkPolicy/extraIngressFrom/0",),
    ),
    "network-peer-empty-admits-all": Bad(
        "mlflow",
        {"networkPolicy": {"extraIngressFrom": [{}]}},
        ("/networkPolicy/extraIngressFrom/0",),
    ),
    "env-name-invalid": Bad(
        "mlflow",
        {"server": {"extraEnv": [{"name": "1BAD", "value": "x"}]}},
        ("/server/extraEnv/0",),
    ),
    "env-value-and-value-from": Bad(
        "mlflow",
        {"server": {"extraEnv": [{"name": "X", "value": "a", "valueFrom": {"fieldRef": {}}}]}},
        ("/server/extraEnv/0",),
    ),
    "allowed-host-with-scheme": Bad(
        "mlflow",
        {"server": {"extraAllowedHosts": ["http://mlflow"]}},
        ("/server/extraAllowedHosts/0",),
    ),
    "cluster-domain-uppercase": Bad(
        "mlflow", {"clusterDomain": "Cluster.Local"}, ("/clusterDomain",)
    ),
    "service-account-not-a-name": Bad(
        "mlflow", {"serviceAccount": {"name": "My SA"}}, ("/serviceAccount/name",)
    ),
    # --- charts/mlflow, refused by its templates, with the fix ----------------------------
    # The flag and its URL (which holds a password) are two bad arguments.
    "arg-backend-store": Bad(
        "mlflow",
        _args("--backend-store-uri", DB_URI),
        ("extraArgs[0] (--backend-store-uri)", FIX_ARG, "extraArgs[1] (a value)", "password"),
        broken=2,
    ),
    "arg-artifacts-destination": Bad(
        "mlflow", _args("--artifacts-destination=/data"), ("--artifacts-destination", FIX_ARG)
    ),
    "arg-host": Bad("mlflow", _args("--host", "127.0.0.1"), ("extraArgs[0]", "--host", FIX_ARG)),
    "arg-short-port": Bad("mlflow", _args("-p", "8080"), ("extraArgs[0]", "server.port")),
    "arg-workers": Bad("mlflow", _args("--workers=4"), ("--workers", FIX_ARG)),
    "arg-allowed-hosts": Bad("mlflow", _args("--allowed-hosts", "*"), ("--allowed-hosts", FIX_ARG)),
    "arg-app-name": Bad("mlflow", _args("--app-name", "basic-auth"), ("--app-name", FIX_ARG)),
    "arg-disable-security": Bad(
        "mlflow",
        _args("--disable-security-middleware"),
        ("--disable-security-middleware", NO_SECURITY),
    ),
    "arg-gunicorn-drops-security": Bad(
        "mlflow", _args("--gunicorn-opts", "--timeout 60"), ("--gunicorn-opts", NO_SECURITY)
    ),
    "arg-waitress-drops-security": Bad(
        "mlflow", _args("--waitress-opts=--threads=8"), ("--waitress-opts", NO_SECURITY)
    ),
    "arg-registry-uri-with-password": Bad(
        "mlflow",
        _args("--registry-store-uri", DB_URI),
        ("--registry-store-uri", "MLFLOW_REGISTRY_STORE_URI", "secretKeyRef", "extraArgs[1]"),
        broken=2,
    ),
    "arg-any-url-with-password": Bad(
        "mlflow", _args("--trace-archival-config", DB_URI), ("extraArgs[1]", "password", "Secret")
    ),
    "env-backend-store": Bad(
        "mlflow", _env("MLFLOW_BACKEND_STORE_URI", DB_URI), ("MLFLOW_BACKEND_STORE_URI", "manages")
    ),
    "env-disable-security": Bad(
        "mlflow",
        _env("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "true"),
        ("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "manages"),
    ),
    "env-allowed-hosts": Bad(
        "mlflow",
        _env("MLFLOW_SERVER_ALLOWED_HOSTS", "*"),
        ("MLFLOW_SERVER_ALLOWED_HOSTS", "manages"),
    ),
    "env-gunicorn": Bad("mlflow", _env("MLFLOW_GUNICORN_OPTS", "-t 60"), ("MLFLOW_GUNICORN_OPTS",)),
    "env-aws-secret-over-chart": Bad(
        "mlflow", _env("AWS_SECRET_ACCESS_KEY", MARKER), ("AWS_SECRET_ACCESS_KEY", "manages")
    ),
    "env-plain-password": Bad("mlflow", _env("DB_PASSWORD", MARKER), ("DB_PASSWORD", PLAIN_SECRET)),
    "env-plain-uri-with-password": Bad(
        "mlflow",
        _env("MLFLOW_REGISTRY_STORE_URI", DB_URI),
        ("MLFLOW_REGISTRY_STORE_URI", PLAIN_SECRET),
    ),
    "allowed-hosts-wildcard-all": Bad(
        "mlflow",
        {"server": {"extraAllowedHosts": ["*"]}},
        ("extraAllowedHosts", "Host-header check off"),
    ),
    "ingress-without-login": Bad(
        "mlflow",
        {"ingress": {"enabled": True, "hosts": ["mlflow.example.com"]}},
        ("ingress.enabled=true", "auth.enabled=true", "auth.allowUnauthenticatedExposure=true"),
    ),
    "load-balancer-without-login": Bad(
        "mlflow",
        {"service": {"type": "LoadBalancer"}},
        ("service.type=LoadBalancer", "auth.allowUnauthenticatedExposure=true"),
    ),
    "node-port-without-login": Bad(
        "mlflow", {"service": {"type": "NodePort"}}, ("service.type=NodePort", "auth.enabled=true")
    ),
    # --- charts/dagma ---------------------------------------------------------------------
    "tracking-uri-with-password": Bad(
        "dagma",
        {**EXTERNAL_MLFLOW, "tracking": {"uri": f"https://runs:{MARKER}@mlflow.example.com"}},
        ("tracking.uri carries credentials", "tracking.existingSecret"),
    ),
    "ui-url-with-password": Bad(
        "dagma",
        {"tracking": {"uiUrl": f"https://me:{MARKER}@mlflow.example.com"}},
        ("tracking.uiUrl carries credentials",),
    ),
    "dagster-ui-url-with-token-user": Bad(
        "dagma",
        {"tracking": {"dagsterUiUrl": f"https://{MARKER}@dagster.example.com"}},
        ("tracking.dagsterUiUrl carries credentials",),
    ),
    "user-code-tag-empty": Bad(
        "dagma", _user_code(tag=""), ("image.tag is empty", "1.13.27", '"0.1.0"')
    ),
    "user-code-tag-a-number": Bad(
        "dagma", _user_code(tag=1.10), ("image.tag is the number", "Quote")
    ),
    "network-policy-without-run-pod-label": Bad(
        "dagma",
        {
            "mlflow": {"networkPolicy": {"enabled": True}},
            "dagster": {
                "runLauncher": {
                    "config": {"k8sRunLauncher": {"labels": {"dagma/mlflow-client": None}}}
                }
            },
        },
        ("dagma/mlflow-client", "dagster.runLauncher.config.k8sRunLauncher.labels"),
    ),
    "credentials-beside-an-existing-secret": Bad(
        "dagma",
        {
            "tracking": {"existingSecret": "team-login", "credentials": {"password": MARKER}},
            **_user_code(secret="team-login"),
        },
        ("tracking.credentials are set", "tracking.existingSecret (team-login)"),
    ),
    "user-code-deployments-empty": Bad(
        "dagma",
        {"dagster": {"dagster-user-deployments": {"deployments": []}}},
        ("deployments is empty", "dagma.definitions"),
    ),
    "external-mlflow-without-a-uri": Bad(
        "dagma", EXTERNAL_MLFLOW, ("mlflow.enabled=false", "set tracking.uri")
    ),
    "mlflow-login-without-client-credentials": Bad(
        "dagma",
        {"mlflow": {"auth": {"enabled": True, "existingSecret": "mlflow-admin"}}},
        ("mlflow.auth.enabled is true but the MLflow clients have no credentials",),
    ),
    "client-retries-negative": Bad(
        "dagma", {"tracking": {"http": {"maxRetries": -1}}}, ("/tracking/http/maxRetries",)
    ),
    "client-timeout-a-string": Bad(
        "dagma",
        {"tracking": {"http": {"timeoutSeconds": "60"}}},
        ("/tracking/http/timeoutSeconds",),
    ),
    "server-wait-negative": Bad(
        "dagma",
        {"tracking": {"http": {"serverWaitSeconds": -1}}},
        ("/tracking/http/serverWaitSeconds",),
    ),
    "server-wait-a-float": Bad(
        "dagma",
        {"tracking": {"http": {"serverWaitSeconds": 2.5}}},
        ("/tracking/http/serverWaitSeconds",),
    ),
    "server-wait-a-string": Bad(
        "dagma",
        {"tracking": {"http": {"serverWaitSeconds": "60s"}}},
        ("/tracking/http/serverWaitSeconds",),
    ),
    "tracking-uri-not-http": Bad(
        "dagma", {**EXTERNAL_MLFLOW, "tracking": {"uri": "ftp://mlflow"}}, ("/tracking/uri",)
    ),
    "experiment-empty": Bad("dagma", {"tracking": {"experiment": ""}}, ("/tracking/experiment",)),
    "configmap-name-too-long": Bad(
        "dagma", {"tracking": {"configMapName": "a" * 254}}, ("/tracking/configMapName",)
    ),
    "subchart-value-refused-through-umbrella": Bad(
        "dagma",
        {"mlflow": _args("--disable-security-middleware")},
        ("mlflow.server.extraArgs[0] (--disable-security-middleware)", NO_SECURITY),
    ),
    "subchart-schema-through-umbrella": Bad(
        "dagma", {"mlflow": {"persistence": {"size": "2GB"}}}, ("/persistence/size",)
    ),
}
