"""Ingestion benchmark: `BlockchairIngestor.ingest_transactions` from the simulator against raw `sqlite3`.

    python benchmarks/ingest.py [--transactions 100000] [--repeat 3] [--orm-rows 5000]

An in-process simulator serves bitcoin with exactly 100 transactions per block and no rate limit, so
N transactions are N/100 blocks (rounded up) and N/100 + 1 requests of `limit=100` (the last page is
empty: the pager only stops on a short page). For every repeat, the blocks of the range are ingested
first into a fresh SQLite file (untimed); then `ingest_transactions(coin, start_height=a, end_height=b)`
is timed end to end: HTTP, JSON, validation, one database transaction per page, run log.

Baselines, in the same run and alternating with the ingestor (the median of each is reported):

- raw `sqlite3.executemany` of the same rows, already in storage form (the ingestor's own pages,
  fetched once in-process, parsed and converted by `UpsertSpec.rows(..., sqlite=True)`, all untimed),
  with the equivalent `INSERT ... ON CONFLICT DO UPDATE` into a fresh migrated database with the same
  pragmas (WAL, synchronous=NORMAL), committing per 100-row page as the ingestor does, and per 5000 rows;
- for context, a per-row ORM loop on a subset, run once: `session.merge(BlockchainTransaction(**fields))`
  and a commit per 100-row page.

Where the time goes: separate timed passes of each stage over the same pages, repeated `--repeat` times
(median), the untimed preparation of a stage (e.g. decoding a body before timing its validation) kept
out of its timer; wall and process-CPU time are both reported (on a shared machine wall time also
counts waiting for a CPU, so CPU time is the steadier of the two):

- simulator: the server's `Service.respond` (building the rows) and `Reply.body` (json.dumps), called
  in-process with the ingestor's request paths;
- `requests.get` of the same URLs (bytes only), and `ApiClient.get_json` of the same requests;
  "HTTP transport" is the first minus the simulator's work; "ApiClient overhead" is the second minus
  the first minus JSON decoding;
- JSON decoding: `json.loads(body, parse_float=Decimal)`, as the client does;
- validation: `parse_transactions` of the decoded payloads;
- database: `insert_transactions` of the parsed records (parsed once, untimed), one `db.transaction()`
  per page, into a fresh file;
- other: the end-to-end time minus all of the above (run log, cursor queries, paging).

The simulator's generation caches are emptied before each pass that makes it generate, so every pass
pays generation as a cold 100,000-row run does (its row cache holds 400 blocks of 100 transactions).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy.orm import Session

from pipeline.config import Settings, load_settings
from pipeline.database import DatabaseService
from pipeline.ingestion.blockchair import PAGE_SIZE, BlockchairIngestor
from pipeline.models import BlockchainTransaction
from pipeline.ranges import utcnow
from pipeline.schemas import BlockchainTransactionData, CoinMetadataData
from pipeline.simulator import Simulator, SimulatorConfig
from pipeline.sources.blockchair import blockchair_client, parse_transactions
from pipeline.store.upsert import UpsertSpec

CHAIN = "bitcoin"
ENDPOINT = f"/{CHAIN}/transactions"
BIG_BATCH = 5000
TX_PER_BLOCK = 100
SPEC = UpsertSpec.for_table(BlockchainTransaction.__table__)


@dataclass(frozen=True)
class Page:
    """One request of the ingestor's transaction pager and the body the simulator answers."""

    params: dict[str, Any]
    path: str  # ENDPOINT + "?" + the encoded query, as requests sends it
    body: bytes


class Clock:
    """Accumulates wall and process-CPU seconds over timed sections (`with clock:`)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    @property
    def both(self) -> tuple[float, float]:
        """(wall, cpu) seconds."""
        return self.wall, self.cpu


@dataclass
class Timings:
    """Seconds per named measurement, one entry per repeat."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float | tuple[float, float]) -> None:
        """Record one repeat of `name`; a (wall, cpu) pair also records `name`_cpu."""
        if isinstance(seconds, tuple):
            seconds, cpu = seconds
            self.runs.setdefault(f"{name}_cpu", []).append(cpu)
        self.runs.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float:
        """The median of `name`'s repeats."""
        return statistics.median(self.runs[name])


