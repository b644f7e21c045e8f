"""Two hours of faults compressed into two minutes: every incident alerts exactly once each way, promptly.

One scheduler process and one `crypto-pipeline watch` process (two deliverers) run against the simulator
and a webhook sink. A seeded schedule (1 simulated minute = 1 s) switches persistent faults on and off on
several units, each outage failing every run of its unit until it ends, and sprinkles transient faults
(one failed attempt, which the unit's own retry cures) between them, also on a unit that never has an
outage. At the end every fault is cleared and every incident must have resolved. Then, from the sink's
bodies and the database:

- every incident got exactly one FIRING and one RESOLVED body, and no (incident, status) came twice;
- no incident on a unit that only had transient faults, and every unit incident began in an outage;
- the FIRING body arrived within 60 s of the first failed run's end (the latency is printed).

ALERT_TIMELINE_SEED picks another schedule (the seed is printed with the figure line).
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from benchmarks.harness.processes import scheduler_settings, start_scheduler, start_watcher, stop, wait_for
from pipeline.database import DatabaseService
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig
from pipeline.simulator.sink import WebhookSink
from tests.support.databases import migrated_database
from tests.support.reliability import note
from tests.support.settings import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.slow_on_postgresql]

SEED = int(os.environ.get("ALERT_TIMELINE_SEED", "20240501"))
SECONDS = 120.0  # two simulated hours at one simulated minute per second
MAX_FIRING_LATENCY = 60.0
# Units with outages (persistent faults) and transient faults, and one with transient faults only.
OUTAGE_UNITS = {
    "blockchair/blocks/bitcoin": ("blocks", "bitcoin"),
    "blockchair/blocks/ethereum": ("blocks", "ethereum"),
    "blockchair/transactions/bitcoin": ("transactions", "bitcoin"),
}
TRANSIENT_ONLY_UNITS = {"blockchair/blocks/dogecoin": ("blocks", "dogecoin")}
# Blocks runs make requests every time (they re-read the newest blocks), so each outage of a blocks unit
# fails runs; transactions runs fetch only new blocks' transactions, so theirs may pass unnoticed.
ALWAYS_REQUESTING = ("blockchair/blocks/bitcoin", "blockchair/blocks/ethereum")


@dataclass
class Schedule:
    """Outages per unit as (start, end) offsets in seconds, and transient faults as (offset, unit)."""

    outages: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    transients: list[tuple[float, str]] = field(default_factory=list)


def make_schedule(rng: random.Random, seconds: float) -> Schedule:
    """Outages of 8 to 20 simulated minutes with at least 12 between them, transients away from outages."""
    schedule = Schedule()
    for unit in OUTAGE_UNITS:
        windows, t = [], rng.uniform(4, 15)
        while True:
            length = rng.uniform(8, 20)
            if t + length > seconds - 8:
                break
            windows.append((t, t + length))
            t += length + rng.uniform(12, 25)
        schedule.outages[unit] = windows
    for unit in [*OUTAGE_UNITS, *TRANSIENT_ONLY_UNITS]:
        t = rng.uniform(2, 8)
        while t < seconds - 8:
            # Not within 5 s before an outage nor 8 s after one: a transient fault must meet a healthy unit.
            if all(not (start - 5 <= t <= end + 8) for start, end in schedule.outages.get(unit, [])):
                schedule.transients.append((t, unit))
            t += rng.uniform(6, 14)
    schedule.transients.sort()
    return schedule


def rule(unit: str, times: int | None) -> FaultRule:
    endpoint, chain = {**OUTAGE_UNITS, **TRANSIENT_ONLY_UNITS}[unit]
    return FaultRule("500", endpoint=endpoint, chain=chain, times=times)


class Faults:
    """The simulator's fault rules, as outages switch on and off and transient faults are armed."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.down: set[str] = set()
        self.retried = 0  # transient faults that fired (each cured by the unit's retry)

    def _fired_transients(self) -> list[dict[str, Any]]:
        return [r for r in self.sim.stats()["faults"] if r["times"] == 1]

    def arm_transient(self, unit: str) -> bool:
        """One failed attempt for the unit's next request, unless one is still armed for it (two armed
        rules would fail both attempts of a run)."""
        endpoint, chain = {**OUTAGE_UNITS, **TRANSIENT_ONLY_UNITS}[unit]
        armed = [r for r in self._fired_transients() if (r["endpoint"], r["chain"]) == (endpoint, chain)]
        if any(r["fired"] == 0 for r in armed):
            return False
        self.sim.add_fault(rule(unit, times=1))
        return True

    def set_down(self, down: set[str]) -> None:
        """Rebuild the rules: an outage for each unit in `down`; armed transient faults are dropped (a
        re-added one could fire twice in one run)."""
        self.retried += sum(r["fired"] for r in self._fired_transients())
        self.sim.clear_faults()
        self.down = set(down)
        for unit in sorted(self.down):
            self.sim.add_fault(rule(unit, times=None))

    def finish(self) -> None:
        self.set_down(set())


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(tip_growth=False)) as simulator:
        yield simulator


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as receiver:
        yield receiver


