"""The product's processes as a user starts them: the scheduler, the CLI, each with its own settings.

Settings reach a child process as environment variables. The parent's own database and source settings
(and any HTTP_/UNIT_ tuning in the developer's shell) are not inherited, so a child sees only what it
is given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from pipeline.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
INHERITED_NOT = ("DATABASE_URL", "BLOCKCHAIR_", "COINGECKO_", "HTTP_", "UNIT_")
T = TypeVar("T")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(**settings: object) -> dict[str, str]:
    """The environment of a child process: this one's, plus settings (as environment variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_NOT)}
    env.update({key: str(value) for key, value in settings.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


def scheduler_settings(database_url: str, sim: Simulator, **overrides: object) -> dict[str, object]:
    """Settings of a scheduler process against the simulator: no client-side pacing, two quick attempts.

    The block every scheduler scenario starts from; each passes its own schedule, coins and depths.
    """
    settings: dict[str, object] = {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 60_000,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 60_000,
        "HTTP_MAX_ATTEMPTS": 2,
        "HTTP_BACKOFF_BASE_SECONDS": 0.05,
        "HTTP_TIMEOUT_SECONDS": 5,
    }
    settings.update(overrides)
    return settings


def start_scheduler(log_path: Path, level: str = "INFO", **settings: object) -> subprocess.Popen:
    """`python run_ingestor.py` (the scheduler loop) with the given settings, logging to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "run_ingestor.py"), "--log-level", level],
            cwd=log_path.parent,
            env=process_env(**settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def watch_command(level: str = "INFO") -> list[str]:
    """The argument list of a `crypto-pipeline watch` process (the watcher: incident rules and alerts)."""
    return [sys.executable, "-m", "pipeline.runtime.cli", "--log-level", level, "watch"]


def start_watcher(log_path: Path, level: str = "INFO", **settings: object) -> subprocess.Popen:
    """`crypto-pipeline watch` (a watcher process) with the given settings, logging to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            watch_command(level),
            cwd=log_path.parent,
            env=process_env(**settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def run_cli(args: Iterable[str], timeout: float = 60, **settings: object) -> subprocess.CompletedProcess:
    """`python -m pipeline.runtime.cli ...` in a subprocess with the given settings as its environment."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.runtime.cli", *args],
        cwd=ROOT,
        env=process_env(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
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
    condition: Callable[[], T], timeout: float, interval: float = 0.25, what: str = "condition"
) -> T:
    """Poll until `condition()` is truthy and return its value; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f}s waiting for {what}"
    raise AssertionError(msg)