# ---------------------------------------------------------------- setup


def make_settings(url: str, sim: Simulator, depth: int) -> Settings:
    """Settings for one database file against the simulator, with no client-side rate limit."""
    return load_settings(
        _env_file=None,
        DATABASE_URL=url,
        BLOCKCHAIR_BASE_URL=sim.blockchair_url,
        BLOCKCHAIR_RATE_LIMIT_PER_MINUTE=1e9,
        BLOCKS_INITIAL_DEPTH=depth,
    )


def fresh_db(url: str, sim: Simulator, depth: int) -> DatabaseService:
    """A new migrated database (coin_metadata seeded by the migration)."""
    db = DatabaseService(settings=make_settings(url, sim, depth))
    db.create_tables()
    return db


def cold_simulator(sim: Simulator) -> None:
    """Empty the simulator's per-block generation caches (numbers and transaction rows)."""
    book = sim._service.book
    for name in ("_numbers", "_txs"):
        cache = getattr(book, name, None)
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()


def quiesce() -> None:
    """Collect garbage before a timed section, so that no run pays for the previous one's."""
    gc.collect()


# ---------------------------------------------------------------- pages and simulator stage


def capture_pages(sim: Simulator, low: int, high: int) -> list[Page]:
    """The ingestor's request sequence for [low, high] and the bodies, built in-process (untimed)."""
    service = sim._service
    pages: list[Page] = []
    after: int | None = None
    while True:
        q = f"block_id({low}..{high})" + (f",id({after + 1}..)" if after is not None else "")
        params = {"q": q, "s": "id(asc)", "limit": PAGE_SIZE}
        path = f"{ENDPOINT}?{urlencode(params)}"
        reply = service.respond("GET", path, {}, b"")
        rows = reply.payload["data"]
        pages.append(Page(params, path, reply.body()))
        ids = [r["id"] for r in rows]
        if len(rows) < PAGE_SIZE or not ids:
            return pages
        after = max(ids)


def simulator_pass(sim: Simulator, pages: list[Page]) -> tuple[Clock, Clock]:
    """The simulator's time building the pages' rows, and encoding them as JSON."""
    service = sim._service
    cold_simulator(sim)
    quiesce()
    build, encode = Clock(), Clock()
    for page in pages:
        with build:
            reply = service.respond("GET", page.path, {}, b"")
        with encode:
            reply.body()
    return build, encode


# ---------------------------------------------------------------- HTTP and client stages


def requests_pass(sim: Simulator, pages: list[Page]) -> Clock:
    """GET every page's bytes with a plain requests.Session (keep-alive)."""
    cold_simulator(sim)
    quiesce()
    clock = Clock()
    with requests.Session() as session, clock:
        for page in pages:
            response = session.get(sim.blockchair_url + page.path, timeout=60)
            _ = response.content
    return clock


def get_json_pass(sim: Simulator, settings: Settings, pages: list[Page]) -> Clock:
    """ApiClient.get_json of every page (the ingestor's client, built from the same settings)."""
    cold_simulator(sim)
    clock = Clock()
    with blockchair_client(settings) as client:
        quiesce()
        with clock:
            for page in pages:
                client.get_json(ENDPOINT, page.params, endpoint=ENDPOINT)
    return clock


# ---------------------------------------------------------------- JSON, validation, database stages


def decode(body: bytes) -> Any:
    """Decode a body the way ApiClient does (floats as Decimal)."""
    return json.loads(body, parse_float=Decimal)


def parse(payload: Any, coin: CoinMetadataData) -> list[BlockchainTransactionData]:
    """The page's validated records, as the ingestor parses them."""
    return parse_transactions(
        payload, coin_symbol=coin.symbol, family=coin.chain_family, now=utcnow()
    ).records


def decode_pass(pages: list[Page]) -> Clock:
    """Decode every body."""
    quiesce()
    clock = Clock()
    with clock:
        for page in pages:
            decode(page.body)
    return clock


