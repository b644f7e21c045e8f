"""The `crypto-pipeline` command line (argparse). `python run_ingestor.py ...` runs the same commands.

Every command builds the settings once and passes them on. Bad arguments and expected failures end with
one line on stderr and a non-zero exit code, never a traceback: 2 for usage and configuration, and one code
per database cause (`DatabaseError.exit_code`, listed in the README). Commands that only read never create
or migrate a database; a reader whose stdout closes early (`status | head -1`) exits quietly with 141.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import NoReturn

from pipeline.config import Settings, load_settings
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError, PipelineError
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.units import IngestionResult
from pipeline.logs import configure_logging
from pipeline.ranges import MAX_WINDOW_DAYS, day_windows
from pipeline.runtime.scheduler import Scheduler
from pipeline.schemas import CoinMetadataData
from pipeline.services.coverage import missing_price_days
from pipeline.services.freshness import Level, freshness_report

BLOCKCHAIR_TYPES = ("blocks", "transactions", "addresses")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# No chain or price series starts before the Bitcoin genesis block.
EARLIEST_DATE = date(2009, 1, 3)
MAX_ID = 2**63 - 1


def _date(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError:
        msg = f"not a date (YYYY-MM-DD): {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < EARLIEST_DATE:
        msg = f"{text} is before {EARLIEST_DATE}, when the first chain began"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        msg = f"not a positive integer up to {MAX_ID}: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _coins(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def build_parser() -> argparse.ArgumentParser:
    """All commands and their arguments."""
    parser = _Parser(prog="crypto-pipeline", description="Self-hosted crypto data pipeline.")
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("init-db", help="create or upgrade the database schema")
    sub.add_parser("stats", help="rows, coverage and recent failures")

    ingest = sub.add_parser("ingest", help="one-off ingestion runs")
    ingest.add_argument("source", choices=["blockchair", "coingecko"])
    ingest.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    ingest.add_argument("--data-types", type=_coins, help=f"Blockchair: {', '.join(BLOCKCHAIR_TYPES)}")
    ingest.add_argument("--start", type=_date, help="CoinGecko: first day (YYYY-MM-DD)")
    ingest.add_argument("--end", type=_date, help="CoinGecko: last day (default: today)")

    backfill = sub.add_parser("backfill", help="fill a date range of prices, asking only for missing days")
    backfill.add_argument("what", choices=["prices"])
    backfill.add_argument("--coins", type=_coins, required=True)
    backfill.add_argument("--start", type=_date, required=True)
    backfill.add_argument("--end", type=_date, required=True)
    backfill.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    rerun = sub.add_parser("rerun", help="replay the slice of a recorded run")
    rerun.add_argument("run_id", type=_positive_int)
    rerun.add_argument(
        "--queue", action="store_true", help="queue it for the scheduler instead of running here"
    )

    runs = sub.add_parser("runs", help="list ingestion runs")
    runs.add_argument("--status", choices=["running", "success", "partial", "failed"])
    runs.add_argument("--source", choices=["blockchair", "coingecko"])
    runs.add_argument("--limit", type=_positive_int, default=20)

    sub.add_parser("run", help="run the scheduler loop (the default of run_ingestor.py)")
    status = sub.add_parser("status", help="workers, recent runs, failures and freshness")
    status.add_argument("--json", action="store_true", help="machine-readable; exit 1 if anything is at fail")

    gaps = sub.add_parser("gaps", help="missing prices, block holes and incomplete transactions")
    gaps.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    fill = sub.add_parser("fill-gaps", help="plan the fewest requests that close every gap, then queue them")
    fill.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    fill.add_argument("--dry-run", action="store_true", help="show the plan and its cost; queue nothing")

    up = sub.add_parser("up", help="start the scheduler and the dashboard together")
    up.add_argument("--demo", action="store_true", help="also start the simulator; no key or internet needed")
    up.add_argument("--port", type=int, default=None, help="dashboard port (default: a free one)")
    up.add_argument("--host", default="127.0.0.1")

    simulate = sub.add_parser("simulate", help="serve the local Blockchair/CoinGecko simulator")
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--host", default="127.0.0.1")
    return parser


# The shell's status for a process killed by SIGPIPE (128 + 13): what `yes | head -1` reports for `yes`.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        try:
            return _main(argv)
        finally:
            # Output to a pipe is buffered: flush here so that a reader that went away (`| head -1`)
            # raises below instead of in the interpreter's exit, which would print a traceback.
            sys.stdout.flush()
    except BrokenPipeError:
        # The recipe from the `signal` module's docs: point stdout at /dev/null so that the flush at
        # exit finds nothing to complain about, and exit like a writer whose reader left.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(args.log_level or settings.LOG_LEVEL, secrets=settings.secrets())
        return COMMANDS[args.command](args, settings)
    except DatabaseError as exc:  # before PipelineError: UnsupportedDatabase is also a ConfigError
        print(f"crypto-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (PipelineError, LookupError, ValueError) as exc:
        print(f"crypto-pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _db(settings: Settings, *, write: bool = True) -> DatabaseService:
    """The database of a command: created or upgraded for commands that write (`write=True`); for commands
    that only read, checked to exist at the newest schema, and never created (DatabaseNotFound,
    SchemaTooOld). Refuses an in-memory database either way: nothing a command wrote would outlive it."""
    db = DatabaseService(settings=settings)
    db.require_persistent()
    if write:
        db.create_tables()
    else:
        db.check_schema()
    return db


def cmd_init_db(_args: argparse.Namespace, settings: Settings) -> int:
    """Create or upgrade the schema."""
    db = _db(settings)
    print(f"database ready at revision {db.schema_revision()} ({db.dialect})")
    return 0


def cmd_stats(_args: argparse.Namespace, settings: Settings) -> int:
    """Print database statistics as JSON."""
    print(_db(settings, write=False).get_database_stats().model_dump_json(indent=2))
    return 0


def _print_result(result: IngestionResult | None, label: str = "") -> None:
    if result is None:
        print(f"{label}nothing to do")
        return
    print(
        f"{label}run {result.id} {result.source}/{result.data_type} {result.coin}: {result.status.value}"
        f" fetched={result.records_fetched} inserted={result.records_inserted}"
        f" updated={result.records_updated} rejected={result.records_rejected}"
        f" requests={result.requests_made}"
        + (f" ({result.error_class or 'note'}: {result.error_message})" if result.error_message else "")
    )


def _exit_code(results: Sequence[IngestionResult | None]) -> int:
    return 1 if any(r is not None and r.status.value == "failed" for r in results) else 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """One-off runs of one source."""
    db = _db(settings)
    results: list[IngestionResult | None] = []
    if args.source == "blockchair":
        types = args.data_types or list(BLOCKCHAIR_TYPES)
        unknown = set(types) - set(BLOCKCHAIR_TYPES)
        if unknown:
            msg = f"unknown data type(s) {', '.join(sorted(unknown))}; use {', '.join(BLOCKCHAIR_TYPES)}"
            raise ValueError(msg)
        outcome = BlockchairIngestor(settings=settings, db=db).run_daily_ingestion(args.coins, types)
        results = [r for per_type in outcome.values() for r in per_type.values()]
    else:
        ingestor = CoinGeckoIngestor(settings=settings, db=db)
        coins = [ingestor.coin(c) for c in args.coins] if args.coins else _price_coins(ingestor)
        end = args.end or ingestor.clock().date()
        start = args.start or end - timedelta(days=settings.PRICE_BACKFILL_DAYS - 1)
        _check_range(start, end)
        results = [ingestor.ingest_price_range(coin, start, end) for coin in coins]
    for result in results:
        _print_result(result)
    return _exit_code(results)


def _price_coins(ingestor: CoinGeckoIngestor) -> list[CoinMetadataData]:
    return [c for c in ingestor.db.get_coins(active_only=True) if c.coingecko_id]


def _check_range(start: date, end: date) -> None:
    if start > end:
        msg = f"--start {start} is after --end {end}"
        raise ValueError(msg)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    """Preview the requests a price backfill will spend, then run it with progress."""
    _check_range(args.start, args.end)
    ingestor = CoinGeckoIngestor(settings=settings, db=_db(settings))
    coins = [ingestor.coin(c) for c in args.coins]
    plan = []
    for coin in coins:
        low, high = ingestor.servable_range(coin, args.start, args.end)
        missing = missing_price_days(ingestor.db, coin.coingecko_id or "", low, high) if low <= high else []
        plan.append((coin, len(missing), len(day_windows(missing, MAX_WINDOW_DAYS)), low))
    requests = sum(n for _, _, n, _ in plan)
    for coin, days, n, low in plan:
        note = f" (days before {low} are beyond the plan or the coin's listing)" if low > args.start else ""
        print(f"  {coin.coingecko_id}: {days} missing days -> {n} requests{note}")
    per_minute = settings.COINGECKO_RATE_LIMIT_PER_MINUTE
    print(f"plan: {requests} requests (~{requests / per_minute:.1f} min at {per_minute:g}/min)")
    if requests and not args.yes and sys.stdin.isatty() and input("proceed? [y/N] ").strip().lower() != "y":
        return 1
    results = []
    for i, (coin, _days, _n, _low) in enumerate(plan, start=1):
        result = ingestor.ingest_price_range(coin, args.start, args.end, trigger="backfill")
        _print_result(result, label=f"[{i}/{len(plan)}] ")
        results.append(result)
    return _exit_code(results)


def cmd_rerun(args: argparse.Namespace, settings: Settings) -> int:
    """Replay one run's slice now, in this process, or queue it for the scheduler.

    Replaying here goes through the queue like every replay: the run's (one) open request is claimed by
    id and served by `serve_here`, so a second `rerun` of the same run, or a scheduler, cannot replay it
    at the same time; a refusal (still running, held elsewhere, over budget) is one line.
    """
    from pipeline.ingestion.requests import serve_here
    from pipeline.store.runs import WORKER_ID

    db = _db(settings)
    if args.queue:
        request = db.request_rerun(args.run_id, "cli")
        print(f"rerun request {request.id} for run {args.run_id}: {request.status}")
        return 0
    request, result = serve_here(
        db, Replayer(settings, db), args.run_id, requested_by="cli", worker_id=f"cli:{WORKER_ID}"
    )
    _print_result(result, label=f"rerun request {request.id}: ")
    return _exit_code([result])


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    """List runs, newest first."""
    runs = _db(settings, write=False).get_ingestion_logs(
        source=args.source, status=args.status, limit=args.limit
    )
    for run in runs:
        target = (
            f"{run.start_date}..{run.end_date}" if run.start_date else f"{run.start_height}..{run.end_height}"
        )
        print(
            f"{run.id:>6} {run.started_at:%Y-%m-%d %H:%M} {run.status.value:<8} {run.source}/{run.data_type}"
            f" {run.coin or '-'} {target} fetched={run.records_fetched} requests={run.requests_made}"
            + (f" {run.error_class}: {run.error_message}" if run.error_class else "")
        )
    return 0


def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    """The scheduler loop, until SIGTERM or Ctrl-C."""
    scheduler = Scheduler(settings, _db(settings))
    scheduler.install_signal_handlers()
    return scheduler.run()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Workers, the last runs, recent failures and freshness; with --json, exit 1 when something fails."""
    db = _db(settings, write=False)
    workers = db.get_workers()
    fresh = freshness_report(db.get_coins(active_only=True), settings)
    runs = db.get_ingestion_logs(limit=10)
    failing = [f for f in fresh if f.level == Level.FAIL]
    if args.json:
        report = {
            "workers": [w.model_dump(mode="json") for w in workers],
            "freshness": [f.model_dump(mode="json") for f in fresh],
            "recent_runs": [r.model_dump(mode="json", exclude={"rejected_samples"}) for r in runs],
            "failures_last_24h": db.get_database_stats().failures_last_24h,
            "ok": not failing,
        }
        print(json.dumps(report, indent=2))
        return 1 if failing else 0
    print(
        "workers:"
        if workers
        else "workers: none seen in the last 7 days (start one with `crypto-pipeline run`)"
    )
    for w in workers:
        print(
            f"  {w.state.value:<5} {w.worker_id} last beat {w.last_beat:%Y-%m-%d %H:%M:%S}"
            f" job={w.current_job}"
        )
    print("freshness:")
    for f in fresh:
        value = "-" if f.value is None else f"{f.value:g} {f.unit}"
        print(f"  {f.level.value:<7} {f.source}/{f.data_type} {f.coin}: {value} ({f.detail})")
    print("last runs:")
    for r in runs:
        _print_result(IngestionResult.model_validate(r.model_dump()), label="  ")
    return 1 if failing else 0


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Scheduler + dashboard (+ simulator) until Ctrl-C."""
    from pipeline.runtime.launcher import up

    if not args.demo:
        _db(settings)  # fail fast, here, on a database that cannot be reached or migrated
    return up(settings, demo=args.demo, host=args.host, port=args.port)


def _coverage_coins(db: DatabaseService, names: list[str] | None) -> list[CoinMetadataData]:
    from pipeline.ingestion.base import Ingestor

    if not names:
        return db.get_coins(active_only=True)
    lookup = Ingestor(settings=db.settings, db=db)
    return [lookup.coin(name) for name in names]


def cmd_gaps(args: argparse.Namespace, settings: Settings) -> int:
    """Print what is missing, as ranges; exit 1 when there is a gap."""
    from pipeline.services.coverage import block_coverage, price_coverage
    from pipeline.services.gapfill import coverage_window

    db = _db(settings, write=False)
    start, end = coverage_window(settings)
    found = 0
    for coin in _coverage_coins(db, args.coins):
        if coin.coingecko_id:
            coverage = price_coverage(db, settings, coin, start, end)
            for r in coverage.gaps:
                print(f"prices   {coverage.coin_id:<12} {r.start}..{r.end} {r.state.value} ({r.days} days)")
                found += 1
        if coin.blockchair_chain:
            chain = block_coverage(db, settings, coin)
            for hole in chain.holes:
                print(f"blocks   {chain.chain:<12} {hole.start}..{hole.end} missing ({hole.size} heights)")
                found += 1
            for heights in chain.incomplete_transactions:
                print(f"txs      {chain.chain:<12} {heights.start}..{heights.end} incomplete")
                found += 1
    if not found:
        print(f"no gaps (prices {start}..{end}, blocks between the lowest and highest stored height)")
    return 1 if found else 0


def cmd_fill_gaps(args: argparse.Namespace, settings: Settings) -> int:
    """Plan the requests that close every gap, show their cost, and queue them for the scheduler."""
    from pipeline.services.gapfill import plan_fill, queue_plan

    db = _db(settings, write=not args.dry_run)  # a dry run only reads
    plan = plan_fill(db, settings, _coverage_coins(db, args.coins))
    for planned in plan.slices:
        print(f"  {planned.description}: {planned.requests} request(s)")
    for source, n in plan.requests_by_source.items():
        print(
            f"{source}: {n} requests, ~{plan.minutes_by_source[source]:g} min at the rate limit,"
            f" {plan.daily_share_by_source[source]:.1%} of the daily budget"
        )
    if not plan.slices:
        print("nothing to fill")
        return 0
    if args.dry_run:
        print("dry run: nothing queued")
        return 0
    queued = queue_plan(db, plan, "cli fill-gaps")
    print(f"queued {len(queued)} backfill requests; the scheduler serves them after its regular jobs")
    return 0


def cmd_simulate(args: argparse.Namespace, _settings: Settings) -> int:
    """Serve the simulator until Ctrl-C."""
    from pipeline.simulator import SimulatorConfig, serve_forever

    print(f"simulator on http://{args.host}:{args.port} (Blockchair at /, CoinGecko at /api/v3)", flush=True)
    serve_forever(SimulatorConfig(), host=args.host, port=args.port)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "init-db": cmd_init_db,
    "stats": cmd_stats,
    "ingest": cmd_ingest,
    "backfill": cmd_backfill,
    "rerun": cmd_rerun,
    "runs": cmd_runs,
    "simulate": cmd_simulate,
    "run": cmd_run,
    "up": cmd_up,
    "gaps": cmd_gaps,
    "fill-gaps": cmd_fill_gaps,
    "status": cmd_status,
}


if __name__ == "__main__":
    sys.exit(main())
