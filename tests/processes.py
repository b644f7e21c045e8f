"""Helpers for tests that start the real processes (scheduler, dashboard) as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**settings: object) -> dict[str, str]:
    """The environment of a child process: this one's, plus settings (as environment variables)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BLOCKCHAIR_", "COINGECKO_"))
    }
    env.update({key: str(value) for key, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_scheduler(log_path: Path, **settings: object) -> subprocess.Popen:
    """`python run_ingestor.py` (the scheduler loop) with the given settings, logging to a file."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ingestor.py"), "--log-level", "INFO"],
        cwd=log_path.parent,
        env=process_env(**settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a process and wait for it; kill it if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise
    return process.returncode


def wait_for(
    condition: Callable[[], object], timeout: float, interval: float = 0.25, what: str = "condition"
) -> object:
    """Poll until `condition()` is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f}s waiting for {what}"
    raise AssertionError(msg)
