"""The front door of an MLflow Tracking server: one probe, its answer classified.

The tracking resource's first request in a process and ``dagma doctor``'s API check
are the same request: ``GET experiments/get-by-name`` through MLflow's own
``http_request`` with no retries and a short timeout (MLflow's client retries for
minutes on a closed port and has no per-call override). :func:`probe` sends it and
says which of six things happened (:class:`Outcome`); :func:`probe_waiting` tries
again while nothing answers, for a server that is restarting. Each caller words the
outcome for its reader: the resource raises an error class per outcome
(:mod:`dagma.tracking.errors`), doctor prints a check with the fix.

Importing this module imports neither Dagster nor MLflow; MLflow is imported at the
first request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

EXPERIMENT_BY_NAME = "/api/2.0/mlflow/experiments/get-by-name"
# MLflow's HostValidationMiddleware answers 403 with this text (mlflow.server.security_utils).
INVALID_HOST_TEXT = "Invalid Host header"
# MLflow's error code for an experiment name it does not know (a 404 from anything else is
# not MLflow's answer).
MISSING_CODE = "RESOURCE_DOES_NOT_EXIST"
POLL_SECONDS = 2.0  # between tries while waiting for a server that does not answer yet


class Outcome(StrEnum):
    """What the server's front door answered to the experiment lookup."""

    FOUND = "found"  # 200 with MLflow's JSON of the experiment
    MISSING = "missing experiment"  # 404 RESOURCE_DOES_NOT_EXIST: the first run creates it
    HOST_REFUSED = "host refused"  # 403 "Invalid Host header": --allowed-hosts omits the name
    LOGIN_REFUSED = "login refused"  # 401, or 403 for this login
    NOT_MLFLOW = "not MLflow"  # any other status, or a body that is not MLflow's JSON
    NO_ANSWER = "no answer"  # refused, unresolved, timed out, TLS failed: no HTTP answer


@dataclass(frozen=True)
class Answer:
    """One classified answer; the fields a caller needs to word it."""

    outcome: Outcome
    status_code: int | None = None
    text: str = ""  # the start of the body, for messages
    content_type: str = ""  # the answer's Content-Type header, for messages
    experiment: dict[str, Any] | None = None  # FOUND: MLflow's JSON of the experiment
    reason: str = ""  # NO_ANSWER: a few words on why
    retryable: bool = False  # NO_ANSWER: a restarting server gives it (a TLS failure does not)
    # Seconds :func:`probe_waiting` spent trying again; None when the first try was final.
    waited_seconds: float | None = None


def host_creds(uri: str) -> Any:
    """MLflow's host credentials for ``uri``, as its client builds them from its own variables
    (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``, TLS options)."""
    from mlflow.utils.credentials import get_default_host_creds

    return get_default_host_creds(uri)


def request(creds: Any, endpoint: str, timeout: float, method: str = "GET", **kwargs: Any) -> Any:
    """One HTTP request through MLflow's ``http_request``: no retries, ``timeout``, any status."""
    from mlflow.utils.rest_utils import http_request

    return http_request(
        creds,
        endpoint,
        method,
        max_retries=0,
        backoff_factor=0,
        timeout=timeout,
        raise_on_status=False,
        **kwargs,
    )


def classify(response: Any) -> Answer:
    """The outcome of an HTTP answer to the experiment lookup."""
    status, text = response.status_code, response.text
    answer = Answer(Outcome.NOT_MLFLOW, status, text[:200], content_type_of(response))
    if status == 200:
        try:
            experiment = response.json().get("experiment")
        except (ValueError, AttributeError):
            return answer  # not JSON, or not a JSON object
        if not isinstance(experiment, dict) or "experiment_id" not in experiment:
            return answer  # JSON, but not MLflow's answer
        return replace(answer, outcome=Outcome.FOUND, experiment=experiment)
    if status == 404 and MISSING_CODE in text:
        return replace(answer, outcome=Outcome.MISSING)
    if status == 403 and INVALID_HOST_TEXT in text:
        return replace(answer, outcome=Outcome.HOST_REFUSED)
    if status in (401, 403):
        return replace(answer, outcome=Outcome.LOGIN_REFUSED)
    return answer