def validate_pass(pages: list[Page], coin: CoinMetadataData) -> Clock:
    """parse_transactions over every decoded page (decoding untimed)."""
    quiesce()
    clock = Clock()
    for page in pages:
        payload = decode(page.body)
        with clock:
            parse(payload, coin)
    return clock


def database_pass(
    url: str, sim: Simulator, depth: int, page_records: list[list[BlockchainTransactionData]]
) -> Clock:
    """insert_transactions of each page's parsed records, one transaction per page, into a fresh file."""
    db = fresh_db(url, sim, depth)
    quiesce()
    clock = Clock()
    for records in page_records:
        if not records:
            continue
        with clock, db.transaction() as conn:
            db.insert_transactions(records, conn=conn)
    db.dispose()
    return clock


# ---------------------------------------------------------------- end to end and baselines


@dataclass
class IngestRun:
    """One timed ingest_transactions run."""

    seconds: float
    cpu: float  # process CPU time: the ingestor and the simulator's server thread
    status: str
    inserted: int
    requests: int
    limiter_wait: float
    stored: int


def ingestor_run(url: str, sim: Simulator, depth: int, low: int, high: int) -> IngestRun:
    """Ingest the blocks (untimed), then time ingest_transactions over the same range."""
    db = fresh_db(url, sim, depth)
    ingestor = BlockchairIngestor(settings=db.settings, db=db)
    coin = ingestor.coin(CHAIN)
    ingestor.ingest_blocks(coin, start_height=low, end_height=high)
    cold_simulator(sim)
    quiesce()
    started, cpu = time.perf_counter(), time.process_time()
    result = ingestor.ingest_transactions(coin, start_height=low, end_height=high)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stored = db.get_database_stats().total_transactions
    ingestor.client.close()
    db.dispose()
    if result is None:  # only without an explicit range
        msg = "ingest_transactions did not run"
        raise RuntimeError(msg)
    return IngestRun(
        elapsed,
        cpu,
        result.status.value,
        result.records_inserted,
        result.requests_made,
        result.wait_seconds,
        stored,
    )


def raw_sqlite(
    path: Path, sim: Simulator, depth: int, rows: list[tuple[Any, ...]], every: int
) -> tuple[float, float]:
    """Wall and CPU seconds for sqlite3.executemany of storage-form tuples, committing every `every` rows."""
    fresh_db(f"sqlite:///{path}", sim, depth).dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    statement = SPEC.sqlite_statement(update=True)
    quiesce()
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), every):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(statement, rows[i : i + every])
        conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.close()
    return elapsed, cpu


def orm_loop(
    url: str, sim: Simulator, depth: int, records: list[BlockchainTransactionData]
) -> tuple[float, float]:
    """Wall and CPU seconds for a per-row session.merge loop with a commit per 100-row page."""
    db = fresh_db(url, sim, depth)
    columns = SPEC.columns[: -len(("created_at", "updated_at"))]
    quiesce()
    started, cpu = time.perf_counter(), time.process_time()
    with Session(db.engine) as session:
        for i in range(0, len(records), PAGE_SIZE):
            for record in records[i : i + PAGE_SIZE]:
                session.merge(BlockchainTransaction(**{c: getattr(record, c) for c in columns}))
            session.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    db.dispose()
    return elapsed, cpu


# ---------------------------------------------------------------- report


