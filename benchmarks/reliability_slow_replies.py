"""Replies that never end: the scheduler process's peak memory, the deadline, and SIGTERM, measured.

    python benchmarks/reliability_slow_replies.py [--trickle-deadline 5] [--endless-seconds 20]

Starts the real scheduler (`python run_ingestor.py`) against the simulator, running in this process,
with one fault on the Blockchair blocks endpoint per scenario, and prints one line per figure:

- idle: the scheduler's peak RSS on normal replies, for reference;
- endless: an endless chunked body, on every blocks request for `--endless-seconds` (a blocks job every
  3 s): peak RSS, bytes the simulator managed to send, and the runs' outcome (target: peak < 150 MB);
- huge: a 200 MB body with its Content-Length: peak RSS and outcome (target: peak < 150 MB);
- trickle: one byte every 0.2 s, which never trips a read timeout: how long the blocks unit took with
  `HTTP_DEADLINE_SECONDS=--trickle-deadline` and 2 attempts, and how soon after it the next job started;
- sigterm: SIGTERM while a blocks request trickles (default 60 s deadline): seconds until the process
  exited, its exit code, and the unit's status (target: < 5 s, `failed`/Interrupted, nothing `running`).

Peak RSS is the kernel's high-water mark of the process (VmHWM in /proc/PID/status), so Linux only.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness.processes import scheduler_settings, start_scheduler, stop, wait_for  # noqa: E402
from pipeline.config import load_settings  # noqa: E402
from pipeline.database import DatabaseService  # noqa: E402
from pipeline.schemas import DataIngestionLogData  # noqa: E402
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig  # noqa: E402

MIB = 1024 * 1024
T = TypeVar("T")
RSS_TARGET_MB = 150
EXIT_TARGET_SECONDS = 5


@dataclass
class Scheduler:
    """A running scheduler process, its database and its log."""

    process: subprocess.Popen
    db: DatabaseService
    log: Path

    def peak_rss_mb(self) -> float:
        """The process's resident-memory high-water mark so far, in MB."""
        return _proc_status_kb(self.process.pid, "VmHWM") / 1024

    def runs(self, data_type: str | None = None) -> list[DataIngestionLogData]:
        """Runs, oldest first, of one data type or all."""
        found = reversed(self.db.get_ingestion_logs(limit=None))
        return [r for r in found if data_type is None or r.data_type == data_type]


def _proc_status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    msg = f"no {field} in /proc/{pid}/status"
    raise RuntimeError(msg)


def _wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    return wait_for(condition, timeout, interval=0.1, what=what)


@contextmanager
def scheduler(sim: Simulator, workdir: Path, name: str, **overrides: object) -> Iterator[Scheduler]:
    """`python run_ingestor.py` on a fresh SQLite database against `sim`; SIGTERM on the way out."""
    url = f"sqlite:///{workdir}/{name}.db"
    schedule: dict[str, object] = {
        "BLOCKS_INITIAL_DEPTH": 120,
        "COINS": "bitcoin",
        "BLOCKS_INTERVAL_MINUTES": 30,
        "TRANSACTIONS_INTERVAL_MINUTES": 30,
        "LATEST_PRICE_INTERVAL_MINUTES": 30,
        "HEARTBEAT_SECONDS": 1,
    }
    settings = scheduler_settings(url, sim, **{**schedule, **overrides})
    db = DatabaseService(settings=load_settings(_env_file=None, DATABASE_URL=url))
    db.create_tables()
    log = workdir / f"{name}.log"
    process = start_scheduler(log, **settings)
    try:
        yield Scheduler(process, db, log)
    finally:
        with suppress(subprocess.TimeoutExpired):  # killed instead
            stop(process)
        db.dispose()


def _outcome(runs: list[DataIngestionLogData]) -> str:
    counts: dict[str, int] = {}
    for run in runs:
        key = f"{run.status.value}/{run.error_class}" if run.error_class else run.status.value
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in sorted(counts.items())) or "no runs"


def _fired(sim: Simulator) -> int:
    return sum(rule["fired"] for rule in sim.stats()["faults"])


# ---------------------------------------------------------------- scenarios


def idle(sim: Simulator, workdir: Path) -> None:
    sim.clear_faults()
    with scheduler(sim, workdir, "idle") as proc:
        _wait_for(lambda: len([r for r in proc.runs() if r.status.value != "running"]) >= 4, 60, "the jobs")
        _wait_for(lambda: not [r for r in proc.runs() if r.status.value == "running"], 60, "the jobs to end")
        print(f"idle     peak RSS {proc.peak_rss_mb():6.1f} MB on normal replies ({_outcome(proc.runs())})")


