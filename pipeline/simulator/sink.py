"""A local webhook sink: receives alert webhooks (generic JSON or Slack-style) and shows what arrived.

`up --demo` starts one so a newcomer sees alerts delivered without any outside service, and the tests use
it as the real receiver on 127.0.0.1. `POST` to any path records the body; `GET /received` returns every
recorded message as JSON (newest last). It can be told to fail (`fail(status, times)`) to show retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1024 * 1024


@dataclass
class Received:
    """One message the sink accepted."""

    path: str
    body: Any
    at: str


@dataclass
class _State:
    received: list[Received] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # status codes to answer with, in order
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


class WebhookSink:
    """The sink as a server in a background thread; use as a context manager or `start()`/`stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._state = _State()
        self._server = ThreadingHTTPServer((host, port), _handler(self._state))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-sink", daemon=True)

    @property
    def url(self) -> str:
        """Base URL; any path under it is a webhook (for example `/webhook` and `/slack`)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> WebhookSink:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookSink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def received(self, path: str | None = None) -> list[Received]:
        """What arrived so far (on one path, or all)."""
        with self._state.lock:
            return [r for r in self._state.received if path is None or r.path == path]

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` posts with `status` (and record nothing for them)."""
        with self._state.lock:
            self._state.failures.extend([status] * times)

    def wait_for(self, count: int, timeout: float, path: str | None = None) -> list[Received]:
        """Block until at least `count` messages arrived (on `path`), or the timeout; returns them."""
        with self._state.changed:
            self._state.changed.wait_for(
                lambda: sum(1 for r in self._state.received if path is None or r.path == path) >= count,
                timeout=timeout,
            )
        return self.received(path)


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server protocol
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
            raw = self.rfile.read(length)
            with state.changed:
                if state.failures:
                    status = state.failures.pop(0)
                    self._answer(status, b"failing on purpose")
                    return
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                at = datetime.now(UTC).isoformat(timespec="seconds")
                state.received.append(Received(self.path, body, at))
                state.changed.notify_all()
            self._answer(200, b"ok")

        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            if self.path.rstrip("/") != "/received":
                self._answer(404, b"not found")
                return
            with state.lock:
                items = [r.__dict__ for r in state.received]
            self._answer(200, json.dumps(items).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            """Quiet: the sink is a test and demo fixture."""

    return Handler


@contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    """A running sink on a free loopback port."""
    with WebhookSink() as sink:
        yield sink
