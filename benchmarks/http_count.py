"""Count the HTTP requests a piece of code makes to one server, by endpoint.

Counted where every MLflow client request passes (``requests.Session.send``);
the requests still go to the real server, nothing is answered on its behalf.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

# Artifact paths name a run and a file; one endpoint is enough for counting.
_ARTIFACT = re.compile(r"^(/api/2\.0/mlflow-artifacts/artifacts)/.*$")


def endpoint(method: str, path: str) -> str:
    """``"POST runs/create"``-style name for a request."""
    path = _ARTIFACT.sub(r"\1/<path>", path.split("?", 1)[0])
    return f"{method} {path.removeprefix('/api/2.0/mlflow/').removeprefix('/api/2.0/')}"


@contextmanager
def counting_requests(base_url: str) -> Iterator[Counter[str]]:
    """Yield a counter that fills with the requests sent to ``base_url`` while inside."""
    import requests

    counts: Counter[str] = Counter()
    original = requests.Session.send

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if request.url.startswith(base_url):
            counts[endpoint(request.method, request.path_url)] += 1
        return original(self, request, **kwargs)

    requests.Session.send = send  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        requests.Session.send = original  # type: ignore[method-assign]
