"""`crypto-pipeline up`: scheduler, watcher and dashboard together (plus the simulator with --demo).

Like `dagster dev`: one command starts every process, prints the dashboard URL, and Ctrl-C (or SIGTERM)
stops them all. A process that dies on its own is restarted with backoff while the others keep running,
and its restarts are published in a small state file the dashboard shows (`read_launcher_state`).

The watcher (`crypto-pipeline watch`) evaluates the incident rules and delivers alerts beside the
scheduler's own watcher thread, so that a dead scheduler is still reported. With --demo a webhook sink in
this process receives the alerts (its `/received` page lists them): no outside service is needed, and a
scripted scenario (pipeline/runtime/demo.py) makes things go wrong and right again on the simulator.

One `up` per database: the running one is recorded in the database (`pipeline_meta`), and a second `up`
against it refuses with the first one's address instead of starting a second scheduler and dashboard.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.api.binding import listen_refusal, url_of
from pipeline.config import Settings, child_environment, load_settings, mask_url_password
from pipeline.database import DatabaseService
from pipeline.metrics.binding import listen_refusal as metrics_refusal
from pipeline.runtime.demo import DemoScenario
from pipeline.simulator.sink import WebhookSink

logger = logging.getLogger(__name__)

DEMO_DATABASE_URL = "sqlite:///./data/demo.db"
DEMO_ENV_FILE = Path("data/demo.env")
SERVING = "up"  # the pipeline_meta key naming the `up` that serves the database
# The settings of the demo's world that another shell needs to talk to it (written to DEMO_ENV_FILE).
DEMO_ENV_KEYS = (
    "DATABASE_URL",
    "BLOCKCHAIR_BASE_URL",
    "COINGECKO_BASE_URL",
    "COINGECKO_API_PLAN",
    "SIMULATED_DATA",
    "HOURLY_DAYS",
    "QUOTE_CURRENCIES",
    "ALERT_WEBHOOK_URL",
    "DASHBOARD_URL",
)
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
        port: int = sock.getsockname()[1]
        return port


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll an URL until it answers 200, failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # The launcher always starts children from an argument list: name them by its module part.
            what = process.args[1:3] if isinstance(process.args, list) else process.args
            msg = f"{what!r} exited with code {process.returncode} before {url} answered"
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
        # A year of hourly candles in three quotes: 5 requests per coin and quote on the first run, then
        # one per run; the simulator has no monthly quota, so the demo's budget is set above its use.
        "HOURLY_DAYS": 365,
        "QUOTE_CURRENCIES": "usd,eur,btc",
        "COINGECKO_DAILY_REQUEST_BUDGET": 5000,
        "TRANSACTIONS_WINDOW_BLOCKS": 30,
        "WATCH_ADDRESSES": json.dumps(DEMO_WATCH),
    }


# Restart backoff of a child that exits on its own: 1, 2, 4 ... 60 s; a child that ran this long is
# considered healthy again and its next crash restarts after the shortest wait.
RESTART_FIRST_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
HEALTHY_AFTER_SECONDS = 60.0
STATE_ENV = "LAUNCHER_STATE_FILE"  # the setting `up` hands its children


@dataclass
class Child:
    """One supervised process: how to start it, and what has happened to it so far."""

    name: str
    args: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0  # time.monotonic() of the last start
    restarts: int = 0
    failures_in_a_row: int = 0
    last_exit_code: int | None = None
    last_exit_at: datetime | None = None
    restart_at: float | None = None  # time.monotonic() of the next start while it is down

    def snapshot(self) -> dict[str, object]:
        """What the dashboard shows of this child."""
        alive = self.process is not None and self.process.poll() is None
        return {
            "state": "running" if alive else "restarting",
            "pid": self.process.pid if alive and self.process else None,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_exit_at": self.last_exit_at.isoformat() if self.last_exit_at else None,
            "restart_in_seconds": (
                None if alive or self.restart_at is None else max(0.0, self.restart_at - time.monotonic())
            ),
        }


def read_launcher_state(path: str | None) -> dict[str, Any] | None:
    """The state `up` publishes about its children (the dashboard shows restarts); None outside `up`."""
    if not path:
        return None
    try:
        state: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return state


class Launcher:
    """Starts, watches, restarts and stops the child processes.

    A child that exits without being asked to is started again with backoff, while the others keep
    running: a scheduler that dies (a bug, the database gone at start) must not take the dashboard, where
    the operator would see it, down with it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        demo: bool,
        host: str,
        port: int | None,
        api_port: int | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.demo = demo
        self.host = host
        self.port = port or free_port(host)
        # The REST API listens beside the dashboard; without API keys on loopback only (api/binding.py).
        self.api_host = "127.0.0.1" if listen_refusal(settings, host) else host
        self.api_port = api_port or free_port(self.api_host)
        self.api_url = url_of(self.api_host, self.api_port)
        # The Prometheus exporter too: on loopback only unless METRICS_ALLOW_REMOTE (metrics/binding.py).
        self.metrics_host = "127.0.0.1" if metrics_refusal(settings, host) else host
        self.metrics_port = metrics_port or free_port(self.metrics_host)
        self.metrics_url = f"{url_of(self.metrics_host, self.metrics_port)}/metrics"
        self.children: list[Child] = []
        self.sink: WebhookSink | None = None  # the demo's alert receiver, served by this process
        self.scenario: DemoScenario | None = None
        self.demo_stop = threading.Event()
        self.serving: tuple[DatabaseService, str] | None = None  # our pipeline_meta claim, to remove
        self.stopping = False
        self._state_dir = Path(tempfile.mkdtemp(prefix="crypto-pipeline-up-"))
        self.state_path = self._state_dir / "state.json"

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The children's current processes."""
        return [c.process for c in self.children if c.process is not None]

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        child = Child(name, [sys.executable, *args], {**env, STATE_ENV: str(self.state_path)})
        self.children.append(child)
        self._spawn(child)
        assert child.process is not None
        return child.process

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(child.args, env=child.env)
        child.started = time.monotonic()
        child.restart_at = None
        self._publish()

    def start(self) -> str:
        """Start everything; returns the dashboard URL once it answers."""
        overrides: dict[str, object] = {}
        if self.demo:
            sim_port = free_port()
            sim = self._start(
                "simulator", ["-m", "pipeline.simulator", "--port", str(sim_port)], child_environment()
            )
            sim_url = f"http://127.0.0.1:{sim_port}"
            wait_for_http(f"{sim_url}/api/v3/ping", sim)
            overrides = demo_overrides(sim_url)
            self.sink = WebhookSink().start()
            overrides |= {
                "ALERT_WEBHOOK_URL": f"{self.sink.url}/webhook",
                "DASHBOARD_URL": f"http://{self.host}:{self.port}",  # the alerts' links
            }
        world = load_settings(**{**overrides, "WATCH_ADDRESSES": DEMO_WATCH}) if self.demo else self.settings
        self._claim_database(world)
        if self.demo:
            write_env_file(DEMO_ENV_FILE, overrides)
            # Its first step (a price fault) must be armed before the scheduler's first price request.
            self.scenario = DemoScenario.connect(sim_url, world, progress_path=self._state_dir / "demo.json")
            self.scenario.prepare()
        env = child_environment(**overrides)
        cli = ["-m", "pipeline.runtime.cli", "--log-level", self.settings.LOG_LEVEL]
        self._start("scheduler", [*cli, "run"], env)
        self._start("watch", [*cli, "watch"], env)
        dashboard = self._start(
            "dashboard",
            [
                "-m", "streamlit", "run", str(dashboard_script()),
                "--server.port", str(self.port), "--server.address", self.host,
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ],
            env,
        )  # fmt: skip
        api = self._start("api", [*cli, "api", "--host", self.api_host, "--port", str(self.api_port)], env)
        metrics_args = ["metrics", "--host", self.metrics_host, "--port", str(self.metrics_port)]
        metrics = self._start("exporter", [*cli, *metrics_args], env)
        url = f"http://{self.host}:{self.port}"
        wait_for_http(f"{url}/_stcore/health", dashboard)
        wait_for_http(f"{self.api_url}/openapi.json", api)  # open even when API keys are required
        wait_for_http(self.metrics_url, metrics)
        if self.scenario is not None:
            self.scenario.start(self.demo_stop)
        return url

    def _claim_database(self, settings: Settings) -> None:
        """Record this `up` in its database; refuse (RuntimeError) if a live `up` already serves it."""
        db = DatabaseService(settings=settings)
        db.require_persistent()
        db.create_tables()
        mine = json.dumps(
            {
                "url": f"http://{self.host}:{self.port}",
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        # One statement decides between two `up`s started together: the claim is taken only if there is
        # none, or if it still holds the stale value we read (its `up` is gone).
        current = db.claim_meta(SERVING, mine)
        while current != mine and not _serving_elsewhere(db, current):
            current = db.claim_meta(SERVING, mine, replacing=current)
        if current != mine:
            owner = json.loads(current)
            db.dispose()
            msg = (
                f"another crypto-pipeline up already serves {mask_url_password(settings.DATABASE_URL)}:"
                f" its dashboard is {owner.get('url')} (pid {owner.get('pid')} on {owner.get('host')});"
                " open it, or stop that one first"
            )
            raise RuntimeError(msg)
        self.serving = (db, mine)

    def watch(self) -> int:
        """Supervise the children until we are asked to stop; then stop them all."""
        while not self.stopping:
            for child in self.children:
                self._supervise(child)
            time.sleep(0.2)
        self.stop()
        return 0

    def _supervise(self, child: Child) -> None:
        """Notice a child that exited and start it again once its backoff has passed."""
        process = child.process
        if process is not None and process.poll() is not None:
            ran = time.monotonic() - child.started
            child.failures_in_a_row = 1 if ran >= HEALTHY_AFTER_SECONDS else child.failures_in_a_row + 1
            delay = min(RESTART_MAX_SECONDS, RESTART_FIRST_SECONDS * 2 ** (child.failures_in_a_row - 1))
            child.last_exit_code, child.last_exit_at = process.returncode, datetime.now(UTC)
            child.process, child.restart_at = None, time.monotonic() + delay
            logger.error(
                "%s exited with code %s after %.0f s; restarting it in %.0f s (the others keep running)",
                child.name, process.returncode, ran, delay,
            )  # fmt: skip
            self._publish()
        if child.process is None and child.restart_at is not None and time.monotonic() >= child.restart_at:
            child.restarts += 1
            self._spawn(child)

    def _publish(self) -> None:
        """Write the children's state for the dashboard, atomically (it may read at any moment)."""
        state = {
            "updated_at": datetime.now(UTC).isoformat(),
            "children": {c.name: c.snapshot() for c in self.children},
        }
        partial = self.state_path.with_suffix(".tmp")
        partial.write_text(json.dumps(state))
        os.replace(partial, self.state_path)

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
        self.demo_stop.set()
        if self.scenario is not None:
            self.scenario.close()
            self.scenario = None
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.serving is not None:
            db, mine = self.serving
            try:
                db.delete_meta(SERVING, value=mine)
            except Exception:  # noqa: BLE001 - a stale claim is harmless: the next `up` sees our pid gone
                logger.warning("could not remove this up's claim on the database", exc_info=True)
            db.dispose()
            self.serving = None
        shutil.rmtree(self._state_dir, ignore_errors=True)


def _serving_elsewhere(db: DatabaseService, claim: str) -> bool:
    """Whether the `up` recorded in `claim` is still running: its pid on this host, or, on another host,
    a scheduler of that host that still beats."""
    try:
        owner = json.loads(claim)
        pid, host = int(owner["pid"]), str(owner["host"])
    except (ValueError, KeyError, TypeError):
        return False  # not a claim we can read: take it over
    if host != socket.gethostname():
        return any(w.host == host and w.state == "up" for w in db.get_workers())
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, under another user
    return True


def write_env_file(path: Path, overrides: dict[str, object]) -> None:
    """The settings of the demo's world, for commands run from another shell (`--env-file`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# The world of a running `crypto-pipeline up --demo` (simulator URLs change at each start).",
        "# Use it from another shell: crypto-pipeline --env-file data/demo.env status",
        *(f"{key}={overrides[key]}" for key in DEMO_ENV_KEYS if key in overrides),
    ]
    path.write_text("\n".join(lines) + "\n")


def up(
    settings: Settings,
    *,
    demo: bool,
    host: str = "127.0.0.1",
    port: int | None = None,
    api_port: int | None = None,
    metrics_port: int | None = None,
) -> int:
    """Run the whole product until Ctrl-C."""
    launcher = Launcher(
        settings, demo=demo, host=host, port=port, api_port=api_port, metrics_port=metrics_port
    )

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
    except BaseException:  # a database error (its own exit code, from the CLI), Ctrl-C: stop what started
        launcher.stop()
        raise
    mode = " (demo: simulated APIs, database ./data/demo.db)" if demo else ""
    world = f"  Settings of this world: {DEMO_ENV_FILE} (crypto-pipeline --env-file {DEMO_ENV_FILE} status)\n"
    alerts = f"  Alerts: {launcher.sink.url}/received (demo webhook sink)\n" if launcher.sink else ""
    print(
        f"\n  Dashboard: {url}{mode}\n  API: {launcher.api_url}/v1 (docs: {launcher.api_url}/docs)\n"
        f"  Metrics: {launcher.metrics_url} (Prometheus)\n"
        f"{alerts}{world if demo else ''}"
        "  Scheduler: running. Watcher: running. Press Ctrl-C to stop.\n",
        flush=True,
    )
    # The dashboard shows the same notice, but whoever typed --host should read it before anyone
    # else opens the page. The secrets files are what the dashboard's Streamlit will read (same cwd).
    # (Imported here: this function is the only user, and the module's head belongs to the Launcher.)
    from pipeline.services import access

    authenticated = settings.DASHBOARD_TRUSTED_AUTH_PROXY or access.auth_configured_in(access.secrets_files())
    if access.exposed(host) and not authenticated:
        print(f"  Warning: {access.exposure_warning(host)}\n", file=sys.stderr, flush=True)
    return launcher.watch()
