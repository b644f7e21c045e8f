"""The fault matrix: every injectable fault against every ingestion unit, with what each cell must show.

Shared by `tests/reliability/test_fault_matrix.py` (one test per cell) and
`benchmarks/reliability_report.py` (prints the table), so the two cannot drift.

A cell runs one unit into a fresh database with one fault armed in the simulator, then checks:

- the run's status and error class (transient faults armed once are retried and the run succeeds;
  armed for good they fail the run as RetriableSourceError/RateLimitedError; a truncated body is a
  ResponseFormatError and is not retried; a damaged record is rejected and the run is `partial`; an
  empty `data` is `partial`, never `success`; a rejected key is an AuthError after one request);
- no partial batch: after a failure the stored rows are exactly the pages committed before the fault,
  whole pages only; nothing valid was dropped (a run with one rejected record stores all the others);
- every stored row equals the simulator's truth, and no row appears under two keys;
- the run's counts add up (rows inserted = rows the database gained; nothing "updated" by a replay);
- a rerun of the run (faults cleared) is its child, succeeds, and completes the slice: rows lost = 0.

Expected rows come from the simulator (`expected_block`, `expected_transactions`,
`expected_daily_prices`; watched addresses from the simulator's unfaulted address dashboard).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, select

from pipeline.config import Settings, load_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import PAGE_SIZE, BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.units import IngestionResult
from pipeline.models import (
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    DataIngestionLog,
    MarketPrice,
)
from pipeline.ranges import day_windows
from pipeline.simulator import FaultRule, Simulator, SimulatorConfig

# Fast settings: a 1 s client timeout against a 3 s server delay, two attempts, tiny backoff.
HTTP_TIMEOUT_SECONDS = 1
HTTP_MAX_ATTEMPTS = 2
TIMEOUT_DELAY = 3
RETRY_AFTER = 1
BLOCKS_DEPTH = 350  # a probe for the tip, then 4 pages of blocks (100, 100, 100, 50)
TX_BLOCKS = 50  # transactions of 50 dogecoin blocks: 375 rows, 4 pages
PRICE_DAYS = 400  # two market_chart/range windows (365 + 35 days); the pro plan serves them
ETH_WATCH = [
    "0x00000000219ab540356cbb839cbe05303d7705fa",
    "0xde0b295669a9fd93d5f28d9ec85e40f4cb697bae",
    "0xbe0eb53f46cd790cd13851d5eff43d12404d33e8",
]


def simulator() -> Simulator:
    """The matrix's simulator (not started): a fixed tip, the pro plan (more than 365 days), no keys."""
    return Simulator(SimulatorConfig(tip_growth=False, coingecko_plan="pro"))


def matrix_settings(database_url: str, sim: Simulator, **overrides: object) -> Settings:
    """Settings of every cell: the simulator, fast timeouts and retries, the units' slices."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "BLOCKCHAIR_BASE_URL": sim.blockchair_url,
        "COINGECKO_BASE_URL": sim.coingecko_url,
        "COINGECKO_API_PLAN": "pro",
        "COINGECKO_API_KEY": "matrix-key",  # the pro plan needs one; the simulator checks none
        "HTTP_TIMEOUT_SECONDS": HTTP_TIMEOUT_SECONDS,
        "HTTP_MAX_ATTEMPTS": HTTP_MAX_ATTEMPTS,
        "HTTP_BACKOFF_BASE_SECONDS": 0.05,
        "HTTP_MAX_TOTAL_WAIT_SECONDS": 5,
        "BLOCKCHAIR_RATE_LIMIT_PER_MINUTE": 100_000,
        "COINGECKO_RATE_LIMIT_PER_MINUTE": 100_000,
        "BLOCKS_INITIAL_DEPTH": BLOCKS_DEPTH,
        "WATCH_ADDRESSES": {"ethereum": ETH_WATCH},
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


# ------------------------------------------------------------------------------------------------ faults


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: a simulator fault, how often it fires, and what the run must end as."""

    name: str
    kind: str
    times: int | None
    expect: str  # success | partial | failed
    error_class: str | None = None
    rejects: int | None = None  # records the run must reject
    where: str = "mid"  # mid: after a committed page; data: the first data page; first: the first request

    @property
    def persistent(self) -> bool:
        """Armed for every matching request (times=None)."""
        return self.times is None

    @property
    def transient(self) -> bool:
        """A fault the client retries."""
        return self.kind in TRANSIENT

    def rule(self, unit: Unit) -> FaultRule:
        """The simulator rule that injects this fault into `unit`'s requests."""
        after = {"mid": unit.mid, "data": unit.probe, "first": 0}[self.where]
        return FaultRule(
            self.kind,
            endpoint=unit.endpoint,
            times=self.times,
            after=after,
            retry_after=RETRY_AFTER,
            delay=TIMEOUT_DELAY,
        )

    def fault_index(self, unit: Unit) -> int:
        """The index (0-based) of the first request that gets the fault."""
        return self.rule(unit).after


