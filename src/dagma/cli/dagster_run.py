"""Launch and follow ``train_model_stub`` through a Dagster webserver's GraphQL API.

``dagster_graphql.DagsterGraphQLClient`` does the launch (``submit_job_execution`` of the
implicit asset job) and the polling (``get_run_status``); for what it has no call for —
the workspace's load state and a failed run's errors — the same client runs a query.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlparse

from dagma import example
from dagma.cli.endpoints import webserver_hint

ASSET = example.ASSET
ASSET_JOB = "__ASSET_JOB"  # Dagster's implicit job that materializes a selection of assets
REQUEST_TIMEOUT = 30  # seconds for one GraphQL request
TERMINAL = ("SUCCESS", "FAILURE", "CANCELED")

WORKSPACE_QUERY = """
query DagmaWorkspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } } } }
          ... on PythonError { message causes { message } }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUN_EVENTS_QUERY = """
query DagmaRunEvents($runId: ID!) {
  logsForRun(runId: $runId, limit: 2000) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ErrorEvent { error { message causes { message } } }
        ... on MaterializationEvent {
          metadataEntries {
            label
            ... on TextMetadataEntry { text }
            ... on UrlMetadataEntry { url }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

# How long a launch waits out a code server that is restarting (UNAVAILABLE).
UNREACHABLE_WAIT_SECONDS = 90.0


def root_cause(error: dict) -> str:
    """The innermost message of a GraphQL PythonError: Dagster wraps the user's error."""
    messages = [error.get("message") or ""] + [c["message"] for c in error.get("causes") or []]
    return " ".join(messages[-1].split())


class VerifyError(RuntimeError):
    """A step of ``dagma verify`` failed; the message says what was found and what to do."""

    def __init__(self, check: str, found: str, fix: str = "") -> None:
        super().__init__(found)
        self.check, self.found, self.fix = check, found, fix


@dataclass(frozen=True)
class CodeLocation:
    """A loaded code location (and its repository) that defines the asset."""

    name: str
    repository: str


@dataclass
class RunOutcome:
    """How the launched run ended, and what its events said."""

    run_id: str
    status: str
    errors: list[str] = field(default_factory=list)
    materialization: dict[str, str] = field(default_factory=dict)


