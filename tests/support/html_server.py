"""An HTTP server on 127.0.0.1 that answers every GET with a web page: not MLflow.

What a proxy's page, another app, or the MLflow UI's address (``/#/experiments/0``, which
sends API requests to the UI's page) gives a client that expects MLflow's JSON.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"<!doctype html><html><head><title>Not MLflow</title></head><body>hello</body></html>"
CONTENT_TYPE = "text/html; charset=utf-8"


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet test output


@contextlib.contextmanager
def html_server() -> Iterator[int]:
    """Serve :data:`PAGE` with HTTP 200 to every GET on a free loopback port; yield the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