def comparison_table(t: Timings, n: int, orm_rows: int) -> None:
    """Rows/s of each path and its ratio to both raw baselines, by wall time and by CPU time."""
    raw = {kind: (n / t.median(f"{kind}"), n / t.median(f"{kind}_cpu")) for kind in ("raw_page", "raw_big")}
    print(
        f"{'path':<46} {'seconds':>8} {'rows/s':>9} {'x raw/page':>10} {'x raw/5000':>10}"
        f"   {'cpu s':>7} {'x raw/page':>10} {'x raw/5000':>10}"
    )
    lines = [
        ("sqlite3.executemany, commit per 100 rows", "raw_page", n),
        ("sqlite3.executemany, commit per 5000 rows", "raw_big", n),
        ("ingest_transactions, end to end", "ingest", n),
        (f"ORM session.merge per row ({orm_rows:,} rows, once)", "orm", orm_rows),
    ]
    for label, name, rows in lines:
        wall, cpu = t.median(name), t.median(f"{name}_cpu")
        by_wall, by_cpu = rows / wall, rows / cpu
        print(
            f"{label:<46} {wall:>8.3f} {by_wall:>9,.0f} {by_wall / raw['raw_page'][0]:>10.3f}"
            f" {by_wall / raw['raw_big'][0]:>10.3f}   {cpu:>7.3f} {by_cpu / raw['raw_page'][1]:>10.3f}"
            f" {by_cpu / raw['raw_big'][1]:>10.3f}"
        )

    def per_repeat(name: str) -> str:
        return ", ".join(f"{n / x:,.0f}" for x in t.runs[name])

    print(
        f"rows/s per repeat: raw/page [{per_repeat('raw_page')}]  raw/5000 [{per_repeat('raw_big')}]  "
        f"ingestor [{per_repeat('ingest')}]"
    )


def _stages(t: Timings, suffix: str) -> list[tuple[str, float, str]]:
    """(label, seconds, how) per stage from the pass medians; suffix "" is wall time, "_cpu" CPU time."""

    def m(name: str) -> float:
        return t.median(name + suffix)

    sim = m("sim_build") + m("sim_encode")
    stages = [
        ("simulator: build rows (Service.respond)", m("sim_build"), "in-process pass"),
        ("simulator: encode JSON (Reply.body)", m("sim_encode"), "in-process pass"),
        ("HTTP transport (requests + http.server)", m("requests") - sim, "requests.get - simulator"),
        (
            "ApiClient overhead (retry, limiter, checks)",
            m("get_json") - m("requests") - m("decode"),
            "get_json - requests.get - decode",
        ),
        ("JSON decode (json.loads, Decimal floats)", m("decode"), "pass"),
        ("validation (parse_transactions)", m("validate"), "pass"),
        ("database (insert_transactions, txn/page)", m("database"), "pass"),
    ]
    accounted = sum(seconds for _, seconds, _ in stages)
    stages.append(("other (run log, cursors, paging; noise)", m("ingest") - accounted, "end to end - above"))
    return stages


def breakdown_table(t: Timings, n: int, pages: int, repeat: int) -> None:
    """Seconds and share of the end-to-end time per stage, from the separate passes (wall and CPU)."""
    total, total_cpu = t.median("ingest"), t.median("ingest_cpu")
    print(f"where ingest_transactions' time goes ({pages:,} pages; median of {repeat} passes per stage)")
    print(f"{'stage':<46} {'seconds':>8} {'share':>7} {'us/row':>7}   {'cpu s':>7} {'share':>7}  how")
    for (label, wall, how), (_, cpu, _) in zip(_stages(t, ""), _stages(t, "_cpu"), strict=True):
        print(
            f"{label:<46} {wall:>8.3f} {wall / total:>7.1%} {wall / n * 1e6:>7.1f}"
            f"   {cpu:>7.3f} {cpu / total_cpu:>7.1%}  {how}"
        )
    print(
        f"{'end to end (ingest_transactions, median)':<46} {total:>8.3f} {1:>7.1%} {total / n * 1e6:>7.1f}"
        f"   {total_cpu:>7.3f} {1:>7.1%}"
    )
    req, get_json = t.median("requests"), t.median("get_json")
    print(f"passes (wall): requests.get {req:.3f} s, ApiClient.get_json {get_json:.3f} s")
    sim = t.median("sim_build") + t.median("sim_encode")
    own = total - sim
    raw_page, raw_big = n / t.median("raw_page"), n / t.median("raw_big")
    print(
        f"end to end minus the simulator's own work ({sim:.3f} s): {own:.3f} s, "
        f"{n / own:,.0f} rows/s = {n / own / raw_page:.3f} x raw/page, {n / own / raw_big:.3f} x raw/5000"
    )