TRANSIENT = {
    "429": "RateLimitedError",
    "500": "RetriableSourceError",
    "503": "RetriableSourceError",
    "timeout": "RetriableSourceError",
    "reset": "RetriableSourceError",
    "html": "RetriableSourceError",  # a 502 HTML error page from a proxy
}


def _faults() -> list[Fault]:
    faults = []
    for kind, error_class in TRANSIENT.items():
        faults.append(Fault(f"{kind} once", kind, 1, "success"))
        faults.append(Fault(f"{kind} always", kind, None, "failed", error_class))
    faults += [
        Fault("malformed_json", "malformed_json", 1, "failed", "ResponseFormatError"),
        Fault("missing_field", "missing_field", 1, "partial", rejects=1, where="data"),
        Fault("wrong_type", "wrong_type", 1, "partial", rejects=1, where="data"),
        Fault("empty_data", "empty_data", 1, "partial", where="data"),
        Fault("401 key", "401", None, "failed", "AuthError", where="first"),
        Fault("402 key", "402", None, "failed", "AuthError", where="first"),
    ]
    return faults


FAULTS: list[Fault] = _faults()
FAULTS_BY_NAME = {f.name: f for f in FAULTS}


# ------------------------------------------------------------------------------------------------ units


@dataclass
class Context:
    """What a unit works with in one cell."""

    sim: Simulator
    settings: Settings
    db: DatabaseService
    blockchair: BlockchairIngestor
    coingecko: CoinGeckoIngestor
    today: date

    def rows(self, stmt: Any) -> list[Any]:
        """Run a read query."""
        with self.db.engine.connect() as conn:
            return list(conn.execute(stmt))


Key = Any
Row = tuple


class Unit:
    """One ingestion unit: what it asks for, how its requests are paged, what the truth is."""

    name = ""
    endpoint = ""  # FaultRule endpoint of its data requests
    probe = 0  # requests before the first data page (the blocks' tip probe)
    mid = 1  # the request a mid-run fault hits: after at least one committed page
    snapshot = False  # rows are snapshots whose USD values move with the price: a re-fetch may update them

    def prepare(self, ctx: Context) -> None:
        """Store what the unit needs before it runs (nothing by default)."""

    def run(self, ctx: Context) -> IngestionResult:
        """Run the unit once."""
        raise NotImplementedError

    def truth(self, ctx: Context) -> dict[Key, Row]:
        """Every row the slice holds at the source, by key."""
        raise NotImplementedError

    def pages(self, ctx: Context) -> list[list[Key]]:
        """The keys of each request's page, in request order (the unit of commit)."""
        raise NotImplementedError

    def stored(self, ctx: Context) -> dict[Key, Row]:
        """The unit's rows in the database, comparable with `truth`."""
        raise NotImplementedError

    def duplicates(self, ctx: Context) -> int:
        """Rows that repeat another row under a different key (0 when the table is clean)."""
        raise NotImplementedError


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _chunks(keys: list[Key], size: int) -> list[list[Key]]:
    return [keys[i : i + size] for i in range(0, len(keys), size)]


