"""MLflow Tracking server checks: name, port, health, version, Host header, login, experiment.

Every step has a short timeout capped by the command's :class:`~dagma.cli.deadline.Deadline`.
HTTP goes through :mod:`dagma.mlflow_server` (MLflow's own ``http_request``, retries off:
the client's default retries take minutes against a server that does not answer); the
API check is its probe, the same request a run's first one is. DNS and TCP use ``socket``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from dagma import mlflow_server
from dagma.cli.deadline import Deadline
from dagma.cli.report import Check, Status
from dagma.mlflow_server import Answer, Outcome

STEP_TIMEOUT = 3.0  # seconds for one DNS lookup, connect or HTTP request
PROXIED_SCHEME = "mlflow-artifacts:"
DEFAULT_EXPERIMENT_ID = "0"  # always exists; new experiments get its artifact root's sibling


@dataclass(frozen=True)
class TrackingServer:
    """The server the settings point at, and where that URI came from."""

    uri: str
    source: str

    @property
    def setting(self) -> str:
        """What to correct, for fixes: the variable (or option) the URI came from."""
        if self.source.startswith("the default"):
            return "MLFLOW_TRACKING_URI (unset, so the default applies)"
        return self.source

    @property
    def host(self) -> str:
        """Host name (or address) of the URI."""
        return urlparse(self.uri).hostname or ""

    @property
    def port(self) -> int:
        """Port of the URI, or its scheme's default."""
        parsed = urlparse(self.uri)
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    @property
    def host_header(self) -> str:
        """The ``Host`` header clients send: the port only when it is not the scheme's default."""
        parsed = urlparse(self.uri)
        return f"{self.host}:{parsed.port}" if parsed.port else self.host