def graphql_client(dagster_url: str) -> Any:
    """The official client for the webserver at ``dagster_url`` (scheme, host, port, prefix)."""
    try:
        from dagster_graphql import DagsterGraphQLClient
    except ImportError:
        from dagster import __version__

        raise VerifyError(
            "setup",
            "dagma verify needs Dagster's GraphQL client, which is not installed here",
            f"pip install dagster-graphql=={__version__} (the version of your dagster)",
        ) from None

    parsed = urlparse(dagster_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise VerifyError(
            "webserver",
            f"--dagster-url {dagster_url!r} is not a URL",
            "pass the webserver's base URL, e.g. http://localhost:3000",
        )
    return DagsterGraphQLClient(
        parsed.hostname,
        port_number=parsed.port,
        use_https=parsed.scheme == "https",
        timeout=REQUEST_TIMEOUT,
        path_prefix=parsed.path.rstrip("/"),
    )


def _query(client: Any, dagster_url: str, query: str, variables: dict | None = None) -> dict:
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return client._execute(query, variables)  # the client has no public call for these
    except DagsterGraphQLClientError as exc:
        from dagma.mlflow_server import describe_failure

        raise VerifyError(
            "webserver",
            f"the Dagster webserver at {dagster_url} does not answer: "
            f"{describe_failure(exc.__cause__ or exc)}",
            webserver_hint(dagster_url),
        ) from None


def _entries(client: Any, dagster_url: str) -> list[dict]:
    workspace = _query(client, dagster_url, WORKSPACE_QUERY)["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        raise VerifyError("code-location", f"the workspace failed: {workspace.get('message')}")
    return workspace["locationEntries"]


def _load_failed(entry: dict) -> bool:
    return (entry.get("locationOrLoadError") or {}).get("__typename") == "PythonError"


def _defines_asset(location: dict) -> str | None:
    for repository in location.get("repositories", []):
        if any(node["assetKey"]["path"] == [ASSET] for node in repository["assetNodes"]):
            return repository["name"]
    return None


def _pick(entries: list[dict], wanted: str | None) -> CodeLocation | None:
    """The location to use; None while one is still loading. Raises on a dead end."""
    names = ", ".join(entry["name"] for entry in entries) or "none"
    if wanted is not None:
        entries = [entry for entry in entries if entry["name"] == wanted]
        if not entries:
            raise VerifyError(
                "code-location",
                f"the webserver has no code location {wanted!r} (it has: {names})",
                "pass one of those names to --location",
            )
    found = []
    for entry in entries:
        location = entry.get("locationOrLoadError") or {}
        if location.get("__typename") == "RepositoryLocation":
            repository = _defines_asset(location)
            if repository:
                found.append(CodeLocation(entry["name"], repository))
    if len(found) > 1:
        raise VerifyError(
            "code-location",
            f"{len(found)} code locations define {ASSET}: {', '.join(f.name for f in found)}",
            "choose one with --location",
        )
    if found:
        return found[0]
    if any(entry["loadStatus"] == "LOADING" for entry in entries):
        return None
    failures = [
        f"{entry['name']}: {root_cause(entry['locationOrLoadError'])[:600]}"
        for entry in entries
        if _load_failed(entry)
    ]
    if failures:
        raise VerifyError(
            "code-location",
            "code location failed to load — " + " | ".join(failures),
            "fix the error (the Dagster UI's Deployment page shows it in full), then reload "
            "the location",
        )
    raise VerifyError(
        "code-location",
        f"no loaded code location defines {ASSET} (locations: {names})",
        "deploy the dagma code location (dagma.definitions)",
    )


def find_location(
    client: Any, dagster_url: str, wanted: str | None, wait: float, progress: TextIO
) -> CodeLocation:
    """The loaded location that defines the asset, waiting up to ``wait`` s while one loads."""
    deadline = time.monotonic() + wait
    announced = False
    reloaded = False
    while True:
        entries = _entries(client, dagster_url)
        failed = [entry["name"] for entry in entries if _load_failed(entry)]
        if failed and not reloaded:
            # As the UI's Reload button: the webserver keeps a load error until asked again,
            # e.g. one from while a redeployed code server was still starting.
            reloaded = True
            for name in failed:
                progress.write(f"  reloading code location {name} (its last load failed)...\n")
                with contextlib.suppress(Exception):
                    client.reload_repository_location(name)
            continue
        picked = _pick(entries, wanted)
        if picked is not None:
            return picked
        if time.monotonic() > deadline:
            raise VerifyError(
                "code-location",
                f"the code location was still loading after {wait:.0f} s",
                "look at the code location's logs (kubectl logs deploy/dagma-user-code)",
            )
        if not announced:
            progress.write("  waiting for the code location to load...\n")
            announced = True
        time.sleep(1)


def launch(
    client: Any, dagster_url: str, location: CodeLocation, wait: float = UNREACHABLE_WAIT_SECONDS
) -> str:
    """Submit the asset's materialization as the UI's Materialize button does; its run id.

    A code server that is restarting (a redeploy) answers UNAVAILABLE for a few seconds:
    that is retried for up to ``wait`` s; any other refusal is reported at once.
    """
    from dagster import AssetKey
    from dagster_graphql import DagsterGraphQLClientError

    deadline = time.monotonic() + wait
    while True:
        try:
            return client.submit_job_execution(
                ASSET_JOB,
                repository_location_name=location.name,
                repository_name=location.repository,
                asset_selection=[AssetKey(ASSET)],
            )
        except DagsterGraphQLClientError as exc:
            if "connecting to url" in str(exc):
                _query(client, dagster_url, "{ version }")  # raises the webserver message
            if "DagsterUserCodeUnreachableError" in str(exc) and time.monotonic() < deadline:
                time.sleep(2)
                continue
            raise VerifyError(
                "launch", f"the webserver refused to launch {ASSET}: {' '.join(str(exc).split())}"
            ) from None


def follow(
    client: Any,
    dagster_url: str,
    run_id: str,
    timeout: float,
    progress: TextIO = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
) -> RunOutcome:
    """Poll the run's status (one line per change) until it ends or ``timeout`` passes."""
    start = clock()
    last = None
    while True:
        status = _run_status(client, dagster_url, run_id)
        if status != last:
            progress.write(f"  {clock() - start:5.1f} s  run {run_id[:8]} {status}\n")
            progress.flush()
            last = status
        if status in TERMINAL:
            break
        if clock() - start > timeout:
            raise VerifyError(
                "run",
                f"run {run_id} is still {status} after {timeout:.0f} s",
                f"watch it at {dagster_url}/runs/{run_id} (a QUEUED run waits for the "
                "daemon; a STARTING run for its pod)",
            )
        time.sleep(1)
    return _outcome(client, dagster_url, run_id, status)


def _run_status(client: Any, dagster_url: str, run_id: str) -> str:
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return client.get_run_status(run_id).value
    except DagsterGraphQLClientError:
        _query(client, dagster_url, "{ version }")  # raises the webserver message if it is gone
        raise


def _outcome(client: Any, dagster_url: str, run_id: str, status: str) -> RunOutcome:
    logs = _query(client, dagster_url, RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"]
    outcome = RunOutcome(run_id, status)
    for event in logs.get("events", []):
        error = root_cause(event["error"]) if event.get("error") else None
        if event["__typename"] == "ExecutionStepFailureEvent" and error:
            outcome.errors.insert(0, f"step {event.get('stepKey')}: {error.strip()}")
        elif error:
            outcome.errors.append(error.strip())
        elif event["__typename"] == "RunFailureEvent":
            outcome.errors.append(event["message"])
        for entry in event.get("metadataEntries") or []:
            value = entry.get("text") or entry.get("url")
            if value is not None:
                outcome.materialization[entry["label"]] = value
    outcome.errors = list(dict.fromkeys(outcome.errors))  # the run failure repeats the step's
    return outcome