def content_type_of(response: Any) -> str:
    """The Content-Type an HTTP answer came with ("" when it has none)."""
    return str(response.headers.get("Content-Type") or "")


def came_back(status: int | None, content_type: str, text: str) -> str:
    """What an unexpected answer was, in words: status, content type and the first bytes."""
    kind = f", {content_type}" if content_type else ", no content type"
    start = " ".join(text.split())[:120]
    return f"HTTP {status}{kind}, starting {start!r}" if start else f"HTTP {status}{kind}, empty"


def probe(uri: str, experiment: str, timeout: float, creds: Any = None) -> Answer:
    """Look ``experiment`` up once at the server ``uri``, with ``creds`` (default: MLflow's
    from the environment); never raises for the network or the answer."""
    try:
        response = request(
            host_creds(uri) if creds is None else creds,
            EXPERIMENT_BY_NAME,
            timeout,
            params={"experiment_name": experiment},
        )
    except Exception as error:
        return Answer(
            Outcome.NO_ANSWER,
            reason=describe_failure(error, timeout),
            retryable=waiting_may_help(error),
        )
    return classify(response)


def probe_waiting(
    uri: str,
    experiment: str,
    timeout: float,
    wait_seconds: float,
    on_wait: Callable[[Answer], None] | None = None,
) -> Answer:
    """:func:`probe`, tried again every couple of seconds for up to ``wait_seconds`` while no
    answer comes (a restarting server); an HTTP answer is never tried again.

    ``on_wait`` is called once, with the first unanswered try, when waiting starts.
    """
    started = time.monotonic()
    deadline = started + wait_seconds
    waited = False
    while True:
        answer = probe(uri, experiment, timeout)
        left = deadline - time.monotonic()
        if answer.outcome is not Outcome.NO_ANSWER or not answer.retryable or left <= 0:
            if waited:
                return replace(answer, waited_seconds=time.monotonic() - started)
            return answer
        if not waited and on_wait is not None:
            on_wait(answer)
        waited = True
        time.sleep(min(POLL_SECONDS, left))


def _chain(error: BaseException) -> list[BaseException]:
    """The exception and the ones it wraps, outermost first (at most ten)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def waiting_may_help(error: BaseException) -> bool:
    """Whether a request failed for want of an answer (refused, unresolved, timed out).

    Only these are waited out: a restarting server gives them. A TLS failure is a
    ``ConnectionError`` too, but trying again would not change it.
    """
    import requests

    for current in _chain(error):
        if isinstance(current, requests.exceptions.SSLError):
            return False
        if isinstance(current, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
    return False


def describe_failure(error: BaseException, timeout: float | None = None) -> str:
    """A failed request as a few words, from the exception and the ones it wraps (MLflow,
    requests and gql wrap the cause at length)."""
    import requests

    chain = _chain(error)
    text = " ".join(" ".join(str(e).split()) for e in chain)
    if any(isinstance(e, requests.exceptions.Timeout) for e in chain) or "timed out" in text:
        within = f"within {round(timeout, 1):g} s" if timeout is not None else "in time"
        # requests' ReadTimeout, or urllib3's ReadTimeoutError under MLflow's retry adapter
        read = "ReadTimeout" in text or "Read timed out" in text
        accepted = " (the connection was accepted, then nothing came back)" if read else ""
        return f"no answer {within}{accepted}"
    if "refused" in text or "Errno 111" in text:
        return "connection refused"
    if "resolve" in text or "Name or service not known" in text or "nodename" in text:
        return "the host name does not resolve"
    innermost = " ".join(str(chain[-1]).split())
    return f"{type(chain[-1]).__name__}: {innermost[:200]}"