class Blocks(Unit):
    """The first block run of bitcoin: the newest BLOCKS_DEPTH blocks, paged by 100 after a tip probe."""

    name = "blocks"
    endpoint = "blocks"
    probe = 1
    mid = 2
    chain, symbol = "bitcoin", "BTC"

    def heights(self, ctx: Context) -> list[int]:
        tip = ctx.sim.tip(self.chain)
        return list(range(tip - BLOCKS_DEPTH + 1, tip + 1))

    def run(self, ctx: Context) -> IngestionResult:
        return ctx.blockchair.ingest_blocks(ctx.blockchair.coin(self.chain))

    def truth(self, ctx: Context) -> dict[Key, Row]:
        out = {}
        for height in self.heights(ctx):
            b = ctx.sim.expected_block(self.chain, height)
            out[height] = (b["hash"], b["time"], b["transaction_count"], int(b["fee_total"]))
        return out

    def pages(self, ctx: Context) -> list[list[Key]]:
        return _chunks(self.heights(ctx), PAGE_SIZE)

    def stored(self, ctx: Context) -> dict[Key, Row]:
        b = BlockchainBlock
        stmt = select(b.block_id, b.hash, b.time, b.transaction_count, b.fee_total).where(
            b.coin_symbol == self.symbol
        )
        return {r[0]: (r[1], _time_text(r[2]), r[3], int(r[4])) for r in ctx.rows(stmt)}

    def duplicates(self, ctx: Context) -> int:
        b = BlockchainBlock
        stmt = select(func.count(), func.count(func.distinct(b.hash))).where(b.coin_symbol == self.symbol)
        total, hashes = ctx.rows(stmt)[0]
        return total - hashes  # one hash at two heights


class Transactions(Unit):
    """Transactions of TX_BLOCKS stored dogecoin blocks (an explicit height range), 100 per page."""

    name = "transactions"
    endpoint = "transactions"
    chain, symbol = "dogecoin", "DOGE"

    def span(self, ctx: Context) -> tuple[int, int]:
        tip = ctx.sim.tip(self.chain)
        return tip - TX_BLOCKS + 1, tip

    def prepare(self, ctx: Context) -> None:
        low, high = self.span(ctx)
        coin = ctx.blockchair.coin(self.chain)
        result = ctx.blockchair.ingest_blocks(coin, start_height=low, end_height=high)
        if result.status != "success":
            msg = f"could not store the blocks the transactions belong to: {result.error_message}"
            raise RuntimeError(msg)

    def run(self, ctx: Context) -> IngestionResult:
        low, high = self.span(ctx)
        coin = ctx.blockchair.coin(self.chain)
        result = ctx.blockchair.ingest_transactions(coin, start_height=low, end_height=high)
        assert result is not None
        return result

    def _expected(self, ctx: Context) -> list[dict]:
        low, high = self.span(ctx)
        return [tx for h in range(low, high + 1) for tx in ctx.sim.expected_transactions(self.chain, h)]

    def truth(self, ctx: Context) -> dict[Key, Row]:
        return {tx["hash"]: (tx["block_id"], tx["id"], int(tx["fee"])) for tx in self._expected(ctx)}

    def pages(self, ctx: Context) -> list[list[Key]]:
        ordered = sorted(self._expected(ctx), key=lambda tx: tx["id"])
        return _chunks([tx["hash"] for tx in ordered], PAGE_SIZE)

    def stored(self, ctx: Context) -> dict[Key, Row]:
        t = BlockchainTransaction
        stmt = select(t.tx_hash, t.block_id, t.source_id, t.fee).where(t.coin_symbol == self.symbol)
        return {r[0]: (r[1], r[2], int(r[3])) for r in ctx.rows(stmt)}

    def duplicates(self, ctx: Context) -> int:
        t = BlockchainTransaction
        stmt = select(
            func.count(),
            func.count(func.distinct(t.source_id)),
            func.count(func.distinct(func.lower(t.tx_hash))),
        ).where(t.coin_symbol == self.symbol)
        total, ids, hashes = ctx.rows(stmt)[0]
        return (total - ids) + (total - hashes)  # one source transaction under two keys


