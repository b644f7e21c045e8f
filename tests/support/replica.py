"""A real PostgreSQL primary with a streaming replica, made for a test and removed after it.

The pair is its own pair of clusters in a temporary directory (initdb, then `pg_basebackup -R` from it),
so the machine's PostgreSQL server and its `pg_hba.conf` are left alone: the replica replicates from a
primary the test owns. PostgreSQL refuses to run as root, so the clusters run as the `postgres` user when
the tests run as root. Start to finish takes about two seconds.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_basebackup"))
    return found[-1].parent if found else None


def available() -> str | None:
    """None when a replica pair can be made here, else why not."""
    if _bin_dir() is None:
        return "PostgreSQL's server binaries (initdb, pg_basebackup) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class ReplicaPair:
    """URLs of the primary and of its hot standby (database `postgres`, trust auth on 127.0.0.1)."""

    primary_url: str
    replica_url: str

    def wait_for_replay(self, timeout: float = 20) -> None:
        """Block until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary_url, autocommit=True) as p:
            target = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.replica_url, autocommit=True) as r:
            while time.monotonic() < deadline:
                done = r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()
                if done and done[0]:
                    return
                time.sleep(0.05)
        msg = f"the replica did not replay up to {target} within {timeout} s"
        raise TimeoutError(msg)


@contextmanager
def replica_pair() -> Iterator[ReplicaPair]:
    """Make a primary and a streaming replica, yield their URLs, then stop and remove both."""
    bin_dir = _bin_dir()
    assert bin_dir is not None, available()
    root = Path(tempfile.mkdtemp(prefix="pg-replica-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=60)

    primary, replica = root / "primary", root / "replica"
    ports = _free_port(), _free_port()
    common = f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
    started: list[Path] = []
    try:
        run(str(bin_dir / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres", "--no-sync")
        with (primary / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        run(str(bin_dir / "pg_ctl"), "-D", str(primary), "-w", "-l", str(root / "primary.log"),
            "-o", f"-p {ports[0]} {common} -c wal_level=replica", "start")  # fmt: skip
        started.append(primary)
        run(str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(ports[0]), "-U", "postgres",
            "-D", str(replica), "-R", "-X", "stream", "--no-sync")  # fmt: skip
        run(str(bin_dir / "pg_ctl"), "-D", str(replica), "-w", "-l", str(root / "replica.log"),
            "-o", f"-p {ports[1]} {common} -c hot_standby=on", "start")  # fmt: skip
        started.append(replica)
        yield ReplicaPair(
            primary_url=f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres",
            replica_url=f"postgresql://postgres@127.0.0.1:{ports[1]}/postgres",
        )
    finally:
        for cluster in reversed(started):
            subprocess.run(
                [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(cluster), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)
