"""The `up --demo` scenario: a scripted tour of what goes wrong with real sources and how the pipeline copes.

The demo runs against the local simulator, so every trouble is a simulator fault or event, and every
repair goes through the product's own paths (the scheduler's runs, a rerun queued as a person clicking
"Rerun" does, the plan `crypto-pipeline fill-gaps` queues). Nothing is written into the data directly.
Times are from the start of the scenario at speed 1 (`up --demo`); the test runs them faster.

| # | at   | step             | look at (dashboard page)                                                    |
|---|------|------------------|-----------------------------------------------------------------------------|
| 1 | 0:00 | bad price point  | Coverage & quality: one bitcoin price day missing (its point was rejected)  |
| 2 | 0:45 | outage           | Overview: incident on blockchair/blocks/dogecoin; Incidents: FIRING alert   |
| 3 | 1:45 | malformed record | Ingestion runs: ethereum transactions `partial`, 1 record rejected + reason |
| 4 | 2:45 | reorganisation   | Ingestion runs: the bitcoin blocks run names the heights it replaced        |
| 5 | 3:45 | outage ends      | Incidents: resolved by a rerun of the failed runs; RESOLVED alert           |
| 6 | 4:30 | price gap filled | Coverage & quality: the gap is found, a backfill is served, none missing    |

What each step does (the simulator's faults are in pipeline/simulator/faults.py):

1. The first point of every bitcoin `market_chart/range` reply loses its value (`missing_field`), so the
   oldest day of the first 365-day price fetch is rejected, and again whenever a run asks for that day.
2. Every dogecoin `blocks` request answers 503; the next blocks run of dogecoin fails, an incident opens
   and its FIRING alert goes to the demo webhook sink (the Incidents page shows the delivery).
3. One transaction of the next ethereum `transactions` reply has a fee that is not a number
   (`wrong_type`, once): that record is rejected with its reason, the run ends `partial`, and the next
   transactions run fetches the block again.
4. The newest 3 bitcoin blocks are replaced at the source (new hashes); the next blocks run re-reads
   the newest REORG_DEPTH blocks, replaces the changed ones and drops their transactions, which the
   transactions job fetches anew.
5. Right after a dogecoin blocks run ends (the next is an interval away), the 503s stop and each failed
   run of the unit is rerun, as the "Rerun" button does; the reruns succeed, the incident resolves with
   the rerun as its cause, and the RESOLVED alert is delivered.
6. The bitcoin price replies are good again; the missing price days of the coverage window are found and
   the price slices of the fill-gaps plan are queued as backfill requests, which the scheduler serves
   after its regular jobs: no day is missing any more.

The first incident opens within about two minutes and everything is visible within about six. Step 1
must come before the scheduler's first price fetch (which would otherwise store every day): the launcher
calls `prepare()` before starting the scheduler. Steps never crash the runner (a failure is logged and
recorded) and may be performed again without doing anything twice (a fault already armed is not armed
again). Progress is kept as one entry per step (`DemoScenario.progress()`), optionally written as JSON
to a file (`read_demo_progress`, `describe_progress` for the "Demo: step 3 of 6 ..." line).

Wiring (the launcher): once the simulator answers, `DemoScenario.connect(sim_url, settings)` with the
settings the scheduler runs with (the demo database and job intervals: `load_settings(**overrides)`, with
WATCH_ADDRESSES as a dict, not the JSON text its environment variable takes); `prepare()` before the
scheduler starts; `start(stop_event)` once everything runs; set the event to stop it, then `close()`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.actors import Actor
from pipeline.config import Settings
from pipeline.database import DatabaseService
from pipeline.ranges import utcnow
from pipeline.schemas import CoinMetadataData, DataIngestionLogData, IngestionStatus
from pipeline.services.coverage import price_coverage
from pipeline.services.gapfill import coverage_window, plan_fill, queue_plan
from pipeline.simulator.control import SimulatorControl
from pipeline.simulator.faults import FaultRule

logger = logging.getLogger(__name__)

# The troubles, one unit each, so that what the newcomer sees is never mixed up.
OUTAGE_CHAIN = "dogecoin"
OUTAGE_FAULT = FaultRule("503", endpoint="blocks", chain=OUTAGE_CHAIN, times=None)
MALFORMED_CHAIN = "ethereum"
# One transaction of the next reply gets a fee that is not a number (pipeline/simulator/corrupt.py): that
# record is rejected, the others are stored, and the run ends partial.
MALFORMED_FAULT = FaultRule("wrong_type", endpoint="transactions", chain=MALFORMED_CHAIN, times=1)
REORG_CHAIN = "bitcoin"  # ten-minute blocks: the stored top is the source's tip, so the reorg is re-read
REORG_BLOCKS = 3  # never more than REORG_DEPTH, the blocks every run re-reads
PRICE_GAP_COIN = "bitcoin"
# The first point of every bitcoin price reply loses its value: the oldest day of the first (365-day)
# fetch is rejected, and so is that day whenever a later run asks for it again. A gap that stays.
PRICE_GAP_FAULT = FaultRule("missing_field", endpoint="market_chart_range", chain=PRICE_GAP_COIN, times=None)
RERUN_BY = "demo: rerun after the outage"
FILL_BY = "demo: fill-gaps"
# The scripted operator of the demo: its reruns and gap fills are audited like a person's, so the Runs
# page's audit log has something to show.
DEMO_ACTOR = Actor(name="demo scenario", via="cli")
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DemoStep:
    """One step: when (seconds from the start at speed 1), what, where to look, and the method doing it."""

    offset: float
    name: str
    look: str
    action: str  # the name of a `DemoScenario` method taking the stop event and returning an outcome line


STEPS: tuple[DemoStep, ...] = (
    DemoStep(
        0,
        "bad price point",
        "Ingestion runs: bitcoin price runs end partial, one malformed point rejected; "
        "Coverage & quality: bitcoin misses that day's price",
        "arm_price_gap",
    ),
    DemoStep(
        45,
        "outage",
        "Overview: an incident opens for blockchair/blocks/dogecoin after its next blocks run; "
        "Incidents: its FIRING alert as delivered to the demo webhook sink",
        "start_outage",
    ),
    DemoStep(
        105,
        "malformed record",
        "Ingestion runs: the next ethereum transactions run ends partial with 1 record rejected "
        "(open it for the rejected sample and its reason)",
        "send_malformed_record",
    ),
    DemoStep(
        165,
        "reorganisation",
        "Ingestion runs: the next bitcoin blocks run names the reorganised heights; "
        "Blocks & transactions: those heights hold the new hashes",
        "reorganise",
    ),
    DemoStep(
        225,
        "outage ends",
        "Ingestion runs: the failed dogecoin blocks runs are rerun and succeed; "
        "Incidents: the incident resolves by a rerun and its RESOLVED alert is delivered",
        "end_outage",
    ),
    DemoStep(
        270,
        "price gap filled",
        "Coverage & quality: the missing bitcoin price days are found, a fill-gaps backfill is queued "
        "and served, and no day is missing",
        "fill_price_gap",
    ),
)


@dataclass
class StepProgress:
    """What became of one step."""

    index: int  # 1-based
    name: str
    offset: float  # seconds from the start at speed 1
    look: str
    due_in: float  # seconds from the start at this run's speed
    done_at: str | None = None  # ISO time (UTC)
    ok: bool | None = None
    outcome: str | None = None


@dataclass
class DemoFacts:
    """What the steps did, for the caller (the test checks the outcomes against these)."""

    outage_failed_runs: list[int] = field(default_factory=list)
    rerun_requests: list[int] = field(default_factory=list)
    malformed_armed: bool = False
    reorg_chain: str | None = None
    reorg_heights: list[int] = field(default_factory=list)
    missing_price_days: dict[str, int] = field(default_factory=dict)  # per coin, when the gap was found
    fill_requests: list[int] = field(default_factory=list)


class DemoScenario:
    """Plays `STEPS` against a running simulator (through its control API) and the product's database."""

    def __init__(
        self,
        control: SimulatorControl,
        db: DatabaseService,
        settings: Settings,
        *,
        speed: float = 1.0,
        progress_path: str | Path | None = None,
        steps: tuple[DemoStep, ...] = STEPS,
    ) -> None:
        if not speed > 0:
            msg = f"speed must be > 0, not {speed!r}"
            raise ValueError(msg)
        self.control = control
        self.db = db
        self.settings = settings
        self.speed = speed
        self.steps = steps
        self.progress_path = Path(progress_path) if progress_path is not None else None
        self.facts = DemoFacts()
        self.started_at: str | None = None
        self.finished = False
        self._lock = threading.Lock()
        self._progress = [
            StepProgress(i, s.name, s.offset, s.look, s.offset / speed) for i, s in enumerate(steps, 1)
        ]
        self._thread: threading.Thread | None = None

    @classmethod
    def connect(
        cls,
        sim_url: str,
        settings: Settings,
        *,
        speed: float = 1.0,
        progress_path: str | Path | None = None,
    ) -> DemoScenario:
        """The scenario of a simulator at `sim_url`, on the database of `settings` (the scheduler's)."""
        db = DatabaseService(settings=settings)
        return cls(SimulatorControl(sim_url), db, settings, speed=speed, progress_path=progress_path)

    def close(self) -> None:
        """Release the database connections (after the run has stopped)."""
        self.db.dispose()

    # ------------------------------------------------------------------ running

    def prepare(self) -> None:
        """Perform the steps due at 0 now (call it before the scheduler starts); never raises."""
        for index, step in enumerate(self.steps):
            if step.offset <= 0 and self._progress[index].done_at is None:
                self._perform(index, step, threading.Event())

    def run(self, stop_event: threading.Event) -> None:
        """Perform each step once its time has come, until the last one or until `stop_event` is set."""
        began = time.monotonic()
        with self._lock:
            self.started_at = utcnow().isoformat(timespec="seconds")
        self._publish()
        logger.info(
            "demo scenario: %s steps over %s (speed %g)",
            len(self.steps),
            _clock(self.steps[-1].offset / self.speed if self.steps else 0),
            self.speed,
        )
        for index, step in enumerate(self.steps):
            if self._progress[index].ok:
                continue  # prepared before the start (one that failed is tried again)
            wait = step.offset / self.speed - (time.monotonic() - began)
            if (wait > 0 and stop_event.wait(wait)) or stop_event.is_set():
                return
            self._perform(index, step, stop_event)
        with self._lock:
            self.finished = True
        self._publish()

    def start(self, stop_event: threading.Event) -> threading.Thread:
        """Run in a daemon thread (the launcher's); returns it."""
        self._thread = threading.Thread(target=self.run, args=(stop_event,), name="demo", daemon=True)
        self._thread.start()
        return self._thread

    def _perform(self, index: int, step: DemoStep, stop_event: threading.Event) -> None:
        try:
            action: Callable[[threading.Event], str] = getattr(self, step.action)
            outcome, ok = action(stop_event), True
        except Exception as exc:  # noqa: BLE001 - a demo step must never take the demo (or `up`) down
            first_line = (str(exc).splitlines() or [""])[0][:300]
            outcome, ok = f"failed: {type(exc).__name__}: {first_line}", False
        with self._lock:
            entry = self._progress[index]
            entry.done_at, entry.ok, entry.outcome = utcnow().isoformat(timespec="seconds"), ok, outcome
        line = "demo step %s of %s (%s): %s"
        (logger.info if ok else logger.warning)(line, index + 1, len(self.steps), step.name, outcome)
        self._publish()

    # ------------------------------------------------------------------ progress

    def progress(self) -> list[StepProgress]:
        """A copy of every step's progress, in order."""
        with self._lock:
            return [StepProgress(**asdict(p)) for p in self._progress]

    def done(self) -> list[tuple[str, str]]:
        """(step name, done at) of the steps performed so far."""
        return [(p.name, p.done_at) for p in self.progress() if p.done_at is not None]

    def snapshot(self) -> dict[str, Any]:
        """The progress as one JSON-friendly document (what the progress file holds)."""
        with self._lock:
            return {
                "started_at": self.started_at,
                "speed": self.speed,
                "finished": self.finished,
                "steps": [asdict(p) for p in self._progress],
            }

    def _publish(self) -> None:
        """Write the progress file atomically (the dashboard may read it at any moment)."""
        if self.progress_path is None:
            return
        try:
            partial = self.progress_path.with_suffix(".tmp")
            partial.write_text(json.dumps(self.snapshot()))
            os.replace(partial, self.progress_path)
        except OSError as exc:
            logger.warning("demo progress not written to %s: %s", self.progress_path, exc)

    # ------------------------------------------------------------------ the steps

    def arm_price_gap(self, _stop: threading.Event) -> str:
        """Step 1: the source sends one bitcoin price point malformed, for as long as the gap should last."""
        added = self._ensure_fault(PRICE_GAP_FAULT)
        what = "armed" if added else "already armed"
        return f"{what}: the first point of every {PRICE_GAP_COIN} price reply is malformed (rejected)"

    def start_outage(self, _stop: threading.Event) -> str:
        """Step 2: every dogecoin blocks request fails with 503 until step 5."""
        added = self._ensure_fault(OUTAGE_FAULT)
        what = "started" if added else "already on"
        return f"outage {what}: Blockchair /{OUTAGE_CHAIN}/blocks answers 503; the next blocks run fails"

    def send_malformed_record(self, _stop: threading.Event) -> str:
        """Step 3: one transaction of the next ethereum transactions reply is malformed."""
        added = self._ensure_fault(MALFORMED_FAULT)
        self.facts.malformed_armed = True
        what = "armed" if added else "already armed"
        return f"{what}: one transaction of the next {MALFORMED_CHAIN} transactions reply has a bad fee"

    def reorganise(self, _stop: threading.Event) -> str:
        """Step 4: replace the newest blocks of the chain at the source; the next blocks run repairs them."""
        if self.facts.reorg_heights:
            return f"already done: {REORG_CHAIN} heights {_span(self.facts.reorg_heights)}"
        depth = min(REORG_BLOCKS, self.settings.REORG_DEPTH)
        if depth < 1:
            return "skipped: REORG_DEPTH is 0, so no run would re-read a reorganised block"
        self.control.reorg(REORG_CHAIN, depth)
        tip, replaced = self.control.stats()["reorgs"][REORG_CHAIN][-1]
        self.facts.reorg_chain = REORG_CHAIN
        self.facts.reorg_heights = list(range(int(tip) - int(replaced) + 1, int(tip) + 1))
        stored = self.db.max_block_height(self._symbol(REORG_CHAIN))
        return (
            f"{REORG_CHAIN} heights {_span(self.facts.reorg_heights)} replaced at the source "
            f"(stored top: {stored}); the next blocks run re-reads the newest {self.settings.REORG_DEPTH}"
        )

    def end_outage(self, stop_event: threading.Event) -> str:
        """Step 5: end the outage right after a blocks run of the unit, then rerun its failed runs.

        Right after a scheduled run, the next one is a whole interval away, so the reruns (served within
        seconds) are what makes the failures good, as when a person reruns them, rather than the next
        scheduled run.
        """
        waited = self._wait_for_next_unit_run(stop_event)
        self._remove_fault(OUTAGE_FAULT)
        failed = [
            run
            for run in self.db.unresolved_failures()
            if (run.source, run.data_type, run.coin) == ("blockchair", "blocks", OUTAGE_CHAIN)
        ]
        requests = [self.db.request_rerun(run.id, RERUN_BY, actor=DEMO_ACTOR) for run in failed]
        self.facts.outage_failed_runs = sorted({*self.facts.outage_failed_runs, *(r.id for r in failed)})
        self.facts.rerun_requests = sorted({*self.facts.rerun_requests, *(r.id for r in requests)})
        after = "right after a dogecoin blocks run" if waited else "(no blocks run ended in time)"
        if not failed:
            return f"outage over {after}; no failed run to rerun"
        runs = ", ".join(f"#{run.id}" for run in failed)
        return f"outage over {after}; rerun queued for failed run(s) {runs}"

    def fill_price_gap(self, _stop: threading.Event) -> str:
        """Step 6: the source is fixed; find the missing price days and queue the fill-gaps price slices."""
        self._remove_fault(PRICE_GAP_FAULT)
        start, end = coverage_window(self.settings)
        missing: dict[str, int] = {}
        gapped: list[CoinMetadataData] = []
        for coin in self.db.get_coins(active_only=True):
            if not coin.coingecko_id:
                continue
            days = sum(r.days for r in price_coverage(self.db, self.settings, coin, start, end).gaps)
            if days:
                missing[coin.coingecko_id] = days
                gapped.append(coin)
        self.facts.missing_price_days = missing
        if not gapped:
            return f"no price day missing in {start}..{end}: nothing to fill"
        plan = plan_fill(self.db, self.settings, gapped)
        # The plan of `fill-gaps --coins <those coins>`, its price slices: block and transaction slices near
        # the tip belong to the regular jobs, and the story of this step is the price gap.
        prices = plan.model_copy(update={"slices": [s for s in plan.slices if s.data_type == "prices"]})
        queued = queue_plan(self.db, prices, FILL_BY, actor=DEMO_ACTOR)
        self.facts.fill_requests = sorted({*self.facts.fill_requests, *(r.id for r in queued)})
        found = ", ".join(f"{coin} {days} day(s)" for coin, days in missing.items())
        return f"missing prices found ({found}); queued {len(queued)} backfill request(s)"

    # ------------------------------------------------------------------ helpers

    def _faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.control.stats()["faults"]
        return faults

    def _ensure_fault(self, rule: FaultRule) -> bool:
        """Arm `rule` unless the same rule is armed already (fired or not); True when it was added."""
        if any(_same(armed, rule) for armed in self._faults()):
            return False
        self.control.add_fault(rule)
        return True

    def _remove_fault(self, rule: FaultRule) -> None:
        """Disarm `rule`, keeping every other rule with what it has left to do.

        The control API can only clear every rule, so the others are armed again, their counters carried
        over (a one-shot rule that fired stays spent).
        """
        faults = self._faults()
        if not any(_same(armed, rule) for armed in faults):
            return
        keep: list[FaultRule | dict[str, Any]] = []
        for armed in faults:
            times, fired, seen = armed["times"], armed["fired"], armed["seen"]
            if _same(armed, rule) or (times is not None and fired >= times):
                continue
            fields = {k: v for k, v in armed.items() if k not in ("seen", "fired")}
            fields["times"] = None if times is None else times - fired
            fields["after"] = max(int(armed["after"]) - seen, 0)
            keep.append(FaultRule.from_dict(fields))
        self.control.clear_faults()
        if keep:
            self.control.add_fault(keep)

    def _unit_runs(self) -> list[DataIngestionLogData]:
        """The newest scheduled blocks runs of the outage unit, newest first."""
        return [
            run
            for run in self.db.get_ingestion_logs(source="blockchair", limit=200)
            if run.data_type == "blocks" and run.coin == OUTAGE_CHAIN and run.trigger == "schedule"
        ]

    def _wait_for_next_unit_run(self, stop_event: threading.Event) -> bool:
        """Wait until a scheduled blocks run of the outage unit that started after now has ended."""
        runs = self._unit_runs()
        newest = runs[0].id if runs else 0
        interval = self.settings.BLOCKS_INTERVAL_MINUTES * 60
        deadline = time.monotonic() + 2 * interval + self.settings.HTTP_MAX_TOTAL_WAIT_SECONDS
        while time.monotonic() < deadline:
            if any(r.id > newest and r.status != IngestionStatus.RUNNING for r in self._unit_runs()):
                return True
            if stop_event.wait(POLL_SECONDS):
                return False
        return False

    def _symbol(self, chain: str) -> str:
        for coin in self.db.get_coins():
            if coin.blockchair_chain == chain:
                return coin.symbol
        msg = f"no coin with the Blockchair chain {chain!r}"
        raise LookupError(msg)


