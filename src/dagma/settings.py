"""The one place that turns the environment into typed, validated settings.

Nothing else in dagma parses ``MLFLOW_*`` or ``DAGSTER_*`` variables: the code
location calls :func:`load_settings` once and passes the result on. Bad values
fail here, at load time, with a message that names the variable and the fix,
instead of a stack trace in the middle of a run.

What else touches the environment, and why:

- MLflow's own client reads its variables (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/
  ``TOKEN``, ``MLFLOW_HTTP_REQUEST_*``, TLS options) at every request; dagma hands
  it the URI and never parses those itself, except the ``MLFLOW_HTTP_REQUEST_*``
  bounds below, which it also checks.
- :func:`mlflow_client_variables` *writes* MLflow's variables for a block (MLflow has
  no per-client or per-call setting for them) and restores them afterwards.
- ``dagma.dev`` passes the environment on to the processes it starts.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict

from dagma import local_store

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
DEFAULT_TRACKING_URI = "http://mlflow:5000"  # the in-cluster Service of charts/mlflow
DEFAULT_EXPERIMENT = "Default"
DEFAULT_URI_SOURCE = "the default, as MLFLOW_TRACKING_URI is unset"
SERVER_SCHEMES = ("http", "https")
ACCEPTED_URI_FORMS = (
    f"a server ({DEFAULT_TRACKING_URI} in the cluster, http://127.0.0.1:5000 locally), "
    "a SQLite database (sqlite:////ABSOLUTE/PATH/mlflow.db: four slashes before an absolute "
    "path) or a file store (file:///ABSOLUTE/PATH/mlruns)"
)


# How long MLflow's client keeps retrying a server that does not answer. MLflow's own defaults
# (7 retries, backoff factor 2, 120 s per request) make a run whose server died wait about 8
# minutes to fail; these are charts/dagma's (tracking.http.*): 0 + 4 + 8 + 16 + 32 s of backoff
# per request rides out a restarted server and fails a dead one in about 2 minutes.
# (variable, default, smallest, largest: MLflow's own limits for the retries and the factor)
HTTP_REQUEST_LIMITS = {
    "max_retries": ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 5, 0, 10),
    "backoff_factor": ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2, 0, 120),
    "timeout_seconds": ("MLFLOW_HTTP_REQUEST_TIMEOUT", 60, 1, None),
}
# How long a run's first request waits for a server that does not answer yet (connection
# refused or no answer; HTTP answers are never waited out). 0 locally: a wrong URI under
# `dagster dev` fails in seconds. charts/dagma sets 60 (tracking.http.serverWaitSeconds): a run
# that starts while the MLflow pod restarts (11-16 s) waits for it instead of failing at once.
SERVER_WAIT_VARIABLE = "MLFLOW_SERVER_WAIT_SECONDS"
SERVER_WAIT_LIMITS = (0, 3600)  # smallest, largest


class SettingsError(ValueError):
    """A variable in the environment has a value dagma cannot use."""


class HttpRequestSettings(BaseModel):
    """MLflow's client retries and timeout: the user's ``MLFLOW_HTTP_REQUEST_*``, else dagma's."""

    model_config = ConfigDict(frozen=True)

    max_retries: int = HTTP_REQUEST_LIMITS["max_retries"][1]
    backoff_factor: int = HTTP_REQUEST_LIMITS["backoff_factor"][1]
    timeout_seconds: int = HTTP_REQUEST_LIMITS["timeout_seconds"][1]

    def as_env(self) -> dict[str, str]:
        """The variables MLflow's client reads at every request, with these values."""
        return {
            variable: str(getattr(self, field))
            for field, (variable, *_) in HTTP_REQUEST_LIMITS.items()
        }


class TrackingSettings(BaseModel):
    """Where and whether assets record their runs in MLflow."""

    model_config = ConfigDict(frozen=True)

    tracking_enabled: bool = False
    tracking_uri: str = DEFAULT_TRACKING_URI
    # Which variable the URI came from, so errors can point at it.
    tracking_uri_source: str = DEFAULT_URI_SOURCE
    experiment: str = DEFAULT_EXPERIMENT
    # Base URL people open the MLflow UI at (e.g. a port-forward); links use it. None for a
    # local store without MLFLOW_UI_URL: there is no server to link to.
    mlflow_ui_url: str | None = DEFAULT_TRACKING_URI
    # Base URL of the Dagster UI, for a link from the MLflow run back to the Dagster run.
    dagster_ui_url: str | None = None
    # MLFLOW_ALLOW_FILE_STORE: MLflow 3 refuses a file:// store without this opt-in.
    allow_file_store: bool = False
    # MLflow's client retries: bounded unless the user set MLFLOW_HTTP_REQUEST_* themselves.
    http: HttpRequestSettings = HttpRequestSettings()
    # MLFLOW_SERVER_WAIT_SECONDS: how long the first request waits for a server not up yet.
    server_wait_seconds: int = 0
    # MLFLOW_PARENT_RUNS: one MLflow parent run per Dagster run, each step's runs nested under
    # it (default); false gives one flat run per materialization.
    parent_runs: bool = True

    @property
    def local_store(self) -> bool:
        """Whether the URI names a store on this machine's disk rather than a server."""
        return local_store.is_local_store(self.tracking_uri)


