"""A tiny HTTP server on 127.0.0.1, for proving that containers and the browser reach loopback."""

from __future__ import annotations

import functools
import http.server
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoopbackPage:
    """A page served on 127.0.0.1: its URL and the unique text in its heading."""

    url: str
    text: str


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Serve without logging each request to stderr."""


@contextmanager
def serve_page(directory: Path) -> Iterator[LoopbackPage]:
    """Write an HTML page with a unique text into ``directory`` and serve it from a thread."""
    text = f"dagma harness {uuid.uuid4().hex}"
    (directory / "index.html").write_text(
        f"<!doctype html><title>harness</title><h1 id='greeting'>{text}</h1>"
    )
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LoopbackPage(f"http://127.0.0.1:{server.server_address[1]}/index.html", text)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
