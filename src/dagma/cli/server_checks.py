"""MLflow Tracking server checks: name, port, health, version, Host header, login, experiment.

Every step has a short timeout capped by the command's :class:`~dagma.cli.budget.Deadline`,
and HTTP goes through MLflow's own ``rest_utils`` with retries off: the client's default
retries take minutes against a server that does not answer. DNS and TCP use ``socket``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

from dagma.cli.budget import Deadline
from dagma.cli.report import Check, Status

STEP_TIMEOUT = 3.0  # seconds for one DNS lookup, connect or HTTP request
PROXIED_SCHEME = "mlflow-artifacts:"
# MLflow's HostValidationMiddleware answers 403 with this text (mlflow.server.security_utils).
INVALID_HOST_TEXT = "Invalid Host header"
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


def describe_error(exc: BaseException) -> str:
    """A network error as one short line (MLflow and gql wrap requests' errors at length)."""
    text = " ".join(str(exc).split())
    if "ReadTimeout" in text or "timed out" in text:
        return "no answer in time (the connection was accepted, then nothing came back)"
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text if len(text) <= 240 else text[:237] + "..."


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


def _rest_utils(deadline: Deadline) -> Any:
    """MLflow's rest_utils; the first import (seconds of CPU) is not charged to the budget,
    which bounds time spent *waiting* for the network."""
    started = time.monotonic()
    from mlflow.utils import rest_utils

    deadline.extend(time.monotonic() - started)
    return rest_utils


def request(
    creds: Any, endpoint: str, deadline: Deadline, method: str = "GET", **kwargs: Any
) -> Any:
    """One HTTP request through MLflow's rest_utils: no retries, a short timeout, any status."""
    http_request = _rest_utils(deadline).http_request
    return http_request(
        creds,
        endpoint,
        method,
        max_retries=0,
        backoff_factor=0,
        timeout=deadline.timeout(STEP_TIMEOUT),
        raise_on_status=False,
        **kwargs,
    )


def env_creds(server: TrackingServer) -> Any:
    """MLflow's host credentials for the URI, as the client builds them from its environment."""
    from mlflow.utils.credentials import get_default_host_creds

    return get_default_host_creds(server.uri)


def health(server: TrackingServer, deadline: Deadline) -> Check:
    """``/health`` answers 200 (it is exempt from MLflow's Host header check)."""
    _rest_utils(deadline)  # the first MLflow import happens here
    try:
        response = request(env_creds(server), "/health", deadline)
    except Exception as exc:
        return Check(
            "health",
            Status.FAIL,
            f"{server.uri}/health: {describe_error(exc)}",
            "something accepts connections there but it is not a working MLflow server: "
            f"check the server's logs, or correct {server.setting}",
        )
    if response.status_code != 200:
        return Check(
            "health",
            Status.FAIL,
            f"{server.uri}/health answered HTTP {response.status_code}: {response.text[:120]!r}",
            f"{server.setting} must be the server's base URL (no path), e.g. http://mlflow:5000",
        )
    return Check("health", Status.OK, f"{server.uri}/health answers OK")


def version(server: TrackingServer, deadline: Deadline) -> Check:
    """``/version``: warn when the server's major version differs from this client's."""
    import mlflow

    client_version = mlflow.__version__
    try:
        response = request(env_creds(server), "/version", deadline)
    except Exception as exc:
        return Check("version", Status.WARN, f"/version did not answer: {describe_error(exc)}")
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


def _experiment_endpoint(name: str) -> str:
    return "/api/2.0/mlflow/experiments/get-by-name?" + urlencode({"experiment_name": name})


def api_access(server: TrackingServer, experiment: str, deadline: Deadline) -> list[Check]:
    """A real API call (the experiment lookup) with the configured Host header and login.

    Yields the ``host-header``, ``credentials``, ``experiment`` and ``artifacts`` checks;
    the later ones are only as meaningful as the earlier ones allow.
    """
    creds = env_creds(server)
    login = _supplied_login(creds)
    endpoint = _experiment_endpoint(experiment)
    try:
        response = request(creds, endpoint, deadline)
    except Exception as exc:
        return [
            Check(
                "host-header",
                Status.FAIL,
                f"the API call {endpoint} got no answer: {describe_error(exc)}",
                "check the server's logs (its database may be unreachable)",
            )
        ]
    if response.status_code == 403 and INVALID_HOST_TEXT in response.text:
        return [_host_refused(server)]
    checks = [
        Check(
            "host-header",
            Status.OK,
            f"the server accepts Host {server.host_header!r} on API calls",
        )
    ]
    checks.append(_credentials(server, creds, login, response, deadline))
    if checks[-1].status is Status.FAIL:
        return checks
    if response.status_code not in (200, 404):
        checks.append(
            Check(
                "experiment",
                Status.FAIL,
                f"looking up experiment {experiment!r} answered HTTP {response.status_code}: "
                f"{response.text[:160]!r}",
                "check the server's logs",
            )
        )
        return checks
    checks.extend(_experiment_and_artifacts(server, creds, experiment, response, deadline))
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
    server: TrackingServer, creds: Any, login: str | None, response: Any, deadline: Deadline
) -> Check:
    """Does the server ask for a login, and does the environment supply a good one?"""
    supply = (
        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (in the cluster they come "
        "from the release's Secret, see the chart's NOTES)"
    )
    if response.status_code == 401:
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
    if response.status_code == 403:
        return Check(
            "credentials",
            Status.FAIL,
            f"the server denies {login or 'anonymous access'} permission to read experiments "
            "(HTTP 403)",
            "grant the user READ (and EDIT to log runs) on the experiment, or use another user",
        )
    if login is None:
        return Check("credentials", Status.OK, "the server does not ask for a login")
    try:
        anonymous = request(_anonymous(creds), _experiment_endpoint("Default"), deadline)
    except Exception:
        return Check("credentials", Status.OK, f"{login} is accepted")
    if anonymous.status_code == 401:
        return Check("credentials", Status.OK, f"the server asks for a login; {login} is accepted")
    return Check(
        "credentials", Status.OK, f"the server does not ask for a login ({login} is not needed)"
    )


def _experiment_and_artifacts(
    server: TrackingServer, creds: Any, name: str, response: Any, deadline: Deadline
) -> list[Check]:
    if response.status_code == 404:
        found = Check(
            "experiment",
            Status.OK,
            f"experiment {name!r} does not exist yet; the first run creates it",
        )
        # New experiments take the server's default artifact root, which Default shows.
        endpoint = "/api/2.0/mlflow/experiments/get?experiment_id=" + DEFAULT_EXPERIMENT_ID
        try:
            default = request(creds, endpoint, deadline)
            location = json.loads(default.text)["experiment"]["artifact_location"]
        except Exception as exc:
            return [found, Check("artifacts", Status.WARN, f"not checked: {describe_error(exc)}")]
        return [found, artifact_location(location, f"new experiments (as {name!r} will be)")]
    experiment = json.loads(response.text)["experiment"]
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