def _parse_switch(raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS or value == "":
        return False
    raise SettingsError(
        f"MLFLOW_USE_TRACKING={raw!r} is not a recognised value. Use one of "
        f"{'/'.join(TRUE_WORDS)} to record runs in MLflow, or one of {'/'.join(FALSE_WORDS)} "
        "(or leave it unset) to use the stub that needs no server."
    )


def _parse_parent_runs(raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in TRUE_WORDS or value == "":
        return True
    if value in FALSE_WORDS:
        return False
    raise SettingsError(
        f"MLFLOW_PARENT_RUNS={raw!r} is not a recognised value. Use one of "
        f"{'/'.join(TRUE_WORDS)} (or leave it unset) for one MLflow parent run per Dagster run "
        f"with the steps' runs nested under it, or one of {'/'.join(FALSE_WORDS)} for one flat "
        "run per materialization."
    )


def _parse_allow_file_store(raw: str | None) -> bool:
    # Exactly the words MLflow itself accepts for this variable, which it reads too.
    value = (raw or "").lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise SettingsError(
        f"MLFLOW_ALLOW_FILE_STORE={raw!r} is not a value MLflow accepts: use true or 1 to "
        "allow the file:// store, false or 0 (or leave it unset) otherwise."
    )


def _check_url(variable: str, raw: str) -> str:
    """A server base URL (http/https with a host), for the UI links."""
    url = raw.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in SERVER_SCHEMES or not parsed.netloc:
        raise SettingsError(
            f"{variable}={raw!r} is not a URL the UI can be opened at: it needs an "
            f"{' or '.join(SERVER_SCHEMES)} scheme and a host, "
            f"e.g. {DEFAULT_TRACKING_URI} in the cluster or http://127.0.0.1:5000 locally."
        )
    _refuse_query_and_fragment(variable, raw)  # links append their own #/experiments/...
    return url


def _refuse_query_and_fragment(variable: str, raw: str) -> None:
    """A server URL is a base: MLflow's client appends /api/2.0/... to it, after a ``#...``
    (what the UI's address bar shows) or a ``?...`` the request goes to the UI's page instead."""
    parsed = urlparse(raw.strip())
    parts = [("fragment", "#" + parsed.fragment)] if parsed.fragment else []
    if parsed.query:
        parts.insert(0, ("query", "?" + parsed.query))
    if not parts:
        return
    fixed = parsed._replace(query="", fragment="").geturl().rstrip("/")
    drop = " and the ".join(f"{part} {text!r}" for part, text in parts)
    raise SettingsError(
        f"{variable}={raw!r} has a {drop}: it looks like an address copied from the "
        "MLflow UI's address bar, and API requests would reach the UI's page instead of the "
        f"server. Drop the {' and '.join(part for part, _ in parts)}: {variable}={fixed}"
    )


def _check_tracking_uri(variable: str, raw: str) -> str:
    """A server URL or an absolute local store; anything MLflow cannot use is refused here."""
    uri = raw.strip()
    parsed = urlparse(uri)
    if parsed.scheme in SERVER_SCHEMES and parsed.netloc:
        _refuse_query_and_fragment(variable, raw)
        return uri.rstrip("/")
    refused = f"{variable}={raw!r} is not an MLflow tracking URI dagma can use"
    if parsed.scheme not in local_store.SCHEMES:
        raise SettingsError(f"{refused}. Use {ACCEPTED_URI_FORMS}.")
    problem = local_store.uri_problem(uri, alternatives=ACCEPTED_URI_FORMS)
    if problem is not None:
        raise SettingsError(f"{refused}: {problem}")
    return uri


def _whole_number(
    env: Mapping[str, str], variable: str, default: int, limits: tuple[int, int | None],
    unit: str = "", unset: str = "",
) -> int:  # fmt: skip
    """A whole number from ``variable`` within ``limits`` (no upper one: None), else ``default``."""
    raw = env.get(variable, "").strip()
    if not raw:
        return default
    smallest, largest = limits
    value = int(raw) if raw.isascii() and raw.isdigit() else None  # MLflow reads them with int()
    if value is None or value < smallest or (largest is not None and value > largest):
        bound = f"of at least {smallest}" if largest is None else f"from {smallest} to {largest}"
        raise SettingsError(
            f"{variable}={raw!r} is not a value dagma can use: set a whole number{unit} "
            f"{bound}, or leave it unset ({unset or f'default {default}'})."
        )
    return value


def _http_request(env: Mapping[str, str]) -> HttpRequestSettings:
    return HttpRequestSettings(**{
        field: _whole_number(env, variable, default, (smallest, largest))
        for field, (variable, default, smallest, largest) in HTTP_REQUEST_LIMITS.items()
    })  # fmt: skip


def _server_wait(env: Mapping[str, str]) -> int:
    return _whole_number(
        env, SERVER_WAIT_VARIABLE, 0, SERVER_WAIT_LIMITS, unit=" of seconds",
        unset="0: fail at once when the MLflow server does not answer",
    )  # fmt: skip


def _experiment(env: Mapping[str, str]) -> str:
    ours = env.get("MLFLOW_EXPERIMENT", "").strip()
    mlflows = env.get("MLFLOW_EXPERIMENT_NAME", "").strip()
    if ours and mlflows and ours != mlflows:
        raise SettingsError(
            f"MLFLOW_EXPERIMENT={ours!r} and MLFLOW_EXPERIMENT_NAME={mlflows!r} disagree. "
            "Set only one of them (MLFLOW_EXPERIMENT is dagma's; MLFLOW_EXPERIMENT_NAME is "
            "MLflow's own and is accepted too)."
        )
    return ours or mlflows or DEFAULT_EXPERIMENT


def load_settings(env: Mapping[str, str] | None = None) -> TrackingSettings:
    """Read tracking settings from ``env`` (default: the process environment).

    Raises :class:`SettingsError` naming the variable, its value and the fix.
    """
    env = os.environ if env is None else env
    raw_uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    uri_source = "MLFLOW_TRACKING_URI" if raw_uri else DEFAULT_URI_SOURCE
    tracking_uri = _check_tracking_uri("MLFLOW_TRACKING_URI", raw_uri or DEFAULT_TRACKING_URI)
    tracking_enabled = _parse_switch(env.get("MLFLOW_USE_TRACKING"))
    allow_file_store = _parse_allow_file_store(env.get("MLFLOW_ALLOW_FILE_STORE"))
    if tracking_enabled and local_store.is_local_store(tracking_uri):
        problem = local_store.setup_problem(tracking_uri, "MLFLOW_TRACKING_URI", allow_file_store)
        if problem is not None:
            raise SettingsError(problem)
    ui_url = env.get("MLFLOW_UI_URL", "").strip()
    default_ui_url = None if local_store.is_local_store(tracking_uri) else tracking_uri
    dagster_ui_url = env.get("DAGSTER_UI_URL", "").strip()
    return TrackingSettings(
        tracking_enabled=tracking_enabled,
        tracking_uri=tracking_uri,
        tracking_uri_source=uri_source,
        experiment=_experiment(env),
        mlflow_ui_url=_check_url("MLFLOW_UI_URL", ui_url) if ui_url else default_ui_url,
        dagster_ui_url=_check_url("DAGSTER_UI_URL", dagster_ui_url) if dagster_ui_url else None,
        allow_file_store=allow_file_store,
        http=_http_request(env),
        server_wait_seconds=_server_wait(env),
        parent_runs=_parse_parent_runs(env.get("MLFLOW_PARENT_RUNS")),
    )


# Every variable dagma reads (above), for spotting misspelt ones in the environment.
KNOWN_VARIABLES = (
    "MLFLOW_USE_TRACKING", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT", "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_UI_URL", "DAGSTER_UI_URL", "MLFLOW_ALLOW_FILE_STORE", SERVER_WAIT_VARIABLE,
    "MLFLOW_PARENT_RUNS",
    *(variable for variable, *_ in HTTP_REQUEST_LIMITS.values()),
)  # fmt: skip
# Read by MLflow's client or by Dagster themselves, or by the Makefile: right as they are, even
# where they look like one of dagma's (MLFLOW_TRACKING_TOKEN is close to MLFLOW_TRACKING_URI).
OTHERS = (
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_PORT", "DAGSTER_PORT", "DAGSTER_HOME",
)  # fmt: skip
NEAR_MISS_CUTOFF = 0.85  # MLFLOW_EXPERIMENT_ID ~ MLFLOW_EXPERIMENT is 0.92


def near_misses(env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(name set, variable dagma reads)`` for each MLFLOW_*/DAGSTER_* name in ``env``
    (default: the process environment) that is not one dagma reads but is spelt almost like
    one: ``MLFLOW_USE_TRACKNG``, ``MLFLOW_TRACKING_URL``, ``mlflow_use_tracking``, ..."""
    env = os.environ if env is None else env
    found = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(("MLFLOW_", "DAGSTER_")) or name in KNOWN_VARIABLES + OTHERS:
            continue
        # Closest among MLflow's names too: MLFLOW_TRACKING_USERNAM is theirs misspelt, not ours.
        close = difflib.get_close_matches(upper, KNOWN_VARIABLES + OTHERS, 1, NEAR_MISS_CUTOFF)
        if close and close[0] in KNOWN_VARIABLES:
            found.append((name, close[0]))
    return found


@contextmanager
def mlflow_client_variables(values: Mapping[str, str], replace: bool = False) -> Iterator[None]:
    """MLflow's own variables set to ``values`` for the block, then restored.

    MLflow's client reads them from the environment at every request and has no
    per-client or per-call setting. ``replace=False`` fills in only the unset ones, so
    a user's own setting wins; ``replace=True`` sets them all.
    """
    names = [name for name in values if replace or name not in os.environ]
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: values[name] for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