# ---------------------------------------------------------------------------------------------- reading


def read_demo_progress(path: str | Path | None) -> dict[str, Any] | None:
    """The progress a running demo publishes (`DemoScenario(progress_path=...)`); None when there is none."""
    if not path:
        return None
    try:
        progress: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return progress


def describe_progress(progress: dict[str, Any]) -> str:
    """One line for the dashboard, e.g. "Demo: step 3 of 6 done — malformed record; next: reorganisation at
    2:45"."""
    steps: list[dict[str, Any]] = progress.get("steps") or []
    done = [s for s in steps if s.get("done_at")]
    if not steps:
        return "Demo: no steps"
    if len(done) == len(steps):
        failed = sum(1 for s in done if s.get("ok") is False)
        trouble = f" ({failed} failed: see the log)" if failed else ""
        return f"Demo: all {len(steps)} steps done{trouble} — last: {done[-1]['name']}"
    upcoming = steps[len(done)]
    ahead = f"next: {upcoming['name']} at {_clock(float(upcoming['due_in']))}"
    if not done:
        return f"Demo: step 0 of {len(steps)} — {ahead}"
    return f"Demo: step {len(done)} of {len(steps)} done — {done[-1]['name']}; {ahead}"


def _same(armed: dict[str, Any], rule: FaultRule) -> bool:
    return (armed["kind"], armed["endpoint"], armed["chain"]) == (rule.kind, rule.endpoint, rule.chain)


def _span(heights: list[int]) -> str:
    return f"{heights[0]}..{heights[-1]}" if len(heights) > 1 else str(heights[0])


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
