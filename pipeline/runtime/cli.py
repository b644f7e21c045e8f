"""The `crypto-pipeline` command line (argparse). `python run_ingestor.py ...` runs the same commands.

Every command builds the settings once and passes them on, and first prints one line on stderr naming the
database it uses, its password masked (`database: sqlite:///./data/crypto.db`); `simulate` and
`alerts test` use none and print none. Bad arguments and expected failures end with one more line on
stderr and a non-zero exit code, never a traceback. Commands that only read never create or migrate a
database.

Settings come from the environment and `.env`, or, with the global `--env-file PATH` (before the
command), from PATH instead of `.env`, environment variables still winning:
`crypto-pipeline --env-file data/demo.env status` looks at the world of a running `up --demo`.

`simulate [--port P] [--host H]` serves the simulator; `simulate fault add --kind K --endpoint E
[--chain C] [--times N | --until-cleared] [--after N] [--url SIM_URL]`, `simulate fault list` and
`simulate fault clear` drive a running one (at --url, default BLOCKCHAIR_BASE_URL, which the demo's env
file points at its simulator).

Exit codes:

- 0: done, healthy.
- 1: done, but something is wrong: a run failed; `status` found an open error-level incident or a freshness
  measure at fail; `gaps` found a gap; `alerts test` could not deliver to a channel; `simulate fault`
  found no simulator answering at its URL; `export` could not write a file (a rerun resumes).
- 2: usage or configuration (a bad argument, an unknown id, a missing `--env-file`, `alerts test` with no
  channel configured).
- 3 to 11: one per database cause (`DatabaseError.exit_code`, listed in the README).
- 130: Ctrl-C. 141: stdout closed early (`status | head -1`), which ends quietly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from pipeline import actors
from pipeline.config import Settings, load_settings, mask_url_password
from pipeline.database import DatabaseService
from pipeline.errors import DatabaseError, PipelineError
from pipeline.ingestion.blockchair import BlockchairIngestor
from pipeline.ingestion.coingecko import CoinGeckoIngestor
from pipeline.ingestion.replay import Replayer
from pipeline.ingestion.units import IngestionResult
from pipeline.logs import configure_logging
from pipeline.metrics import command as metrics_command
from pipeline.ranges import MAX_WINDOW_DAYS, day_windows
from pipeline.runtime.coins_cli import add_coins_parser, run_coins
from pipeline.runtime.scheduler import Scheduler
from pipeline.schemas import CoinMetadataData, DatabaseStats, DataIngestionLogData, IncidentData
from pipeline.services.coverage import missing_price_days
from pipeline.services.freshness import Level, freshness_report
from pipeline.services.incidents import evaluate, is_error_level_open
from pipeline.simulator.faults import FAULT_ENDPOINTS, FAULT_KINDS

BLOCKCHAIR_TYPES = ("blocks", "transactions", "addresses")
RUN_STATUSES = ("running", "success", "partial", "failed")
# Not a status of its own: a failed run whose worker died, closed by the next one (error class Abandoned).
ABANDONED = "abandoned"
_CHANNEL_SETTINGS = "set ALERT_WEBHOOK_URL, ALERT_SLACK_WEBHOOK_URL, or ALERT_SMTP_URL with ALERT_EMAIL_TO"


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


def _port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        msg = f"not a port (1 to 65535): {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _count(text: str) -> int:
    """A non-negative integer (`--after 0`)."""
    if not text.isdigit() or int(text) > MAX_ID:
        msg = f"not a whole number from 0 to {MAX_ID}: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def _env_file(text: str) -> Path:
    """`--env-file`: a file that exists (pydantic-settings would silently skip a missing one)."""
    path = Path(text)
    if not path.is_file():
        msg = f"no such file: {text}" if not path.exists() else f"not a file: {text}"
        raise argparse.ArgumentTypeError(msg)
    return path


def _coins(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SILENCE = timedelta(days=366)


def _duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`, `1h30m`: a positive span of at most MAX_SILENCE."""
    spec = text.strip().lower()
    if not re.fullmatch(r"(?:\d{1,9}[smhd])+", spec):
        msg = f"not a duration like 30m, 2h or 1d: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in re.findall(r"(\d+)([smhd])", spec))
    if not 0 < seconds <= MAX_SILENCE.total_seconds():
        msg = f"a duration between 1s and {MAX_SILENCE.days}d: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return timedelta(seconds=seconds)


def _os_user() -> str:
    """The default of `--by`: the login name, or the uid when the system has none for it (a container)."""
    return actors.os_user()