def resolve(server: TrackingServer, deadline: Deadline) -> Check:
    """DNS: does the host name resolve from here? (Run in a thread: getaddrinfo has no timeout.)"""
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["addresses"] = socket.getaddrinfo(
                server.host, server.port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(deadline.timeout(STEP_TIMEOUT))
    fix = (
        f"correct the host in {server.setting}, or run where {server.host!r} resolves "
        "(a Service name such as 'mlflow' resolves only inside the cluster; from your machine "
        "use the port-forward URL http://127.0.0.1:5000)"
    )
    if "addresses" in outcome:
        addresses = sorted({info[4][0] for info in outcome["addresses"]})
        return Check("dns", Status.OK, f"{server.host} resolves to {', '.join(addresses)}")
    if "error" in outcome:
        return Check("dns", Status.FAIL, f"{server.host} does not resolve: {outcome['error']}", fix)
    return Check("dns", Status.FAIL, f"no DNS answer for {server.host} in time", fix)


def connect(server: TrackingServer, deadline: Deadline) -> Check:
    """TCP: does anything accept connections on the host and port?"""
    where = f"{server.host}:{server.port}"
    try:
        with socket.create_connection(
            (server.host, server.port), timeout=deadline.timeout(STEP_TIMEOUT)
        ):
            return Check("tcp", Status.OK, f"{where} accepts connections")
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        return Check(
            "tcp",
            Status.FAIL,
            f"cannot connect to {where}: {reason}",
            "start the MLflow server (or its port-forward), "
            f"or correct the port in {server.setting}",
        )


def _import_mlflow(deadline: Deadline) -> None:
    """Import MLflow's HTTP code; the first import (seconds of CPU) is not charged to the
    budget, which bounds time spent *waiting* for the network."""
    started = time.monotonic()
    from mlflow.utils import rest_utils  # noqa: F401

    deadline.extend(time.monotonic() - started)


def _request(server: TrackingServer, endpoint: str, deadline: Deadline) -> Any:
    """One GET with MLflow's credentials from the environment, no retries, a short timeout."""
    creds = mlflow_server.host_creds(server.uri)
    return mlflow_server.request(creds, endpoint, deadline.timeout(STEP_TIMEOUT))


def health(server: TrackingServer, deadline: Deadline) -> Check:
    """``/health`` answers 200 (it is exempt from MLflow's Host header check)."""
    _import_mlflow(deadline)  # the first MLflow import happens here
    timeout = deadline.timeout(STEP_TIMEOUT)
    try:
        response = mlflow_server.request(mlflow_server.host_creds(server.uri), "/health", timeout)
    except Exception as exc:
        return Check(
            "health",
            Status.FAIL,
            f"{server.uri}/health: {mlflow_server.describe_failure(exc, timeout)}",
            "something accepts connections there but it is not a working MLflow server: "
            f"check the server's logs, or correct {server.setting}",
        )
    # MLflow answers exactly "OK"; a web page with 200 (a proxy, another app) is not that.
    if response.status_code != 200 or response.text.strip() != "OK":
        answered = mlflow_server.came_back(
            response.status_code, mlflow_server.content_type_of(response), response.text
        )
        return Check(
            "health",
            Status.FAIL,
            f"{server.uri}/health answered {answered}: not MLflow's 'OK'",
            f"{server.setting} must be the MLflow server's base URL (no path), e.g. "
            f"http://mlflow:5000; check that {server.host}:{server.port} is the MLflow server "
            "and not another web server or a proxy's page",
        )
    return Check("health", Status.OK, f"{server.uri}/health answers OK")


def version(server: TrackingServer, deadline: Deadline) -> Check:
    """``/version``: warn when the server's major version differs from this client's."""
    import mlflow

    client_version = mlflow.__version__
    try:
        response = _request(server, "/version", deadline)
    except Exception as exc:
        reason = mlflow_server.describe_failure(exc)
        return Check("version", Status.WARN, f"/version did not answer: {reason}")
    server_version = response.text.strip()
    if response.status_code != 200 or not server_version[:1].isdigit():
        return Check("version", Status.WARN, f"/version answered HTTP {response.status_code}")
    found = f"server MLflow {server_version}, client MLflow {client_version}"
    if server_version.split(".")[0] != client_version.split(".")[0]:
        return Check(
            "version",
            Status.WARN,
            f"{found}: major versions differ",
            "use the same major version on both sides (images/mlflow pins the server's)",
        )
    return Check("version", Status.OK, found)


def _anonymous(creds: Any) -> Any:
    """The same host and TLS settings without any login."""
    from mlflow.utils.rest_utils import MlflowHostCreds

    return MlflowHostCreds(
        host=creds.host,
        ignore_tls_verification=creds.ignore_tls_verification,
        client_cert_path=creds.client_cert_path,
        server_cert_path=creds.server_cert_path,
    )


def _supplied_login(creds: Any) -> str | None:
    """What login the environment supplies, described without any secret; None for none."""
    if creds.token:
        return "a bearer token (MLFLOW_TRACKING_TOKEN)"
    if creds.username:
        return f"user {creds.username!r} with a password (MLFLOW_TRACKING_USERNAME/PASSWORD)"
    if creds.auth:
        return "an auth provider (MLFLOW_TRACKING_AUTH)"
    return None


def api_access(server: TrackingServer, experiment: str, deadline: Deadline) -> list[Check]:
    """The run's own first request (:func:`dagma.mlflow_server.probe`: the experiment lookup)
    with the configured Host header and login.

    Yields the ``host-header``, ``credentials``, ``experiment`` and ``artifacts`` checks;
    the later ones are only as meaningful as the earlier ones allow.
    """
    creds = mlflow_server.host_creds(server.uri)
    login = _supplied_login(creds)
    timeout = deadline.timeout(STEP_TIMEOUT)
    answer = mlflow_server.probe(server.uri, experiment, timeout, creds=creds)
    if answer.outcome is Outcome.NO_ANSWER:
        return [
            Check(
                "host-header",
                Status.FAIL,
                f"the API call {mlflow_server.EXPERIMENT_BY_NAME} got no answer: {answer.reason}",
                "check the server's logs (its database may be unreachable)",
            )
        ]
    if answer.outcome is Outcome.HOST_REFUSED:
        return [_host_refused(server)]
    checks = [
        Check(
            "host-header",
            Status.OK,
            f"the server accepts Host {server.host_header!r} on API calls",
        )
    ]
    checks.append(_credentials(server, creds, login, answer, deadline))
    if checks[-1].status is Status.FAIL:
        return checks
    if answer.outcome is Outcome.NOT_MLFLOW:
        checks.append(
            Check(
                "experiment",
                Status.FAIL,
                f"looking up experiment {experiment!r} answered "
                f"{mlflow_server.came_back(answer.status_code, answer.content_type, answer.text)}"
                ": not MLflow's JSON",
                f"check that {server.setting} is the MLflow server's base URL and not another "
                "web server's or a proxy's; else the server's logs",
            )
        )
        return checks
    checks.extend(_experiment_and_artifacts(server, experiment, answer, deadline))
    return checks


def _host_refused(server: TrackingServer) -> Check:
    host = server.host_header
    return Check(
        "host-header",
        Status.FAIL,
        f"the server refuses Host {host!r} with 403 (MLflow's --allowed-hosts protection)",
        f"start the server with --allowed-hosts including {host!r} (or {server.host + ':*'!r}); "
        f"with charts/mlflow set server.extraAllowedHosts: [{host!r}] "
        f"(charts/dagma: mlflow.server.extraAllowedHosts)",
    )


def _credentials(
    server: TrackingServer, creds: Any, login: str | None, answer: Answer, deadline: Deadline
) -> Check:
    """Does the server ask for a login, and does the environment supply a good one?"""
    supply = (
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (in the cluster they come "
        "from the release's Secret, see the chart's NOTES)"
    )
    if answer.outcome is Outcome.LOGIN_REFUSED and answer.status_code == 401:
        if login is None:
            return Check(
                "credentials",
                Status.FAIL,
                "the server asks for a login (HTTP 401) and the environment supplies none",
                supply,
            )
        return Check(
            "credentials",
            Status.FAIL,
            f"the server refused the login the environment supplies: {login}",
            f"correct the credentials; {supply}",
        )
    if answer.outcome is Outcome.LOGIN_REFUSED:  # 403: this login may not read experiments
        return Check(
            "credentials",
            Status.FAIL,
            f"the server denies {login or 'anonymous access'} permission to read experiments "
            "(HTTP 403)",
            "grant the user READ (and EDIT to log runs) on the experiment, or use another user",
        )
    if login is None:
        return Check("credentials", Status.OK, "the server does not ask for a login")
    anonymous = mlflow_server.probe(
        server.uri, "Default", deadline.timeout(STEP_TIMEOUT), creds=_anonymous(creds)
    )
    if anonymous.outcome is Outcome.NO_ANSWER:
        return Check("credentials", Status.OK, f"{login} is accepted")
    if anonymous.status_code == 401:
        return Check("credentials", Status.OK, f"the server asks for a login; {login} is accepted")
    return Check(
        "credentials", Status.OK, f"the server does not ask for a login ({login} is not needed)"
    )


def _experiment_and_artifacts(
    server: TrackingServer, name: str, answer: Answer, deadline: Deadline
) -> list[Check]:
    if answer.outcome is Outcome.MISSING:
        found = Check(
            "experiment",
            Status.OK,
            f"experiment {name!r} does not exist yet; the first run creates it",
        )
        # New experiments take the server's default artifact root, which Default shows.
        endpoint = "/api/2.0/mlflow/experiments/get?experiment_id=" + DEFAULT_EXPERIMENT_ID
        try:
            default = _request(server, endpoint, deadline)
            location = json.loads(default.text)["experiment"]["artifact_location"]
        except Exception as exc:
            reason = mlflow_server.describe_failure(exc)
            return [found, Check("artifacts", Status.WARN, f"not checked: {reason}")]
        return [found, artifact_location(location, f"new experiments (as {name!r} will be)")]
    experiment = answer.experiment or {}
    experiment_id = experiment["experiment_id"]
    if experiment.get("lifecycle_stage") == "deleted":
        return [
            Check(
                "experiment",
                Status.FAIL,
                f"experiment {name!r} (id {experiment_id}) is deleted: runs cannot be "
                "created in it, and its name stays taken",
                f"restore it: MLFLOW_TRACKING_URI={server.uri} mlflow experiments restore "
                f"--experiment-id {experiment_id}; or use another name in MLFLOW_EXPERIMENT "
                "(or purge it for good with `mlflow gc`)",
            )
        ]
    return [
        Check("experiment", Status.OK, f"experiment {name!r} exists (id {experiment_id})"),
        artifact_location(experiment["artifact_location"], f"experiment {name!r}"),
    ]


def artifact_location(location: str, whose: str) -> Check:
    """Proxied through the server (good), an object store (needs own access), or a disk path."""
    found = f"{whose}: artifact location {location}"
    if location.startswith(PROXIED_SCHEME):
        return Check("artifacts", Status.OK, f"{found}: uploads go through the server")
    scheme = urlparse(location).scheme
    if scheme and scheme != "file" and len(scheme) > 1:  # len 1: a Windows drive letter
        return Check(
            "artifacts",
            Status.WARN,
            f"{found}: clients write there directly and need their own access to it",
            "give this process credentials for that store, or let the server proxy artifacts "
            "(--serve-artifacts --artifacts-destination); `dagma doctor --write-test` proves it",
        )
    return Check(
        "artifacts",
        Status.FAIL,
        f"{found}: a path on the server's disk; clients write artifacts to that path on "
        "their own disk (lost in a run pod), not to the server",
        "start the server with --serve-artifacts --artifacts-destination <path or bucket> and "
        "without --default-artifact-root (charts/mlflow always proxies); an experiment keeps its "
        "location, so then use a new experiment name in MLFLOW_EXPERIMENT",
    )
