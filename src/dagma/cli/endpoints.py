"""Where ``dagma verify`` looks by default, and how its hints say to reach each server.

One place for the ports: the local ends of the chart NOTES' and skaffold.yaml's
port-forwards, ``make dev``'s defaults (``src/dagma/dev/demo.py`` reads them here), and
``dagma verify``'s defaults. The Services are charts/dagma's defaults (release and namespace
``dagma``); ``tests/integration/test_verify_notes.py`` compares them with the rendered chart.
A hint forwards the port of the URL the user gave, so it matches the command they typed.
"""

from __future__ import annotations

from urllib.parse import urlparse

NAMESPACE = "dagma"
DAGSTER_WEBSERVER_SERVICE = "dagma-dagster-webserver"  # <release>-dagster-webserver
DAGSTER_WEBSERVER_SERVICE_PORT = 3000  # charts/dagma: dagster.dagsterWebserver.service.port
MLFLOW_SERVICE = "mlflow"  # charts/dagma: mlflow.service.name
MLFLOW_SERVICE_PORT = 5000  # charts/dagma: mlflow.service.port
DEFAULT_DAGSTER_PORT = 3000
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_DAGSTER_URL = f"http://localhost:{DEFAULT_DAGSTER_PORT}"
DEFAULT_MLFLOW_URL = f"http://localhost:{DEFAULT_MLFLOW_PORT}"


def _local_port(url: str) -> int:
    parsed = urlparse(url)
    try:
        port = parsed.port
    except ValueError:  # not a port: the hint still names the Service's
        port = None
    return port or (443 if parsed.scheme == "https" else 80)


def port_forward(service: str, service_port: int, url: str) -> str:
    """The ``kubectl port-forward`` that makes ``service`` answer at ``url`` on this machine."""
    return (
        f"kubectl --namespace {NAMESPACE} port-forward svc/{service} "
        f"{_local_port(url)}:{service_port}"
    )


def webserver_hint(dagster_url: str) -> str:
    """What to start when no Dagster webserver answers at ``dagster_url``."""
    forward = port_forward(DAGSTER_WEBSERVER_SERVICE, DAGSTER_WEBSERVER_SERVICE_PORT, dagster_url)
    return (
        "start it (make dev prints the dagma verify line for its ports) or its port-forward: "
        f"{forward}; or pass --dagster-url"
    )


def mlflow_hint(mlflow_url: str) -> str:
    """What to start when no MLflow server answers at ``mlflow_url``."""
    forward = port_forward(MLFLOW_SERVICE, MLFLOW_SERVICE_PORT, mlflow_url)
    return (
        "start MLflow (make dev prints the dagma verify line for its ports) or its "
        f"port-forward: {forward}; or pass --mlflow-url"
    )