def build_parser() -> argparse.ArgumentParser:
    """All commands and their arguments."""
    parser = _Parser(prog="crypto-pipeline", description="Self-hosted crypto data pipeline.")
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: LOG_LEVEL)"
    )
    parser.add_argument(
        "--env-file",
        type=_env_file,
        default=None,
        metavar="PATH",
        help="read settings from PATH instead of .env (environment variables still win),"
        " e.g. data/demo.env, written by `up --demo`",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("init-db", help="create or upgrade the database schema")
    stats = sub.add_parser("stats", help="rows, coverage and recent failures")
    stats.add_argument("--json", action="store_true", help="machine-readable")

    ingest = sub.add_parser("ingest", help="one-off ingestion runs")
    ingest.add_argument("source", choices=["blockchair", "coingecko"])
    ingest.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    ingest.add_argument("--data-types", type=_coins, help=f"Blockchair: {', '.join(BLOCKCHAIR_TYPES)}")
    ingest.add_argument("--start", type=_date, help="CoinGecko: first day (YYYY-MM-DD)")
    ingest.add_argument("--end", type=_date, help="CoinGecko: last day (default: today)")
    ingest.add_argument(
        "--granularity",
        choices=["daily", "hourly"],
        default="daily",
        help="CoinGecko: daily 00:00 snapshots (default) or hourly points (default range: HOURLY_DAYS)",
    )
    ingest.add_argument(
        "--quotes",
        type=_coins,
        help="CoinGecko: quote currencies, e.g. usd,eur,btc (default: usd for "
        "daily, QUOTE_CURRENCIES for hourly)",
    )
    sub.add_parser(
        "rebuild-rollups", help="rebuild every candle and daily analytics row from the stored raw rows"
    )

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
    runs.add_argument(
        "--status",
        choices=[*RUN_STATUSES, ABANDONED],
        help="abandoned: failed runs whose worker died (error class Abandoned); failed includes them",
    )
    runs.add_argument("--source", choices=["blockchair", "coingecko"])
    runs.add_argument("--limit", type=_positive_int, default=20)

    audit = sub.add_parser(
        "audit",
        help="the audit log: who reran, backfilled, filled gaps, acknowledged, silenced or changed a coin",
        description=(
            "Write actions from the dashboard, the CLI and the API, newest first: when, who (the logged-in"
            " user, the OS user of a CLI command, an API key's name), through what, the action, its target,"
            " its outcome (ok, or denied for a refused attempt) and its parameters."
        ),
    )
    audit.add_argument("--since", type=_duration, metavar="DURATION", help="only the last 30m, 2h, 7d ...")
    audit.add_argument("--actor", help="only this actor (exact name)")
    audit.add_argument("--action", choices=sorted(actors.ACTIONS), help="only this action")
    audit.add_argument("--via", choices=["dashboard", "cli", "api", "scheduler"], help="only through this")
    audit.add_argument("--run", dest="run_id", type=_positive_int, metavar="ID", help="only about this run")
    audit.add_argument("--limit", type=_positive_int, default=50, help="at most N (default 50)")
    audit.add_argument("--json", action="store_true", help="machine-readable")

    sub.add_parser("run", help="run the scheduler loop (the default of run_ingestor.py)")
    status = sub.add_parser(
        "status",
        help="workers, open incidents, freshness and recent runs",
        description=(
            "Workers, open incidents, freshness and the last runs. Exit 0 when healthy, 1 when an"
            " error-level incident is open or a freshness measure is at fail, 3 to 11 for a database that"
            " cannot be used (one code per cause)."
        ),
    )
    status.add_argument(
        "--json",
        action="store_true",
        help="machine-readable; exit 1 if an error-level incident is open or anything is at fail",
    )

    incidents = sub.add_parser(
        "incidents",
        help="list incidents (the default), or ack or silence one",
        description=(
            "`incidents` alone, or `incidents list`, lists incidents, open ones first (read-only);"
            " `incidents ack ID` records who is on one, `incidents silence ID --for 2h` holds back its"
            " alerts (`--off` lifts that)."
        ),
    )
    _listing_options(incidents)
    actions = incidents.add_subparsers(dest="action", metavar="[list|ack|silence]", parser_class=_Parser)
    _listing_options(actions.add_parser("list", help="list incidents (the default)"), suppress=True)
    ack = actions.add_parser("ack", help="acknowledge an incident: someone is on it (its alerts go on)")
    ack.add_argument("incident_id", type=_positive_int, metavar="ID")
    ack.add_argument("--by", type=str, default=None, help="who (default: the OS user)")
    ack.add_argument("--note", type=str, default=None, help="what is being done")
    silence = actions.add_parser("silence", help="hold back an incident's alerts for a while, or lift that")
    silence.add_argument("incident_id", type=_positive_int, metavar="ID")
    until = silence.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", type=_duration, metavar="DURATION", help="30m, 2h, 1d ...")
    until.add_argument("--off", action="store_true", help="lift the silence")
    silence.add_argument("--by", type=str, default=None, help="who (default: the OS user)")

    add_coins_parser(sub, _Parser, date_type=_date)  # pipeline/runtime/coins_cli.py
    sub.add_parser(
        "watch",
        help="evaluate the incident rules and deliver alerts, until stopped; safe to run several",
        description=(
            "Evaluate the incident rules and deliver the alerts they owe every WATCH_INTERVAL_SECONDS,"
            " until SIGTERM or Ctrl-C. Safe to run several: each message is claimed once in the database."
        ),
    )
    alerts = sub.add_parser("alerts", help="alert channels: `alerts test` sends a test message")
    alert_actions = alerts.add_subparsers(
        dest="action", metavar="{test}", required=True, parser_class=_Parser
    )
    alert_actions.add_parser(
        "test",
        help="send a test message to every configured channel",
        description=(
            "Send a test message to every configured channel (nothing is stored). Exit 0 when every"
            f" channel got it, 1 when one failed, 2 when none is configured ({_CHANNEL_SETTINGS})."
        ),
    )

    gaps = sub.add_parser("gaps", help="missing prices, block holes and incomplete transactions")
    gaps.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    fill = sub.add_parser("fill-gaps", help="plan the fewest requests that close every gap, then queue them")
    fill.add_argument("--coins", type=_coins, help="comma-separated coins (default: all active)")
    fill.add_argument("--dry-run", action="store_true", help="show the plan and its cost; queue nothing")

    export = sub.add_parser(
        "export",
        help="write the tables to Parquet files (incremental; DuckDB reads them)",
        description=(
            "Write each table to Parquet under DIR, one file per partition (coin, and a range of heights or"
            " a month, year or day), with DIR/manifest.json. A rerun rewrites only the partitions whose rows"
            " changed since, and finishes an interrupted export."
        ),
    )
    export.add_argument("--format", choices=("parquet",), default="parquet", help="parquet (the only one)")
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="the export folder")
    export.add_argument(
        "--tables", type=_coins, default=None, help="comma-separated tables (default: all; see README)"
    )
    export.add_argument(
        "--coins", type=_coins, default=None, help="comma-separated symbols or CoinGecko ids (default: all)"
    )
    export.add_argument("--full", action="store_true", help="rewrite every partition, changed or not")
    export.add_argument("--quiet", action="store_true", help="no progress bar")

    up = sub.add_parser("up", help="start the scheduler and the dashboard together")
    up.add_argument("--demo", action="store_true", help="also start the simulator; no key or internet needed")
    up.add_argument("--port", type=int, default=None, help="dashboard port (default: a free one)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--api-port", type=_port, default=None, help="REST API port (default: a free one)")
    up.add_argument("--metrics-port", type=_port, default=None, help="metrics port (default: a free one)")

    api = sub.add_parser(
        "api",
        help="serve the REST API (OpenAPI at /openapi.json, docs at /docs)",
        description=(
            "Serve the REST API until Ctrl-C. With API_KEYS set every /v1 request needs an X-API-Key (write"
            " actions a key with the operate scope, recorded in the audit log under the key's name);"
            " without, it reads only and listens on loopback only, unless --host is another address and"
            " API_ALLOW_REMOTE_WITHOUT_KEYS=true (else exit 2)."
        ),
    )
    api.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    api.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    metrics_command.add_parser(sub, port=_port)

    simulate = sub.add_parser(
        "simulate",
        help="serve the local Blockchair/CoinGecko simulator, or add faults to a running one",
        description=(
            "`simulate [--port P] [--host H]` serves the simulator until Ctrl-C;"
            " `simulate fault add|list|clear` drives one that runs elsewhere (at --url, default"
            " BLOCKCHAIR_BASE_URL: with `--env-file data/demo.env`, the simulator of `up --demo`)."
            " Exit 1 when none answers there."
        ),
    )
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--host", default="127.0.0.1")
    sim_actions = simulate.add_subparsers(dest="action", metavar="[fault]", parser_class=_Parser)
    fault = sim_actions.add_parser("fault", help="add, list or clear the fault rules of a running simulator")
    fault_actions = fault.add_subparsers(
        dest="fault_action", metavar="{add,list,clear}", required=True, parser_class=_Parser
    )
    add = fault_actions.add_parser(
        "add",
        help="make matching requests fail",
        description=(
            "Make the requests to ENDPOINT (about CHAIN, if given) fail as KIND: the next one (--times 1,"
            " the default), the next N, or all until `simulate fault clear`; --after N lets N through first."
        ),
    )
    add.add_argument(
        "--kind", required=True, choices=FAULT_KINDS, metavar="KIND", help=", ".join(FAULT_KINDS)
    )
    add.add_argument(
        "--endpoint",
        required=True,
        choices=FAULT_ENDPOINTS,
        metavar="ENDPOINT",
        help=", ".join(FAULT_ENDPOINTS),
    )
    add.add_argument("--chain", default=None, help="only requests about this chain or coin (e.g. dogecoin)")
    times = add.add_mutually_exclusive_group()
    times.add_argument(
        "--times", type=_positive_int, default=1, metavar="N", help="fail N requests (default 1)"
    )
    times.add_argument(
        "--until-cleared", action="store_true", help="fail every matching request until cleared"
    )
    add.add_argument(
        "--after", type=_count, default=0, metavar="N", help="let N matching requests through first"
    )
    for name, action_help in (
        ("list", "the active fault rules and request counts"),
        ("clear", "remove every rule"),
    ):
        fault_actions.add_parser(name, help=action_help)
    for action_parser in fault_actions.choices.values():
        action_parser.add_argument(
            "--url", default=None, metavar="SIM_URL", help="the simulator (default: BLOCKCHAIR_BASE_URL)"
        )
    return parser


