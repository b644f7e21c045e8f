"""Database outages on demand: a TCP proxy in front of PostgreSQL, and a foreign SQLite write lock.

`PgProxy` forwards a loopback port to the PostgreSQL server. `cut()` is an outage as a client sees one:
new connections are refused (nothing listens on the port) and every open session is terminated (its
socket is shut down under it). `restore()` listens on the same port again. Other tests keep using the
server directly, so an outage here never disturbs them.

`SqliteLock` is another process holding a SQLite database's write lock for a while, as a backup tool,
a `sqlite3` shell left in a transaction, or a second scheduler would.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path

_CHUNK = 65536


class PgProxy:
    """Forward 127.0.0.1:<port> to the target; cut and restore the path on demand."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.cuts = 0

    def __enter__(self) -> PgProxy:
        self.restore()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()

    @property
    def up(self) -> bool:
        """Whether the proxy is listening."""
        return self._listener is not None

    def restore(self) -> None:
        """Listen again (on the same port after the first start)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and terminate the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self.cuts += 1

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    client.close()
                    upstream.close()
                    return
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(_CHUNK):
            dst.sendall(data)
    except OSError:
        pass
    with suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


class SqliteLock:
    """A separate process holding the database's write lock for `seconds`."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCKER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        # Wait until the lock is really held (it may queue behind the scheduler's own short write).
        if self.process.stdout.readline().strip() != "locked":
            msg = f"the locking process failed (exit {self.process.wait()})"
            raise RuntimeError(msg)

    def wait(self) -> None:
        """Until the lock is released."""
        self.process.wait(timeout=300)