def main() -> None:
    """Run the benchmark and print the tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transactions", type=int, default=100_000, help="rounded up to whole blocks")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--orm-rows", type=int, default=5000, help="rows for the per-row ORM baseline")
    args = parser.parse_args()

    blocks = max(1, math.ceil(args.transactions / TX_PER_BLOCK))
    config = SimulatorConfig(tip_growth=False, tx_per_block=(TX_PER_BLOCK, TX_PER_BLOCK))
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        high = sim.tip(CHAIN)
        low = high - blocks + 1

        # Untimed: the pages, their records and their storage-form tuples.
        pages = capture_pages(sim, low, high)
        probe = fresh_db(f"sqlite:///{tmp}/probe.db", sim, blocks)
        coin = BlockchairIngestor(settings=probe.settings, db=probe).coin(CHAIN)
        probe.dispose()
        page_records = [parse(decode(page.body), coin) for page in pages]
        records = [r for page in page_records for r in page]
        n = len(records)
        tuples = SPEC.rows(records, sqlite=True, now=utcnow())
        orm_records = records[: args.orm_rows]
        del records
        # Keep the collector away from what the benchmark holds, so the timed code runs as it would alone.
        gc.collect()
        gc.freeze()
        mib = sum(len(p.body) for p in pages) / 2**20
        print(
            f"transactions: {n:,} ({blocks:,} blocks x {TX_PER_BLOCK}, heights {low}..{high}, "
            f"{len(pages):,} requests of limit={PAGE_SIZE}, {mib:.1f} MiB of JSON)  "
            f"repeats: {args.repeat} (median, alternating); load average {os.getloadavg()[0]:.2f} "
            f"on {os.cpu_count()} CPUs"
        )

        t = Timings()
        for i in range(args.repeat):
            for name, every in (("raw_page", PAGE_SIZE), ("raw_big", BIG_BATCH)):
                t.add(name, raw_sqlite(tmp / f"{name}{i}.db", sim, blocks, tuples, every))
            run = ingestor_run(f"sqlite:///{tmp}/ingest{i}.db", sim, blocks, low, high)
            t.add("ingest", (run.seconds, run.cpu))
            print(
                f"ingestor run {i + 1}: {run.seconds:.3f} s (cpu {run.cpu:.3f} s), status {run.status}, "
                f"inserted {run.inserted:,}, requests {run.requests:,}, "
                f"limiter wait {run.limiter_wait:.3f} s, rows stored {run.stored:,}"
            )

        # Context only, and the slowest path per row: once.
        t.add("orm", orm_loop(f"sqlite:///{tmp}/orm.db", sim, blocks, orm_records))
        settings = make_settings(f"sqlite:///{tmp}/unused.db", sim, blocks)
        for i in range(args.repeat):
            build, encode = simulator_pass(sim, pages)
            t.add("sim_build", build.both)
            t.add("sim_encode", encode.both)
            t.add("requests", requests_pass(sim, pages).both)
            t.add("get_json", get_json_pass(sim, settings, pages).both)
            t.add("decode", decode_pass(pages).both)
            t.add("validate", validate_pass(pages, coin).both)
            stage_url = f"sqlite:///{tmp}/stage{i}.db"
            t.add("database", database_pass(stage_url, sim, blocks, page_records).both)

        print()
        comparison_table(t, n, len(orm_records))
        print()
        breakdown_table(t, n, len(pages), args.repeat)
        print()
        ingest, ingest_cpu = t.median("ingest"), t.median("ingest_cpu")
        print(
            f"target >= 0.2 x raw: ingestor {t.median('raw_page') / ingest:.3f} x the per-page-commit "
            f"baseline, {t.median('raw_big') / ingest:.3f} x the per-5000 baseline (wall; by CPU time "
            f"{t.median('raw_page_cpu') / ingest_cpu:.3f} and {t.median('raw_big_cpu') / ingest_cpu:.3f}); "
            f"load average now {os.getloadavg()[0]:.2f}"
        )


if __name__ == "__main__":
    main()
