"""`crypto-pipeline up`: the scheduler and the dashboard together (plus the simulator with --demo).

Like `dagster dev`: one command starts every process, prints the dashboard URL, and Ctrl-C (or SIGTERM)
stops them all. If one process dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline.config import Settings, child_environment

logger = logging.getLogger(__name__)

DEMO_DATABASE_URL = "sqlite:///./data/demo.db"
DEMO_WATCH = {
    "bitcoin": ["1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"],
    "ethereum": ["0x00000000219ab540356cbb839cbe05303d7705fa"],
    "dogecoin": ["DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"],
}


def dashboard_script() -> Path:
    """Where the dashboard's entry point is installed."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or spec.origin is None:
        msg = "the dashboard package is not installed (pip install -e .)"
        raise RuntimeError(msg)
    return Path(spec.origin).parent / "app.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on the host."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Poll an URL until it answers 200, failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"{process.args[1:3]} exited with code {process.returncode} before {url} answered"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    msg = f"{url} did not answer within {timeout:.0f} s"
    raise RuntimeError(msg)


def demo_overrides(sim_url: str) -> dict[str, object]:
    """Settings that point everything at the local simulator, with its own database and quick jobs."""
    return {
        "DATABASE_URL": DEMO_DATABASE_URL,
        "BLOCKCHAIR_BASE_URL": sim_url,
        "COINGECKO_BASE_URL": f"{sim_url}/api/v3",
        "COINGECKO_API_PLAN": "public",
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 600,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 600,
        "SIMULATED_DATA": "true",
        "BLOCKS_INITIAL_DEPTH": 300,
        "BLOCKS_INTERVAL_MINUTES": 1,
        "TRANSACTIONS_INTERVAL_MINUTES": 2,
        "ADDRESSES_INTERVAL_MINUTES": 5,
        "LATEST_PRICE_INTERVAL_MINUTES": 5,
        "PRICE_BACKFILL_DAYS": 365,
        "TRANSACTIONS_WINDOW_BLOCKS": 30,
        "WATCH_ADDRESSES": json.dumps(DEMO_WATCH),
    }


class Launcher:
    """Starts, watches and stops the child processes."""

    def __init__(self, settings: Settings, *, demo: bool, host: str, port: int | None) -> None:
        self.settings = settings
        self.demo = demo
        self.host = host
        self.port = port or free_port(host)
        self.processes: list[subprocess.Popen] = []
        self.stopping = False

    def _start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, *args], env=env)
        self.processes.append(process)
        return process

    def start(self) -> str:
        """Start everything; returns the dashboard URL once it answers."""
        overrides: dict[str, object] = {}
        if self.demo:
            sim_port = free_port()
            sim = self._start(["-m", "pipeline.simulator", "--port", str(sim_port)], child_environment())
            sim_url = f"http://127.0.0.1:{sim_port}"
            wait_for_http(f"{sim_url}/api/v3/ping", sim)
            overrides = demo_overrides(sim_url)
        env = child_environment(**overrides)
        self._start(["-m", "pipeline.cli", "--log-level", self.settings.LOG_LEVEL, "run"], env)
        dashboard = self._start(
            [
                "-m", "streamlit", "run", str(dashboard_script()),
                "--server.port", str(self.port), "--server.address", self.host,
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ],
            env,
        )  # fmt: skip
        url = f"http://{self.host}:{self.port}"
        wait_for_http(f"{url}/_stcore/health", dashboard)
        return url

    def watch(self) -> int:
        """Wait until a child exits or we are asked to stop; then stop them all."""
        code = 0
        while not self.stopping:
            exited = [p for p in self.processes if p.poll() is not None]
            if exited:
                code = exited[0].returncode or 1
                logger.error("%s exited with code %s; stopping the others", exited[0].args[1:3], code)
                break
            time.sleep(0.5)
        self.stop()
        return code

    def stop(self) -> None:
        """SIGTERM every child (the scheduler closes its unit cleanly), then kill stragglers."""
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def up(settings: Settings, *, demo: bool, host: str = "127.0.0.1", port: int | None = None) -> int:
    """Run the whole product until Ctrl-C."""
    launcher = Launcher(settings, demo=demo, host=host, port=port)

    def _stop(_signum: int, _frame: object) -> None:
        launcher.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        url = launcher.start()
    except RuntimeError as exc:
        launcher.stop()
        print(f"crypto-pipeline up: {exc}", file=sys.stderr)
        return 1
    mode = " (demo: simulated APIs, database ./data/demo.db)" if demo else ""
    print(f"\n  Dashboard: {url}{mode}\n  Scheduler: running. Press Ctrl-C to stop.\n", flush=True)
    return launcher.watch()