def _listing_options(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """The options of `incidents` and `incidents list`. The subcommand's defaults are suppressed so that
    they do not overwrite the options given before it (`incidents --open list`)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--open", action="store_true", default=default(False), help="only open incidents")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable")
    parser.add_argument("--limit", type=_positive_int, default=default(50), help="at most N (default 50)")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        default=default(False),
        help="run the incident rules first (this writes: opens and resolves incidents), as `watch` does",
    )


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
        settings = load_settings(_env_file=args.env_file) if args.env_file else load_settings()
        configure_logging(args.log_level or settings.LOG_LEVEL, secrets=settings.secrets())
        database = _database_of(args, settings)
        if database is not None:
            print(f"database: {mask_url_password(database)}", file=sys.stderr, flush=True)
        return COMMANDS[args.command](args, settings)
    except DatabaseError as exc:  # before PipelineError: UnsupportedDatabase is also a ConfigError
        print(f"crypto-pipeline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (PipelineError, LookupError, ValueError) as exc:
        print(f"crypto-pipeline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _database_of(args: argparse.Namespace, settings: Settings) -> str | None:
    """The URL of the database a command uses, or None for the commands that use none."""
    if args.command == "simulate" or (args.command == "alerts" and args.action == "test"):
        return None
    if args.command == "up" and args.demo:
        from pipeline.runtime.launcher import DEMO_DATABASE_URL

        return DEMO_DATABASE_URL
    if args.command in ("api", "export") and settings.DATABASE_READ_URL:
        return settings.DATABASE_READ_URL  # they only read, and a replica serves them when set
    return settings.DATABASE_URL


def _db(settings: Settings, *, write: bool = True, replica: bool = False) -> DatabaseService:
    """The database of a command: created or upgraded for commands that write (`write=True`); for commands
    that only read, checked to exist at the newest schema, and never created (DatabaseNotFound,
    SchemaTooOld). Refuses an in-memory database either way: nothing a command wrote would outlive it.
    `replica`: a reader that may be served by DATABASE_READ_URL when one is configured."""
    url = settings.DATABASE_READ_URL if replica and not write else None
    db = DatabaseService(url, settings=settings)
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


def cmd_rebuild_rollups(_args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild the candles and the daily analytics from the raw rows (they are kept current by every
    write; this repairs them after a hand edit of the raw tables, or checks them)."""
    counts = _db(settings).rebuild_rollups()
    for table, rows in counts.items():
        print(f"{table}: {rows:,} rows")
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print database statistics: text, or JSON with --json."""
    stats = _db(settings, write=False).get_database_stats()
    if args.json:
        print(stats.model_dump_json(indent=2))
        return 0
    for line in _stats_lines(stats):
        print(line)
    return 0


def _stats_lines(stats: DatabaseStats) -> list[str]:
    """Every figure of the stats, as text: totals, rows per table, block heights and price days per coin."""
    size = stats.database_size_bytes
    lines = [
        "database size: " + ("unknown" if size is None else f"{_bytes(size)} ({size:,} bytes)"),
        f"blocks: {stats.total_blocks:,}  transactions: {stats.total_transactions:,}"
        f"  addresses: {stats.total_addresses:,}  prices: {stats.total_prices:,}",
        f"runs: {stats.total_runs:,} recorded, {stats.failures_last_24h:,} failed in the last 24 h",
        "",
        "rows per table:",
        *_indent(
            _table(["table", "rows"], [[t, f"{n:,}"] for t, n in stats.rows_per_table.items()], right={1})
        ),
        "",
        "blocks per chain:",
    ]
    if stats.block_coverage:
        rows = [
            [
                c.coin_symbol,
                _number(c.min_height),
                _number(c.max_height),  # the latest block of the chain (latest_block_by_coin)
                f"{c.blocks:,}",
            ]
            for c in stats.block_coverage
        ]
        lines += _indent(_table(["chain", "lowest", "latest", "blocks"], rows, right={1, 2, 3}))
    else:
        lines.append("  none")
    lines += ["", "prices per coin:"]
    if stats.price_coverage:
        rows = [
            [
                c.coin_id,
                str(c.first_date or "-"),
                str(c.last_date or "-"),
                f"{c.days:,}",
                f"{c.missing_days:,}",
            ]
            for c in stats.price_coverage
        ]
        lines += _indent(_table(["coin", "first day", "last day", "days", "missing"], rows, right={3, 4}))
    else:
        lines.append("  none")
    return lines


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def _indent(lines: list[str]) -> list[str]:
    return [f"  {line}" for line in lines]


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[int] = ()
) -> list[str]:
    """Aligned columns under a header line; columns in `right` are right-aligned, the last is not padded."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        if len(cells) - 1 not in right:
            padded[-1] = cells[-1]
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(row) for row in rows)]


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
        hourly = args.granularity == "hourly"
        span = settings.hourly_days if hourly else settings.PRICE_BACKFILL_DAYS
        start = args.start or end - timedelta(days=span - 1)
        _check_range(start, end)
        quotes = [q.lower() for q in args.quotes] if args.quotes else None
        quotes = quotes or (settings.QUOTE_CURRENCIES if hourly else ["usd"])
        results = [
            ingestor.ingest_price_points(coin, start, end, quote=quote, granularity=args.granularity)
            for coin in coins
            for quote in quotes
        ]
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
    for i, (coin, _days, planned, _low) in enumerate(plan, start=1):
        result = ingestor.ingest_price_range(coin, args.start, args.end, trigger="backfill")
        # Recorded with the run it made, so the Runs page shows who asked for it; the run's own status
        # says how it went.
        ingestor.db.record_audit(
            actors.cli_actor(),
            "backfill",
            target=f"prices:{coin.coingecko_id}",
            params={"coin": coin.coingecko_id, "start": str(args.start), "end": str(args.end),
                    "planned_requests": planned, "status": result.status.value},
            outcome="failed" if result.status == "failed" else "ok",
            run_id=result.id,
        )  # fmt: skip
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
        db.get_run(args.run_id)  # an unknown id is refused before anything else is said about it
        waiting = db.open_request_for(args.run_id)
        if waiting is not None:
            print(f"run #{args.run_id} already has request #{waiting.id} {waiting.status}; nothing queued")
            return 0
        request = db.request_rerun(args.run_id, "cli", actor=actors.cli_actor())
        print(f"rerun request {request.id} for run {args.run_id}: {request.status}")
        return 0
    request, result = serve_here(
        db,
        Replayer(settings, db),
        args.run_id,
        requested_by="cli",
        worker_id=f"cli:{WORKER_ID}",
        actor=actors.cli_actor(),
    )
    _print_result(result, label=f"rerun request {request.id}: ")
    return _exit_code([result])


