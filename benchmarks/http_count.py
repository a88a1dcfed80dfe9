"""Count the HTTP requests made to one server, by endpoint.

In this process, where every MLflow client request passes (``requests.Session.send``:
:func:`counting_requests`); across processes, in a recording proxy in front of the server
(:func:`recording_proxy`). Either way the requests go to the real server, and nothing is
answered on its behalf.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass
class RecordingProxy:
    """A proxy in front of a server: ``url`` for clients, ``counts`` of what passed through."""

    url: str
    counts: Counter[str]


@contextmanager
def recording_proxy(target: str) -> Iterator[RecordingProxy]:
    """Forward every request on 127.0.0.1 to ``target`` and count it by endpoint, from any
    process (the daemon, a run worker, step subprocesses). When ``target`` does not answer,
    the client's connection is closed with no answer, as the server's own would be."""
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import urlsplit

    upstream = urlsplit(target)
    counts: Counter[str] = Counter()

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            counts[endpoint(self.command, self.path)] += 1
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                payload = answer.read()
            except OSError:
                self.close_connection = True  # no answer, like a server that is down
                return
            finally:
                connection.close()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RecordingProxy(f"http://127.0.0.1:{server.server_address[1]}", counts)
    finally:
        server.shutdown()
        server.server_close()