def endless(sim: Simulator, workdir: Path, seconds: float) -> None:
    sim.clear_faults()
    sim.add_fault(FaultRule("endless", endpoint="blocks", times=None))
    with scheduler(sim, workdir, "endless", BLOCKS_INTERVAL_MINUTES=0.05) as proc:
        _wait_for(lambda: _fired(sim) >= 1, 60, "the first endless reply")
        started = time.monotonic()
        peak = 0.0
        while time.monotonic() - started < seconds:
            peak = max(peak, proc.peak_rss_mb())
            time.sleep(0.5)
        served = _fired(sim)
        blocks = [r for r in proc.runs("blocks") if r.status.value != "running"]
    verdict = "ok" if peak < RSS_TARGET_MB else "OVER TARGET"
    print(
        f"endless  peak RSS {peak:6.1f} MB over {seconds:.0f} s, {served} endless replies "
        f"(blocks runs: {_outcome(blocks)}) [target < {RSS_TARGET_MB} MB: {verdict}]"
    )


def huge(sim: Simulator, workdir: Path) -> None:
    sim.clear_faults()
    sim.add_fault(FaultRule("huge", endpoint="blocks", times=None, size=200 * MIB))
    with scheduler(sim, workdir, "huge") as proc:
        blocks = _wait_for(
            lambda: [r for r in proc.runs("blocks") if r.status.value != "running"], 60, "the blocks run"
        )
        peak = proc.peak_rss_mb()
    verdict = "ok" if peak < RSS_TARGET_MB else "OVER TARGET"
    print(
        f"huge     peak RSS {peak:6.1f} MB for a 200 MB body with Content-Length "
        f"(blocks: {_outcome(blocks)}, {blocks[0].duration_seconds:.2f} s) "
        f"[target < {RSS_TARGET_MB} MB: {verdict}]"
    )


def trickle(sim: Simulator, workdir: Path, deadline: float) -> None:
    sim.clear_faults()
    sim.add_fault(FaultRule("trickle", endpoint="blocks", times=None, delay=0.2))
    with scheduler(sim, workdir, "trickle", HTTP_DEADLINE_SECONDS=deadline) as proc:
        _wait_for(lambda: any(r.data_type == "prices" for r in proc.runs()), 120, "the next jobs")
        blocks = _wait_for(
            lambda: [r for r in proc.runs("blocks") if r.status.value != "running"], 60, "the blocks run"
        )[0]
        after = [r for r in proc.runs() if r.id > blocks.id]
    assert blocks.finished_at is not None
    gap = (after[0].started_at - blocks.finished_at).total_seconds() if after else float("nan")
    print(
        f"trickle  blocks unit {blocks.status.value}/{blocks.error_class} "
        f"after {blocks.duration_seconds:.2f} s "
        f"({blocks.requests_made} attempts, HTTP_DEADLINE_SECONDS={deadline:g}); the next job "
        f"({after[0].data_type if after else '-'}) started {gap:.2f} s later"
    )


def sigterm(sim: Simulator, workdir: Path) -> None:
    sim.clear_faults()
    sim.add_fault(FaultRule("trickle", endpoint="blocks", times=None, delay=0.2))
    with scheduler(sim, workdir, "sigterm") as proc:
        _wait_for(
            lambda: _fired(sim) >= 1 and any(r.status.value == "running" for r in proc.runs("blocks")),
            60,
            "a trickling blocks request",
        )
        time.sleep(1.0)  # well into the body
        started = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        try:
            code: int | str = proc.process.wait(30)
        except subprocess.TimeoutExpired:
            code = "still running after 30 s"
        elapsed = time.monotonic() - started
        blocks = proc.runs("blocks")
        running = [r for r in proc.runs() if r.status.value == "running"]
        queued = proc.db.get_replay_requests(status="pending")
    verdict = "ok" if elapsed < EXIT_TARGET_SECONDS and code == 0 else "MISSED"
    print(
        f"sigterm  exited in {elapsed:.2f} s with code {code}; blocks unit {_outcome(blocks)}, "
        f"{len(running)} left running, {len(queued)} rerun queued "
        f"[target < {EXIT_TARGET_SECONDS} s: {verdict}]"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trickle-deadline", type=float, default=5.0, help="HTTP_DEADLINE_SECONDS (default 5)"
    )
    parser.add_argument(
        "--endless-seconds", type=float, default=20.0, help="how long to serve endless bodies"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="slow-replies-") as tmp,
        Simulator(SimulatorConfig(tip_growth=False)) as sim,
    ):
        workdir = Path(tmp)
        idle(sim, workdir)
        endless(sim, workdir, args.endless_seconds)
        huge(sim, workdir)
        trickle(sim, workdir, args.trickle_deadline)
        sigterm(sim, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