@pytest.fixture
def db(database_url: str) -> Iterator[DatabaseService]:
    with migrated_database(make_settings(database_url)) as service:
        yield service


def test_alert_timeline(db, database_url, sim, sink, tmp_path):
    rng = random.Random(SEED)
    schedule = make_schedule(rng, SECONDS)
    settings = scheduler_settings(
        database_url,
        sim,
        COINS="bitcoin,ethereum,dogecoin",
        BLOCKS_INITIAL_DEPTH=40,
        TRANSACTIONS_WINDOW_BLOCKS=10,
        BLOCKS_INTERVAL_MINUTES=0.05,
        TRANSACTIONS_INTERVAL_MINUTES=0.05,
        LATEST_PRICE_INTERVAL_MINUTES=0.05,
        HTTP_MAX_ATTEMPTS=2,
        HEARTBEAT_SECONDS=1,
        HEARTBEAT_STALE_SECONDS=10,
        WATCH_INTERVAL_SECONDS=0.5,
        ALERT_WEBHOOK_URL=f"{sink.url}/webhook",
        ALERT_AFTER_MINUTES=0,
        ALERT_MAX_ATTEMPTS=3,
        ALERT_BACKOFF_SECONDS=0.1,
        BLOCKCHAIR_DAILY_REQUEST_BUDGET=1_000_000,
        COINGECKO_DAILY_REQUEST_BUDGET=1_000_000,
    )
    events: list[tuple[float, str, str]] = []  # (offset, "on" | "off" | "transient", unit)
    for unit, windows in schedule.outages.items():
        for start, end in windows:
            events += [(start, "on", unit), (end, "off", unit)]
    events += [(t, "transient", unit) for t, unit in schedule.transients]
    events.sort()

    faults = Faults(sim)
    outages: dict[str, list[tuple[float, float]]] = defaultdict(list)  # wall-clock windows, as applied
    arrived: list[float] = []  # wall-clock arrival of each sink body, by index (polled every 0.1 s)
    armed = 0

    def poll_sink() -> None:
        now = time.time()
        arrived.extend([now] * (len(sink.received()) - len(arrived)))

    scheduler = start_scheduler(tmp_path / "scheduler.log", **settings)
    watcher = start_watcher(tmp_path / "watch.log", **settings)
    try:
        # The clock starts once the first units ran: start-up is not part of the timeline.
        wait_for(lambda: len(db.get_ingestion_logs(status="success", limit=None)) >= 3, 60, what="first runs")
        began = time.monotonic()
        wall = time.time() - began
        next_tip = 2.0
        while time.monotonic() - began < SECONDS:
            offset = time.monotonic() - began
            changed = False
            while events and events[0][0] <= offset:
                _, what, unit = events.pop(0)
                if what == "transient":
                    armed += faults.arm_transient(unit)
                    continue
                down = faults.down | {unit} if what == "on" else faults.down - {unit}
                faults.set_down(down)
                changed = True
                if what == "on":
                    outages[unit].append((wall + time.monotonic(), float("inf")))
                else:
                    outages[unit][-1] = (outages[unit][-1][0], wall + time.monotonic())
            if offset >= next_tip:  # new bitcoin blocks, so that transactions runs have work
                sim.advance_tip("bitcoin", 1)
                next_tip += 2.0
            poll_sink()
            time.sleep(0.05 if changed else 0.1)
        faults.finish()
        ended = time.time()

        def settled() -> bool:
            poll_sink()
            incidents = db.get_incidents(limit=None)
            if any(i.resolved_at is None for i in incidents):
                return False
            counts = Counter((b["incident_id"], b["status"]) for b in _bodies(sink))
            return all(counts[(i.id, "firing")] and counts[(i.id, "resolved")] for i in incidents)

        wait_for(settled, 90, interval=0.1, what="every incident resolved and its RESOLVED delivered")
        # A few more rounds of both deliverers, to catch a late duplicate.
        runs = len(db.get_ingestion_logs(status="success", limit=None))
        successes = lambda: len(db.get_ingestion_logs(status="success", limit=None))  # noqa: E731
        wait_for(lambda: successes() >= runs + 6, 60, what="more runs")
        poll_sink()
    finally:
        codes = [stop(scheduler), stop(watcher)]
    logs = {name: (tmp_path / name).read_text() for name in ("scheduler.log", "watch.log")}
    assert codes == [0, 0], logs

    received = sink.received("/webhook")
    bodies = _bodies(sink)
    assert len(bodies) == len(received), "a body that is not the documented JSON"
    counts = Counter((b["incident_id"], b["status"]) for b in bodies)
    incidents = db.get_incidents(limit=None)
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates == 0, counts
    for incident in incidents:
        assert counts[(incident.id, "firing")] == 1, (incident, counts)
        assert counts[(incident.id, "resolved")] == 1, (incident, counts)
    assert {i for i, _status in counts} == {i.id for i in incidents}, "a body about no incident"

    unit_incidents = [i for i in incidents if i.kind == "unit"]
    by_unit = Counter(i.key for i in unit_incidents)
    retried_alerts = sum(by_unit[u] for u in TRANSIENT_ONLY_UNITS)
    assert retried_alerts == 0, by_unit
    assert set(by_unit) <= set(OUTAGE_UNITS), by_unit
    for unit in ALWAYS_REQUESTING:  # each outage of a blocks unit is one incident
        assert by_unit[unit] == len(outages[unit]), (unit, by_unit, outages[unit])

    latencies = []
    arrival = {id(r): at for r, at in zip(sink.received(), arrived, strict=False)}
    firing_at = {
        r.body["incident_id"]: arrival[id(r)]
        for r in received
        if isinstance(r.body, dict) and r.body.get("status") == "firing"
    }
    for incident in unit_incidents:
        assert incident.first_run_id is not None
        failed = db.get_run(incident.first_run_id).finished_at
        assert failed is not None
        began_at = failed.timestamp()
        # The first failed run ended in an outage of its unit (or just after it, a run it cut short).
        assert any(start - 1 <= began_at <= end + 10 for start, end in outages[incident.key]), (
            incident,
            outages[incident.key],
        )
        latencies.append(firing_at[incident.id] - began_at)
    assert latencies
    assert max(latencies) <= MAX_FIRING_LATENCY, latencies
    assert armed > 0
    assert faults.retried > 0

    note(
        f"alert timeline ({db.dialect}): seed {SEED}, {SECONDS:.0f} s ({SECONDS / 60:.0f} h simulated), "
        f"{len(incidents)} incidents on {len({i.key for i in incidents})} units, "
        f"{counts_of(counts, 'firing')} FIRING + {counts_of(counts, 'resolved')} RESOLVED, "
        f"{duplicates} duplicates, {retried_alerts} for retried attempts ({faults.retried} transient faults "
        f"retried away), FIRING latency p50 {statistics.median(latencies):.1f} s max {max(latencies):.1f} s; "
        f"settled {time.time() - ended:.0f} s after the last fault"
    )


def counts_of(counts: Counter[tuple[int, str]], status: str) -> int:
    return sum(n for (_incident, s), n in counts.items() if s == status)


def _bodies(sink: WebhookSink) -> list[dict[str, Any]]:
    return [r.body for r in sink.received("/webhook") if isinstance(r.body, dict) and "incident_id" in r.body]