def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    """List runs, newest first, under a header line."""
    db = _db(settings, write=False)
    if args.status == ABANDONED:
        runs = db.get_ingestion_logs(
            source=args.source, status="failed", error_class="Abandoned", limit=args.limit
        )
    else:
        runs = db.get_ingestion_logs(source=args.source, status=args.status, limit=args.limit)
    if not runs:
        print("no runs" + (f" with status {args.status}" if args.status else ""))
        return 0
    headers = [
        "id",
        "started (UTC)",
        "status",
        "source/type",
        "coin",
        "slice",
        "fetched",
        "requests",
        "error",
    ]
    for line in _table(headers, [_run_row(run) for run in runs], right={0, 6, 7}):
        print(line)
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    """List the audit log, newest first (read-only)."""
    db = _db(settings, write=False)
    since = db.db_now() - args.since if args.since else None
    entries = db.audit_entries(
        limit=args.limit, since=since, actor=args.actor, action=args.action, via=args.via, run_id=args.run_id
    )
    if args.json:
        print(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2))
        return 0
    if not entries:
        filtered = any((args.actor, args.action, args.via, args.run_id, args.since))
        print("no audited actions" + (" matching the filters" if filtered else ""))
        return 0
    headers = ["id", "at (UTC)", "actor", "via", "action", "target", "outcome", "parameters"]
    rows = [
        [
            str(entry.id),
            _utc(entry.at),
            _one_line(entry.actor) + (f" ({entry.role})" if entry.role else ""),
            entry.via,
            entry.action,
            _one_line(entry.target or "-"),
            entry.outcome + (f": {_one_line(entry.detail)}" if entry.detail else ""),
            _one_line(json.dumps(entry.params, sort_keys=True, default=str)) if entry.params else "",
        ]
        for entry in entries
    ]
    for line in _table(headers, rows, right={0}):
        print(line)
    return 0