class Addresses(Unit):
    """Three watched Ethereum addresses: one dashboard request per address."""

    name = "addresses"
    endpoint = "address"
    snapshot = True
    chain, symbol = "ethereum", "ETH"

    def run(self, ctx: Context) -> IngestionResult:
        result = ctx.blockchair.ingest_addresses(ctx.blockchair.coin(self.chain))
        assert result is not None
        return result

    def truth(self, ctx: Context) -> dict[Key, Row]:
        # The simulator's own dashboard, asked directly (call before arming a fault).
        out = {}
        for address in ETH_WATCH:
            url = f"{ctx.sim.blockchair_url}/{self.chain}/dashboards/address/{address}"
            info = requests.get(url, timeout=10).json()["data"][address]["address"]
            out[address] = (int(info["balance"]), info["transaction_count"])
        return out

    def pages(self, ctx: Context) -> list[list[Key]]:
        return [[a] for a in ETH_WATCH]

    def stored(self, ctx: Context) -> dict[Key, Row]:
        a = BlockchainAddress
        stmt = select(a.address, a.balance, a.transaction_count).where(a.coin_symbol == self.symbol)
        return {r[0].lower(): (int(r[1]), r[2]) for r in ctx.rows(stmt)}

    def duplicates(self, ctx: Context) -> int:
        a = BlockchainAddress
        stmt = select(func.count(), func.count(func.distinct(func.lower(a.address)))).where(
            a.coin_symbol == self.symbol
        )
        total, distinct = ctx.rows(stmt)[0]
        return total - distinct  # one account stored under two spellings


def _price_rows(ctx: Context, coin_id: str) -> dict[Key, Row]:
    m = MarketPrice
    stmt = select(m.price_date, m.price_usd).where(m.coin_id == coin_id)
    return {_as_date(r[0]): (round(float(r[1]), 6),) for r in ctx.rows(stmt)}


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _price_truth(ctx: Context, coin_id: str, start: date, end: date) -> dict[Key, Row]:
    return {
        d: (round(price, 6),) for d, price, _cap, _vol in ctx.sim.expected_daily_prices(coin_id, start, end)
    }


def _price_duplicates(ctx: Context, coin_id: str) -> int:
    m = MarketPrice
    stmt = select(func.count(), func.count(func.distinct(m.price_date))).where(m.coin_id == coin_id)
    total, days = ctx.rows(stmt)[0]
    return total - days


class PricesByRange(Unit):
    """PRICE_DAYS daily bitcoin prices up to yesterday: two market_chart/range windows."""

    name = "prices_range"
    endpoint = "market_chart_range"
    coin_id = "bitcoin"

    def span(self, ctx: Context) -> tuple[date, date]:
        end = ctx.today - timedelta(days=1)
        return end - timedelta(days=PRICE_DAYS - 1), end

    def run(self, ctx: Context) -> IngestionResult:
        start, end = self.span(ctx)
        return ctx.coingecko.ingest_price_range(ctx.coingecko.coin(self.coin_id), start, end)

    def truth(self, ctx: Context) -> dict[Key, Row]:
        return _price_truth(ctx, self.coin_id, *self.span(ctx))

    def pages(self, ctx: Context) -> list[list[Key]]:
        start, end = self.span(ctx)
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        return [[d for d in days if a <= d <= b] for a, b in day_windows(days)]

    def stored(self, ctx: Context) -> dict[Key, Row]:
        return _price_rows(ctx, self.coin_id)

    def duplicates(self, ctx: Context) -> int:
        return _price_duplicates(ctx, self.coin_id)


class PriceByDate(Unit):
    """One ethereum coin-day through /coins/{id}/history."""

    name = "price_by_date"
    endpoint = "history"
    mid = 0  # a single request
    coin_id = "ethereum"

    def day(self, ctx: Context) -> date:
        return ctx.today - timedelta(days=3)

    def run(self, ctx: Context) -> IngestionResult:
        return ctx.coingecko.ingest_price_for_date(ctx.coingecko.coin(self.coin_id), self.day(ctx))

    def truth(self, ctx: Context) -> dict[Key, Row]:
        return _price_truth(ctx, self.coin_id, self.day(ctx), self.day(ctx))

    def pages(self, ctx: Context) -> list[list[Key]]:
        return [[self.day(ctx)]]

    def stored(self, ctx: Context) -> dict[Key, Row]:
        return _price_rows(ctx, self.coin_id)

    def duplicates(self, ctx: Context) -> int:
        return _price_duplicates(ctx, self.coin_id)


UNITS: list[Unit] = [PricesByRange(), PriceByDate(), Blocks(), Transactions(), Addresses()]
UNITS_BY_NAME = {u.name: u for u in UNITS}

# The PostgreSQL subset: every fault class on the two most-paged units, plus the data faults everywhere.
PG_SUBSET = [
    (f.name, u.name)
    for f in FAULTS
    for u in UNITS
    if u.name in ("blocks", "prices_range") or f.kind in ("missing_field", "wrong_type", "empty_data")
]


