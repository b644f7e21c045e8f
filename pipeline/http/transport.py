"""Socket reads that a deadline and a stop flag can interrupt.

Requests' own read timeout restarts on every byte, and Python resumes a blocking ``recv`` after a signal
(PEP 475), so a trickling or silent source could hold a request, and SIGTERM, for as long as it likes.
:func:`watched_session` returns a requests Session whose replies are read through
:class:`_WatchedSocketReader`: each ``recv`` blocks for a short slice at most, and between slices it
checks the attempt's :class:`Watch` (its deadline, the longest silence allowed, the stop flag). The
client opens :func:`watching` around one attempt so that the response urllib3 creates for it picks the
watch up.
"""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

import requests
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["READ_CHUNK", "WAIT_SLICE", "Abort", "Watch", "watched_session", "watching"]

# The longest blocking wait between two checks of the stop flag and the deadline: SIGTERM is noticed
# this fast even while a source sends nothing.
WAIT_SLICE: Final = 0.25
# Body pieces: small enough that the size cap is checked often, big enough to cost nothing.
READ_CHUNK: Final = 64 * 1024


class Abort(Exception):
    """Raised from inside urllib3 to end an attempt: `reason` is "deadline" or "stop".

    Deliberately not an OSError, so that neither urllib3 nor requests wraps or retries it.
    """

    def __init__(self, reason: Literal["deadline", "stop"]) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Watch:
    """The limits of one attempt, seen by every socket read made for it."""

    deadline: float  # time.monotonic() by which the whole reply must be in
    idle_timeout: float  # the longest silence allowed between two reads (HTTP_TIMEOUT_SECONDS)
    stopping: Callable[[], bool]

    def check(self) -> None:
        """Raise Abort if the process is stopping or the deadline has passed."""
        if self.stopping():
            raise Abort("stop")
        if time.monotonic() >= self.deadline:
            raise Abort("deadline")

    def slice_timeout(self, silent_until: float) -> float:
        """How long the next `recv` may block: a slice, never past the deadline or the silence allowed."""
        now = time.monotonic()
        return max(min(WAIT_SLICE, silent_until - now, self.deadline - now), 0.001)


# The attempt under way in this thread; a response picks it up when urllib3 creates it.
_WATCH: ContextVar[Watch | None] = ContextVar("pipeline_http_watch", default=None)


@contextmanager
def watching(watch: Watch) -> Iterator[None]:
    """Make `watch` the limits of every reply read in this thread inside the block."""
    token = _WATCH.set(watch)
    try:
        yield
    finally:
        _WATCH.reset(token)


class _WatchedSocketReader(io.RawIOBase):
    """The raw stream under http.client's buffered reader: every `recv` blocks for one slice at most.

    A `recv` that times out is simply tried again (on a TLS socket too: OpenSSL keeps a partial record
    and reads on), after checking the stop flag, the deadline and how long the source has been silent.
    """

    def __init__(self, raw: io.RawIOBase, sock: Any, watch: Watch) -> None:
        super().__init__()
        self._raw = raw  # the socket's own file object, kept for closing (it counts the socket's users)
        self._sock = sock
        self._watch = watch

    def readable(self) -> bool:
        """Always: this is a response body."""
        return True

    def fileno(self) -> int:
        """The socket's descriptor (http.client exposes it)."""
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int:
        """Read what the socket has, once it has something, within the attempt's limits."""
        silent_until = time.monotonic() + self._watch.idle_timeout
        while True:
            self._watch.check()
            if time.monotonic() >= silent_until:
                # A plain socket timeout: urllib3 reports it as a ReadTimeout, retried like before.
                raise TimeoutError("timed out")
            self._sock.settimeout(self._watch.slice_timeout(silent_until))
            try:
                received: int = self._sock.recv_into(buffer)
                return received
            except TimeoutError:
                continue  # nothing in this slice

    def close(self) -> None:
        """Close the socket's file object (the connection owns the socket itself)."""
        if not self.closed:
            self._raw.close()
        super().close()


class _WatchedHTTPResponse(http.client.HTTPResponse):
    """http.client's response, reading its socket through _WatchedSocketReader during our attempts."""

    def __init__(
        self, sock: Any, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        watch = _WATCH.get()
        if watch is not None:
            # Nothing has been read yet, so the buffer being replaced is empty.
            self.fp = io.BufferedReader(_WatchedSocketReader(self.fp.detach(), sock, watch), READ_CHUNK)


class _WatchedHTTPConnection(HTTPConnection):
    response_class = _WatchedHTTPResponse


class _WatchedHTTPSConnection(HTTPSConnection):
    response_class = _WatchedHTTPResponse


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: Final = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connection pools whose replies are read through _WatchedSocketReader."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The standard pool manager, building our pool classes (the hook requests documents)."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.PoolManager:
        """HTTP(S) proxies get our pools too (SOCKS managers have their own pool classes)."""
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


def watched_session() -> requests.Session:
    """A requests Session whose HTTP(S) replies are read through _WatchedSocketReader."""
    session = requests.Session()
    session.mount("http://", _WatchedAdapter())
    session.mount("https://", _WatchedAdapter())
    return session