def _run_row(run: DataIngestionLogData) -> list[str]:
    if run.start_date:
        target = f"{run.start_date} .. {run.end_date or 'today'}"
    elif run.start_height is not None:
        # An open slice runs to the chain's tip, whatever that is when the run reads it.
        end = "tip" if run.end_height is None else f"{run.end_height:,}"
        target = f"{run.start_height:,} .. {end}"
    else:
        target = "-"  # a whole unit (an incremental run), not a recorded slice
    return [
        str(run.id),
        _utc(run.started_at),
        run.status.value,
        f"{run.source}/{run.data_type}",
        run.coin or "-",
        target,
        str(run.records_fetched),
        str(run.requests_made),
        _one_line(f"{run.error_class}: {run.error_message}") if run.error_class else "",
    ]


def _utc(value: datetime | None) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM` in UTC ('-' for none)."""
    if value is None:
        return "-"
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return f"{aware.astimezone(UTC):%Y-%m-%d %H:%M}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def cmd_run(_args: argparse.Namespace, settings: Settings) -> int:
    """The scheduler loop, until SIGTERM or Ctrl-C."""
    scheduler = Scheduler(settings, _db(settings))
    scheduler.install_signal_handlers()
    return scheduler.run()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Workers, the last runs, recent failures and freshness; with --json, exit 1 when something fails."""
    db = _db(settings, write=False)
    workers = db.get_workers()
    open_incidents = db.get_incidents(open_only=True, limit=None)
    fresh = freshness_report(db.get_coins(active_only=True), settings)
    runs = db.get_ingestion_logs(limit=10)
    failing = [f for f in fresh if f.level == Level.FAIL]
    unhealthy = bool(failing) or is_error_level_open(db)
    if args.json:
        report = {
            "workers": [w.model_dump(mode="json") for w in workers],
            "incidents": [i.model_dump(mode="json") for i in open_incidents],
            "freshness": [f.model_dump(mode="json") for f in fresh],
            "recent_runs": [r.model_dump(mode="json", exclude={"rejected_samples"}) for r in runs],
            "failures_last_24h": db.get_database_stats().failures_last_24h,
            "ok": not unhealthy,
        }
        print(json.dumps(report, indent=2))
        return 1 if unhealthy else 0
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
    print("incidents:" if open_incidents else "incidents: none open")
    now = db.db_now()
    for i in open_incidents:
        print(
            f"  {i.level:<7} #{i.id} {i.kind} {i.unit or i.key}, open {_duration_text(i, now)}"
            + (f", acknowledged by {i.acknowledged_by}" if i.acknowledged_by else "")
            + f": {_one_line(i.summary)}"
        )
    print("freshness:")
    for f in fresh:
        value = "-" if f.value is None else f"{f.value:g} {f.unit}"
        print(f"  {f.level.value:<7} {f.source}/{f.data_type} {f.coin}: {value} ({f.detail})")
    print("last runs:")
    for r in runs:
        _print_result(IngestionResult.model_validate(r.model_dump()), label="  ")
    return 1 if unhealthy else 0


def _duration_text(incident: IncidentData, now: datetime) -> str:
    from pipeline.alerts.message import format_duration

    return format_duration(max(0, int(incident.duration_seconds(now))))


def cmd_incidents(args: argparse.Namespace, settings: Settings) -> int:
    """`incidents [list]`: the incidents, open first (read-only); `ack` and `silence` change one."""
    if args.action == "ack":
        db = _db(settings, write=False)  # the incident must exist already: nothing to create or migrate
        by = args.by or _os_user()
        incident = db.acknowledge_incident(args.incident_id, by=by, note=args.note, actor=actors.cli_actor())
        print(f"incident #{incident.id} acknowledged by {incident.acknowledged_by}")
        return 0
    if args.action == "silence":
        db = _db(settings, write=False)
        if args.off:
            incident = db.silence_incident(
                args.incident_id, until=None, by=args.by or _os_user(), actor=actors.cli_actor()
            )
            print(f"incident #{incident.id}: alerts no longer silenced")
            return 0
        until = db.db_now() + args.duration
        incident = db.silence_incident(
            args.incident_id, until=until, by=args.by or _os_user(), actor=actors.cli_actor()
        )
        print(f"incident #{incident.id}: alerts silenced until {_utc(incident.silenced_until)} UTC")
        return 0
    db = _db(settings, write=args.evaluate)  # only a listing that evaluates first writes
    if args.evaluate:
        evaluate(db, settings)
    found = db.get_incidents(open_only=args.open, limit=args.limit)
    if args.json:
        print(json.dumps([i.model_dump(mode="json") for i in found], indent=2))
        return 0
    if not found:
        print("no open incidents" if args.open else "no incidents")
        return 0
    now = db.db_now()
    headers = [
        "id", "status", "level", "kind", "unit or key", "opened (UTC)", "duration",
        "acknowledged by", "silenced until", "resolved by", "summary",
    ]  # fmt: skip
    rows = [_incident_row(i, now) for i in found]
    lines = _table(headers, rows, right={0})
    if sys.stdout.isatty():  # keep each row on one line of the terminal; --json has every word
        columns = shutil.get_terminal_size().columns
        lines = [_fit(line, columns) for line in lines]
    for line in lines:
        print(line)
    return 0


def _incident_row(incident: IncidentData, now: datetime) -> list[str]:
    if incident.is_open:
        resolved_by = "-"
    elif incident.resolved_by_run_id is not None:
        resolved_by = f"run #{incident.resolved_by_run_id}"
    else:
        resolved_by = "cleared"
    silenced = _utc(incident.silenced_until) if incident.silenced(now) else "-"
    return [
        str(incident.id),
        "open" if incident.is_open else "resolved",
        incident.level,
        incident.kind,
        incident.unit or incident.key,
        _utc(incident.opened_at),
        _duration_text(incident, now),
        incident.acknowledged_by or "-",
        silenced,
        resolved_by,
        _one_line(incident.summary),
    ]


def _fit(line: str, columns: int) -> str:
    """The line cut to the terminal's width (never below 60 characters), with an ellipsis."""
    width = max(columns, 60)
    return line if len(line) <= width else line[: width - 1] + "…"


def cmd_coins(args: argparse.Namespace, settings: Settings) -> int:
    """`coins [list]` lists the coins; `add`, `enable` and `disable` change one (an existing database only,
    like `incidents ack`). See pipeline/runtime/coins_cli.py."""
    return run_coins(args, settings, _db(settings, write=False), table=_table)


def cmd_watch(_args: argparse.Namespace, settings: Settings) -> int:
    """The incident watcher, until SIGTERM or Ctrl-C."""
    from pipeline.runtime.watch import run_watch

    return run_watch(settings)


def cmd_alerts(_args: argparse.Namespace, settings: Settings) -> int:
    """`alerts test`: one test message per configured channel; exit 1 if one failed, 2 if none is set."""
    from pipeline.errors import ConfigError
    from pipeline.services.alerting import send_test

    results = send_test(settings)
    if not results:
        msg = f"no alert channel is configured; {_CHANNEL_SETTINGS}"
        raise ConfigError(msg)
    for result in results:
        attempts = f"{result.attempts} attempt{'' if result.attempts == 1 else 's'}"
        if result.ok:
            print(f"{result.channel}: sent ({attempts})")
        else:
            error = _one_line(result.error or "unknown error").removeprefix(f"{result.channel}: ")
            print(f"{result.channel}: failed after {attempts}: {error}")
    return 0 if all(r.ok for r in results) else 1


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Scheduler + dashboard (+ simulator) until Ctrl-C."""
    from pipeline.runtime.launcher import up

    if not args.demo:
        _db(settings)  # fail fast, here, on a database that cannot be reached or migrated
    return up(
        settings,
        demo=args.demo,
        host=args.host,
        port=args.port,
        api_port=args.api_port,
        metrics_port=args.metrics_port,
    )


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the REST API until Ctrl-C; refuse (2) an open API on a non-loopback address."""
    from pipeline.api.binding import listen_refusal, open_warning, url_of
    from pipeline.api.server import serve

    refusal = listen_refusal(settings, args.host)
    if refusal is not None:
        print(f"crypto-pipeline api: error: {refusal}", file=sys.stderr)
        return 2
    # It only reads: never creates or migrates the database, and reads the replica when there is one.
    db = _db(settings, write=False, replica=True)
    warning = open_warning(settings, args.host, args.port)
    if warning is not None:
        print(f"crypto-pipeline api: warning: {warning}", file=sys.stderr, flush=True)
    url = url_of(args.host, args.port)
    print(f"API on {url}/v1 (docs: {url}/docs, OpenAPI: {url}/openapi.json)", flush=True)
    serve(settings, db, host=args.host, port=args.port)
    return 0


def _coverage_coins(db: DatabaseService, names: list[str] | None) -> list[CoinMetadataData]:
    from pipeline.ingestion.base import Ingestor

    if not names:
        return db.get_coins(active_only=True)
    lookup = Ingestor(settings=db.settings, db=db)
    return [lookup.coin(name) for name in names]


def cmd_gaps(args: argparse.Namespace, settings: Settings) -> int:
    """Print what is missing, as ranges; exit 1 when there is a gap."""
    from pipeline.ranges import contiguous_hours
    from pipeline.services.coverage import block_coverage, hourly_window_gaps, price_coverage
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
            for quote in settings.QUOTE_CURRENCIES:
                for first, after in contiguous_hours(hourly_window_gaps(db, settings, coin, quote)):
                    hours = int((after - first) / timedelta(hours=1))
                    span = f"{first:%Y-%m-%d %H:00}..{after - timedelta(hours=1):%Y-%m-%d %H:00}"
                    print(f"hourly   {coverage.coin_id + '/' + quote:<12} {span} missing ({hours} hours)")
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
    queued = queue_plan(db, plan, "cli fill-gaps", actor=actors.cli_actor())
    print(f"queued {len(queued)} backfill requests; the scheduler serves them after its regular jobs")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Export the tables to Parquet under --out; exit 1 when writing failed (the next run resumes)."""
    from pipeline.export.exporter import export_parquet

    db = _db(settings, write=False, replica=True)  # it only reads: a replica serves it when set
    try:
        result = export_parquet(
            db,
            args.out,
            tables=args.tables,
            coins=args.coins,
            full=args.full,
            progress=False if args.quiet else None,  # None: a bar when stderr is a terminal
        )
    except OSError as exc:
        print(f"crypto-pipeline: error: export to {args.out} failed: {exc}", file=sys.stderr)
        return 1
    headers = ["table", "partitions", "written", "rows", "unchanged", "removed"]
    rows = [
        [t.table, *(f"{n:,}" for n in (t.partitions, t.written, t.rows_written, t.unchanged, t.removed))]
        for t in result.tables
    ]
    for line in _table(headers, rows, right={1, 2, 3, 4, 5}):
        print(line)
    rate = result.rows_written / result.seconds if result.seconds else 0.0
    print(
        f"wrote {result.files_written:,} files ({result.rows_written:,} rows) in {result.seconds:.1f} s"
        f" ({rate:,.0f} rows/s); manifest: {result.manifest_path}"
    )
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the simulator until Ctrl-C, or (`simulate fault ...`) drive a running one."""
    from pipeline.simulator import SimulatorConfig, serve_forever

    if args.action == "fault":
        return _simulate_fault(args, settings)
    print(f"simulator on http://{args.host}:{args.port} (Blockchair at /, CoinGecko at /api/v3)", flush=True)
    serve_forever(SimulatorConfig(), host=args.host, port=args.port)
    return 0


def _simulator_url(args: argparse.Namespace, settings: Settings) -> str:
    """--url, or BLOCKCHAIR_BASE_URL unless that is still the real API (whose /_sim we must not call)."""
    if args.url:
        return str(args.url).rstrip("/").removesuffix("/api/v3")  # the CoinGecko URL of a simulator works too
    if (urlsplit(settings.BLOCKCHAIR_BASE_URL).hostname or "").endswith("blockchair.com"):
        msg = (
            f"BLOCKCHAIR_BASE_URL is the real API ({settings.BLOCKCHAIR_BASE_URL}), not a simulator; pass"
            " --url, or `--env-file data/demo.env` (before the command) for the simulator of `up --demo`"
        )
        raise ValueError(msg)
    return settings.BLOCKCHAIR_BASE_URL


def _simulate_fault(args: argparse.Namespace, settings: Settings) -> int:
    """`simulate fault add|list|clear` against the simulator at --url; exit 1 when it does not answer."""
    import urllib.error

    from pipeline.simulator.control import SimulatorControl
    from pipeline.simulator.faults import FaultRule

    url = _simulator_url(args, settings)
    control = SimulatorControl(url, timeout=5.0)
    rule = None
    if args.fault_action == "add":  # built first: a bad rule is a usage error, not a silent simulator
        times = None if args.until_cleared else args.times
        rule = FaultRule(
            kind=args.kind, endpoint=args.endpoint, chain=args.chain, times=times, after=args.after
        )
    try:
        if rule is not None:
            control.add_fault(rule)
            target = rule.endpoint + (f" of {rule.chain}" if rule.chain else "")
            count = "until cleared" if rule.times is None else f"{rule.times} time{'s' * (rule.times != 1)}"
            after = f", after letting {rule.after} through" if rule.after else ""
            print(f"fault added at {url}: {rule.kind} on {target}, {count}{after}")
        elif args.fault_action == "clear":
            stats = control.stats()
            control.clear_faults()
            print(f"cleared {len(stats['faults'])} fault rule(s) at {url}")
        else:
            _print_faults(url, control.stats())
    except urllib.error.HTTPError as exc:
        print(
            f"crypto-pipeline: error: {url} answered HTTP {exc.code} to {exc.filename}: not a simulator?",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:  # refused, timed out, not JSON, not a simulator
        reason = getattr(exc, "reason", None) or exc
        print(
            f"crypto-pipeline: error: no simulator answers at {url}: {_one_line(str(reason))}",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_faults(url: str, stats: dict[str, Any]) -> None:
    """The active fault rules and the requests served, per endpoint."""
    faults: list[dict[str, Any]] = stats["faults"]
    if faults:
        print(f"faults at {url}:")
        rows = []
        for i, rule in enumerate(faults, start=1):
            if rule["times"] is None:
                remaining = "until cleared"
            else:
                remaining = str(max(0, int(rule["times"]) - int(rule["fired"])))
            rows.append(
                [
                    str(i),
                    str(rule["kind"]),
                    str(rule["endpoint"]),
                    rule["chain"] or "any",
                    str(rule["after"]),
                    str(rule["seen"]),
                    str(rule["fired"]),
                    remaining,
                ]
            )
        headers = ["#", "kind", "endpoint", "chain", "after", "seen", "fired", "remaining"]
        for line in _indent(_table(headers, rows, right={0, 4, 5, 6})):
            print(line)
    else:
        print(f"faults at {url}: none")
    requests: dict[str, int] = stats.get("requests", {})
    print("requests served:" if requests else "requests served: none counted")
    rows = [[kind, f"{n:,}"] for kind, n in requests.items()]
    if rows:
        for line in _indent(_table(["endpoint", "requests"], rows, right={1})):
            print(line)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "init-db": cmd_init_db,
    "stats": cmd_stats,
    "ingest": cmd_ingest,
    "backfill": cmd_backfill,
    "rerun": cmd_rerun,
    "runs": cmd_runs,
    "audit": cmd_audit,
    "simulate": cmd_simulate,
    "run": cmd_run,
    "up": cmd_up,
    "api": cmd_api,
    "metrics": metrics_command.cmd_metrics,
    "gaps": cmd_gaps,
    "fill-gaps": cmd_fill_gaps,
    "status": cmd_status,
    "incidents": cmd_incidents,
    "coins": cmd_coins,
    "watch": cmd_watch,
    "alerts": cmd_alerts,
    "rebuild-rollups": cmd_rebuild_rollups,
    "export": cmd_export,
}


if __name__ == "__main__":
    sys.exit(main())