@dataclass(frozen=True)
class Bug:
    """A known defect: why, and the violations (substrings) it explains."""

    reason: str
    patterns: tuple[str, ...]

    def explains(self, problem: str) -> bool:
        """Whether this bug accounts for the violation."""
        return any(p in problem for p in self.patterns)


# Cells that show a bug; their tests are xfail(strict=True, raises=support.KnownBugError).
KNOWN_BUGS: dict[tuple[str, str], Bug] = {}


def verdict(cell: Cell) -> tuple[list[str], list[str]]:
    """(violations a known bug explains, violations nothing explains)."""
    bug = KNOWN_BUGS.get((cell.fault, cell.unit))
    known = [p for p in cell.problems if bug is not None and bug.explains(p)]
    return known, [p for p in cell.problems if p not in known]


# ------------------------------------------------------------------------------------------------ a cell

RECORDED: list[Cell] = []  # cells run in this process (pytest prints them at the end of the session)


@dataclass
class Cell:
    """The outcome of one fault x unit cell."""

    fault: str
    unit: str
    dialect: str
    status: str = "-"
    error_class: str | None = None
    requests: int = 0
    retries: int = 0
    rejected: int = 0
    expected: int = 0
    stored: int = 0  # rows after the faulted run
    final: int = 0  # rows after the rerun (or the run, when it succeeded)
    duplicates: int = 0
    rerun: str = "-"
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Rows of the slice still missing at the end (must be 0)."""
        return self.expected - self.final

    def check(self, ok: bool, problem: str) -> None:
        """Record a violated expectation."""
        if not ok:
            self.problems.append(problem)


def _whole_pages(stored: set[Key], pages: list[list[Key]]) -> bool:
    """The stored keys are a union of whole pages (no page half-written)."""
    for page in pages:
        held = stored & set(page)
        if held and len(held) != len(page):
            return False
    return stored <= {k for page in pages for k in page}


def _runs_running(db: DatabaseService) -> int:
    with db.engine.connect() as conn:
        return conn.scalar(
            select(func.count()).select_from(DataIngestionLog).where(DataIngestionLog.status == "running")
        )


def run_cell(sim: Simulator, database_url: str, fault: Fault, unit: Unit, dialect: str) -> Cell:
    """Run one cell against a started simulator and an empty database URL; never raises on a finding."""
    started = datetime.now(UTC)
    cell = Cell(fault.name, unit.name, dialect)
    sim.clear_faults()
    settings = matrix_settings(database_url, sim)
    db = DatabaseService(settings=settings)
    db.create_tables()
    blockchair = BlockchairIngestor(settings=settings, db=db)
    coingecko = CoinGeckoIngestor(settings=settings, db=db)
    ctx = Context(sim, settings, db, blockchair, coingecko, datetime.now(UTC).date())
    try:
        _run_cell(ctx, cell, fault, unit)
    finally:
        sim.clear_faults()
        blockchair.client.close()
        coingecko.client.close()
        db.dispose()
        cell.seconds = (datetime.now(UTC) - started).total_seconds()
    return cell


def _run_cell(ctx: Context, cell: Cell, fault: Fault, unit: Unit) -> None:
    unit.prepare(ctx)
    truth, pages = unit.truth(ctx), unit.pages(ctx)
    cell.expected = len(truth)
    ctx.sim.reset_counts()

    ctx.sim.add_fault(fault.rule(unit))
    result = unit.run(ctx)
    ctx.sim.clear_faults()
    stored = unit.stored(ctx)
    cell.status, cell.error_class = result.status.value, result.error_class
    cell.requests, cell.retries, cell.rejected = result.requests_made, result.retries, result.records_rejected
    cell.stored, cell.final = len(stored), len(stored)
    cell.duplicates = unit.duplicates(ctx)

    # Status and error class.
    cell.check(
        cell.status == fault.expect,
        f"status {cell.status} ({result.error_class}: {result.error_message}), expected {fault.expect}",
    )
    if fault.expect == "failed":
        cell.check(
            cell.error_class == fault.error_class, f"error class {cell.error_class}, not {fault.error_class}"
        )
    elif fault.expect == "partial":
        cell.check(bool(result.error_message), "a partial run without a reason in error_message")
    # Retries: transient faults are retried, the others are not.
    if fault.transient:
        expected_retries = HTTP_MAX_ATTEMPTS - 1 if fault.persistent else fault.times
        cell.check(cell.retries == expected_retries, f"retries={cell.retries}, expected {expected_retries}")
    else:
        cell.check(cell.retries == 0, f"a {fault.kind} fault was retried ({cell.retries} retries)")
    if fault.kind in ("401", "402"):
        cell.check(cell.requests == 1, f"a rejected key cost {cell.requests} requests, expected 1")
    if fault.kind == "malformed_json":
        wanted = fault.fault_index(unit) + 1
        cell.check(cell.requests == wanted, f"{cell.requests} requests, expected {wanted} (no retry)")
    if fault.rejects is not None:
        cell.check(cell.rejected == fault.rejects, f"rejected={cell.rejected}, expected {fault.rejects}")
        cell.check(bool(result.rejected_samples), "no rejected sample kept for the operator")

    # Every stored row is the source's truth; no partial batch; nothing valid dropped.
    wrong = [k for k, row in stored.items() if truth.get(k) != row]
    cell.check(not wrong, f"{len(wrong)} stored rows differ from the source, e.g. {wrong[:3]}")
    held = set(stored)
    if fault.expect == "success":
        cell.check(held == set(truth), f"success but {len(truth) - len(held)} rows missing")
    elif fault.expect == "failed":
        committed = max(fault.fault_index(unit) - unit.probe, 0)
        before = {k for page in pages[:committed] for k in page}
        cell.check(_whole_pages(held, pages), f"a partial batch is stored ({len(held)} rows)")
        cell.check(
            held == before,
            f"{len(held)} rows stored after the failure; the {committed} pages before it hold {len(before)}",
        )
    elif fault.rejects:
        dropped = set(truth) - held
        cell.check(
            len(dropped) == fault.rejects and dropped <= set(pages[0]),
            f"{len(dropped)} rows missing after {fault.rejects} rejected record(s): valid rows were dropped",
        )
    else:  # empty data: the emptied page is missing, whole pages otherwise
        cell.check(_whole_pages(held, pages), f"a partial batch is stored ({len(held)} rows)")
        cell.check(not held & set(pages[0]), "rows stored from a page the source returned empty")

    # The run's counts add up.
    cell.check(
        result.records_inserted == len(stored),
        f"records_inserted={result.records_inserted} but the database gained {len(stored)} rows",
    )
    cell.check(result.records_updated == 0, f"records_updated={result.records_updated} on a fresh database")
    # A rejected record was fetched too (an address the source left out is a reject it never sent).
    counted = result.records_inserted + (result.records_rejected if fault.rejects else 0)
    cell.check(
        result.records_fetched >= counted,
        f"fetched={result.records_fetched} < inserted={result.records_inserted}"
        f" + rejected={result.records_rejected}",
    )
    cell.check(cell.duplicates == 0, f"{cell.duplicates} duplicated rows after the run")

    # A later rerun completes the slice, as the run's child.
    if cell.status != "success":
        replayer = Replayer(ctx.settings, ctx.db, blockchair=ctx.blockchair, coingecko=ctx.coingecko)
        rerun = replayer.replay(ctx.db.get_run(result.id))
        final = unit.stored(ctx)
        cell.final = len(final)
        cell.rerun = "nothing to do" if rerun is None else rerun.status.value
        cell.check(rerun is not None, "the rerun had nothing to do")
        if rerun is not None:
            cell.check(
                rerun.status.value == "success",
                f"rerun {rerun.status.value} ({rerun.error_class}: {rerun.error_message})",
            )
            cell.check(rerun.parent_run_id == result.id, "the rerun is not linked to the run it replays")
            children = [c.id for c in ctx.db.get_child_runs(result.id)]
            cell.check(children == [rerun.id], f"children of the run: {children}, expected [{rerun.id}]")
            cell.check(
                rerun.records_inserted == len(final) - len(stored),
                f"rerun inserted {rerun.records_inserted}, database gained {len(final) - len(stored)}",
            )
            cell.check(
                unit.snapshot or rerun.records_updated == 0,
                f"the rerun updated {rerun.records_updated} unchanged rows",
            )
        wrong = [k for k, row in final.items() if truth.get(k) != row]
        cell.check(not wrong, f"{len(wrong)} rows differ from the source after the rerun")
        cell.duplicates = unit.duplicates(ctx)
        cell.check(cell.duplicates == 0, f"{cell.duplicates} duplicated rows after the rerun")
    cell.check(cell.lost == 0, f"{cell.lost} rows of the slice lost")
    cell.check(_runs_running(ctx.db) == 0, "a run was left `running`")


# ------------------------------------------------------------------------------------------------ tables


COLUMNS = ("fault", "unit", "db", "status", "error class", "retries", "rejected", "expected", "stored",
           "lost", "dup", "rerun", "ok")  # fmt: skip


def cell_row(cell: Cell) -> tuple:
    """One printed row of the matrix."""
    return (
        cell.fault,
        cell.unit,
        cell.dialect,
        cell.status,
        cell.error_class or "-",
        cell.retries,
        cell.rejected,
        cell.expected,
        cell.stored,
        cell.lost,
        cell.duplicates,
        cell.rerun,
        _verdict_label(cell),
    )


def _verdict_label(cell: Cell) -> str:
    known, unknown = verdict(cell)
    if unknown:
        return "FAIL"
    return "BUG" if known else "ok"


def format_table(columns: tuple[str, ...], rows: list[tuple]) -> str:
    """A plain-text table, columns padded to their widest value."""
    cells = [tuple(str(v) for v in row) for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def format_matrix(cells: list[Cell]) -> str:
    """The matrix table plus every violated expectation."""
    order = {f.name: i for i, f in enumerate(FAULTS)}
    units = {u.name: i for i, u in enumerate(UNITS)}
    cells = sorted(cells, key=lambda c: (c.dialect != "sqlite", order.get(c.fault, 99), units.get(c.unit, 9)))
    text_ = format_table(COLUMNS, [cell_row(c) for c in cells])
    lines = []
    for c in cells:
        known, unknown = verdict(c)
        lines += [f"  {c.fault} x {c.unit} ({c.dialect}): {p}" for p in unknown]
        lines += [f"  {c.fault} x {c.unit} ({c.dialect}): known bug: {p}" for p in known]
    if lines:
        text_ += "\n\nviolations:\n" + "\n".join(lines)
    bugs = {KNOWN_BUGS[(c.fault, c.unit)].reason for c in cells if verdict(c)[0]}
    if bugs:
        text_ += "\n\nknown bugs:\n" + "\n".join(f"  - {b}" for b in sorted(bugs))
    return text_


def summary(cells: list[Cell]) -> str:
    """Statuses and error classes over all cells, and the totals that must be zero."""
    counts: dict[tuple[str, str], int] = {}
    for c in cells:
        key = (c.status, c.error_class or "-")
        counts[key] = counts.get(key, 0) + 1
    rows = [(s, e, n) for (s, e), n in sorted(counts.items())]
    table = format_table(("status", "error class", "cells"), rows)
    lost = sum(c.lost for c in cells)
    dup = sum(c.duplicates for c in cells)
    known = sum(1 for c in cells if verdict(c)[0] and not verdict(c)[1])
    bad = sum(1 for c in cells if verdict(c)[1])
    return (
        f"{table}\n\ncells: {len(cells)}  rows lost: {lost}  duplicates: {dup}  "
        f"cells showing a known bug: {known}  cells with unexplained violations: {bad}"
    )


# ------------------------------------------------------------------------------------------------ the run


def run_matrix(
    sim: Simulator,
    url_for: Callable[[], contextlib.AbstractContextManager[str]],
    dialect: str,
    cells: list[tuple[str, str]] | None = None,
    progress: Callable[[Cell], None] | None = None,
) -> list[Cell]:
    """Run the given (fault, unit) cells (default: all), each in a fresh database from `url_for`."""
    wanted = cells or [(f.name, u.name) for f in FAULTS for u in UNITS]
    results = []
    for fault_name, unit_name in wanted:
        with url_for() as url:
            cell = run_cell(sim, url, FAULTS_BY_NAME[fault_name], UNITS_BY_NAME[unit_name], dialect)
        results.append(cell)
        if progress:
            progress(cell)
    return results
