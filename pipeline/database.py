"""`DatabaseService`: the one repository of the pipeline, shared by the scheduler, the CLI and the dashboard.

Usage::

    from pipeline.database import db_service          # built from settings on first use
    db_service.create_tables()
    db_service.insert_market_prices([{"coin_id": "bitcoin", "price_date": date(2024, 1, 1),
                                      "price_usd": Decimal("42280.23")}])
    db_service.get_market_prices(coin_id="bitcoin", limit=30)
    db_service.get_database_stats()

Writes are bulk upserts in one transaction per batch; reads return Pydantic models (or DataFrames for
chart queries), never ORM objects.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, get_settings, is_in_memory, mask_url_password, parse_database_url
from pipeline.errors import (
    DatabaseCorrupt,
    DatabaseNotFound,
    DatabaseReplaced,
    DatabaseUnavailable,
    RecordValidationError,
    SchemaMismatch,
    SchemaTooNew,
    SchemaTooOld,
    UnsupportedDatabase,
)
from pipeline.lazy import LazyProxy
from pipeline.models import (
    Base,
    BlockchainAddress,
    BlockchainBlock,
    BlockchainTransaction,
    CoinMetadata,
    DataIngestionLog,
    MarketPrice,
)
from pipeline.schemas import (
    BlockchainAddressData,
    BlockchainBlockData,
    BlockchainTransactionData,
    CoinMetadataData,
    DatabaseStats,
    DataIngestionLogData,
    DateCoverage,
    HealthStatus,
    HeightCoverage,
    MarketPriceData,
    UpsertResult,
    describe_validation_error,
)
from pipeline.store.bookmarks import BookmarkMixin
from pipeline.store.coordination import CoordinationMixin
from pipeline.store.runs import RunLogMixin
from pipeline.store.upsert import UpsertSpec, upsert

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
RecordT = TypeVar("RecordT", bound=BaseModel)

_SPECS = {
    model: UpsertSpec.for_table(model.__table__)
    for model in (BlockchainBlock, BlockchainTransaction, BlockchainAddress, MarketPrice, CoinMetadata)
}
_TABLES = {
    "blockchain_blocks": BlockchainBlock,
    "blockchain_transactions": BlockchainTransaction,
    "blockchain_addresses": BlockchainAddress,
    "market_prices": MarketPrice,
    "data_ingestion_logs": DataIngestionLog,
    "coin_metadata": CoinMetadata,
}


def prepare_url(database_url: str, *, create_parent: bool = True) -> URL:
    """Parse and normalise a database URL: psycopg 3 for PostgreSQL (also for `postgres://`), and, when
    `create_parent`, the parent folder of a SQLite file created (only code about to write asks for that;
    a command that only reads must not leave folders behind). Raises UnsupportedDatabase on a typo."""
    try:
        url = parse_database_url(database_url)
    except UnsupportedDatabase as exc:
        raise UnsupportedDatabase(f"database URL: {exc}") from None
    path = sqlite_file(url)
    if create_parent and path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return url


def sqlite_file(url: URL) -> Path | None:
    """The absolute path of a SQLite database file, or None (PostgreSQL, in-memory)."""
    if url.get_backend_name() != "sqlite" or is_in_memory(url):
        return None
    database = url.database or ""
    if database.startswith("file:"):  # a SQLite URI filename: file:path?options
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(os.path.abspath(Path(database).expanduser()))


def describe_database(url: URL) -> str:
    """Where a URL points, for messages: the SQLite path, or the PostgreSQL URL with its password masked
    (and without the query, whose options are long and say nothing about which database it is)."""
    path = sqlite_file(url)
    if path is not None:
        return str(path)
    if url.get_backend_name() == "sqlite":
        return "an in-memory SQLite database"
    return url.set(query={}).render_as_string(hide_password=True)


# SQLite OperationalError texts that mean "not now" rather than "never": another process holds the lock,
# or the file system failed. Anything else (no such table, syntax) is a bug and stays an OperationalError.
_SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error", "unable to open")
# SQLITE_CORRUPT and SQLITE_NOTADB (primary result codes): a truncated file, a damaged page, garbage.
_SQLITE_CORRUPT_CODES = (11, 26)
# The texts too, for drivers that do not set the code; not a bare "malformed" (that is also "malformed JSON").
_SQLITE_CORRUPT_TEXT = ("database disk image is malformed", "malformed database schema", "not a database")
_PG_NO_DATABASE = re.compile(r'database "(?P<name>[^"]*)" does not exist')


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _scrub(text: str, url: URL | None) -> str:
    """Mask the URL's password wherever a driver message might have echoed it."""
    text = mask_url_password(text)
    return text.replace(url.password, "***") if url is not None and url.password else text


def _unavailable(context: ExceptionContext) -> BaseException | None:
    """Turn driver errors that are about the database itself (not the statement) into DatabaseErrors with
    one line and no password: refused or lost -> DatabaseUnavailable (loops back off on it), no such
    PostgreSQL database -> DatabaseNotFound, a corrupt SQLite file -> DatabaseCorrupt."""
    if context.is_pre_ping:  # the pool recovers from a failed ping by itself
        return None
    original = context.original_exception
    url = context.engine.url if context.engine is not None else None
    reason = _first_line(original)
    if url is not None and url.get_backend_name() == "sqlite":
        text = str(original).lower()
        code = getattr(original, "sqlite_errorcode", -1) & 0xFF
        if isinstance(original, sqlite3.DatabaseError) and (
            code in _SQLITE_CORRUPT_CODES or any(t in text for t in _SQLITE_CORRUPT_TEXT)
        ):
            return DatabaseCorrupt(
                f"the database file {describe_database(url)} is damaged or not a SQLite database ({reason});"
                " restore it from a backup or point DATABASE_URL at the right file"
            )
        if isinstance(original, sqlite3.OperationalError) and any(t in text for t in _SQLITE_TRANSIENT):
            return DatabaseUnavailable(f"database unavailable: {reason} ({describe_database(url)})")
        return None
    if not (context.is_disconnect or isinstance(original, psycopg.OperationalError)):
        return None
    # The driver's first line names the cause (refused, terminated, no such database), never the
    # password; scrub it anyway in case a future libpq message quotes the connection string.
    missing = _PG_NO_DATABASE.search(str(original))
    if missing and url is not None:
        name = missing.group("name")
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        msg = f'no PostgreSQL database "{name}" on {where}; create it (createdb {name}) or fix DATABASE_URL'
        return DatabaseNotFound(_scrub(msg, url))
    return DatabaseUnavailable(_scrub(f"database unavailable: {reason}", url))


# Without a timeout libpq waits for the operating system's (minutes) on a host that drops packets; a
# command should say "unavailable" well before an operator gives up on it.
PG_CONNECT_TIMEOUT_SECONDS = 10


def create_db_engine(database_url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine tuned for a writer process and reader processes sharing the database.

    Creating it touches nothing on disk: the first connection opens (for SQLite, creates) the database,
    and `DatabaseService.create_tables` creates the folder of a new SQLite file.
    """
    url = prepare_url(database_url, create_parent=False)
    if url.get_backend_name() != "sqlite":
        connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS}
        if "connect_timeout" in url.query:  # the URL's own value wins
            connect_args = {}
        engine = create_engine(url, pool_pre_ping=True, pool_recycle=1800, connect_args=connect_args)
        event.listen(engine, "handle_error", _unavailable)
        return engine
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
    event.listen(engine, "handle_error", _unavailable)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets the dashboard read while the scheduler writes; busy_timeout makes a second
        # writer wait instead of failing with "database is locked".
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        # Let SQLAlchemy's "begin" event, not the driver, decide when a transaction starts.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # pysqlite defers BEGIN until the first write; a read-then-write transaction could then
        # fail with SQLITE_BUSY without waiting. IMMEDIATE takes the write lock up front (writers only
        # open transactions through `DatabaseService.transaction`).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest migration this code knows."""
    head = _script_directory().get_current_head()
    if head is None:  # only a broken install has no migrations at all
        msg = f"no migrations in {MIGRATIONS_DIR}"
        raise RuntimeError(msg)
    return head


def _known_revisions() -> set[str]:
    return {script.revision for script in _script_directory().walk_revisions()}


# Errors of a migration step that finds its work already done: the stamp is older than the tables.
_ALREADY_THERE = ("already exists", "duplicate column")
_PG_DUPLICATE_SQLSTATES = ("42P07", "42701", "42710")  # duplicate table, column, object (index)


def _already_there(error: DBAPIError) -> bool:
    original = error.orig
    if getattr(original, "sqlstate", None) in _PG_DUPLICATE_SQLSTATES:
        return True
    return any(t in str(original).lower() for t in _ALREADY_THERE)


def validate_records(model: type[RecordT], records: Iterable[Any]) -> Iterator[RecordT]:
    """Yield validated models; an invalid dict raises a RecordValidationError naming the field."""
    for record in records:
        if isinstance(record, model):
            yield record
            continue
        try:
            yield model.model_validate(record)
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"]) or None
            raise RecordValidationError(describe_validation_error(exc), record=record, field=field) from None


class DatabaseService(RunLogMixin, BookmarkMixin, CoordinationMixin):
    """Bulk idempotent writes, queries and stats over SQLite or PostgreSQL."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.DATABASE_URL
        self.engine = engine or create_db_engine(
            self.database_url, busy_timeout_ms=self.settings.SQLITE_BUSY_TIMEOUT_MS
        )
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.batch_size = self.settings.DB_BATCH_SIZE
        # The SQLite file this service writes to, and its (device, inode) once a connection opened it:
        # see check_file_identity.
        self.database_file = sqlite_file(self.engine.url)
        self._file_identity: tuple[int, int] | None = None
        if self.database_file is not None:
            event.listen(self.engine, "connect", self._remember_file_identity)

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ transactions and schema

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: everything inside commits together or not at all."""
        with self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("write", None)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (ORM) closed on exit."""
        with self.session_factory() as session:
            yield session

    @property
    def location(self) -> str:
        """Where this service's database is, for messages (the SQLite path, or the masked URL)."""
        return describe_database(self.engine.url)

    def require_persistent(self) -> None:
        """Refuse an in-memory SQLite database: commands and the scheduler would lose everything they wrote
        when the process ends (tests may still build a service on one)."""
        if is_in_memory(self.engine.url):
            shown = self.engine.url.render_as_string(hide_password=True).replace("%3A", ":")
            msg = (
                f"DATABASE_URL {shown} is an in-memory database, gone when this process ends;"
                " use a file such as sqlite:///./data/crypto.db"
            )
            raise UnsupportedDatabase(msg)

    def create_tables(self) -> None:
        """Create or upgrade the schema to the newest migration (safe on an existing database).

        Creates a new SQLite file and its folder. Refuses (SchemaTooNew) a database migrated by a newer
        crypto-pipeline, and reports (SchemaMismatch) a stamp older than the tables, whose upgrade would
        fail on "table already exists"; the failed upgrade is rolled back as a whole.
        """
        if self.database_file is not None:
            try:
                self.database_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the same cause SQLite reports as "unable to open database file"
                msg = (
                    f"database unavailable: cannot create the folder of {self.database_file} ({exc.strerror})"
                )
                raise DatabaseUnavailable(msg) from None
        try:
            with self.transaction() as conn:
                self._refuse_unknown_revision(MigrationContext.configure(conn).get_current_heads())
                command.upgrade(alembic_config(conn), "head")
        except DBAPIError as exc:
            if not _already_there(exc):
                raise
            raise self._stamp_mismatch(exc) from None
        logger.debug("database schema is at %s", self.schema_revision())

    def check_schema(self) -> None:
        """For commands that only read: the database exists and is at the newest revision. Creates and
        changes nothing (not even the SQLite file or its folder)."""
        if self.database_file is not None and not self.database_file.exists():
            msg = f"no database at {self.database_file}; run crypto-pipeline init-db"
            raise DatabaseNotFound(msg)
        with self.engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        self._refuse_unknown_revision(heads)
        head = head_revision()
        if heads == (head,):
            return
        if not heads:
            msg = (
                f"the database at {self.location} has no crypto-pipeline schema yet;"
                " run crypto-pipeline init-db"
            )
        else:
            msg = (
                f"the database at {self.location} is at schema revision {', '.join(heads)}, older than this"
                f" crypto-pipeline ({head}); run crypto-pipeline init-db"
            )
        raise SchemaTooOld(msg)

    def _refuse_unknown_revision(self, heads: tuple[str, ...]) -> None:
        unknown = [h for h in heads if h not in _known_revisions()]
        if unknown:
            msg = (
                f"the database at {self.location} is at schema revision {', '.join(unknown)}, newer than this"
                f" crypto-pipeline knows (newest {head_revision()}); upgrade crypto-pipeline"
            )
            raise SchemaTooNew(msg)

    def _stamp_mismatch(self, error: DBAPIError) -> SchemaMismatch:
        """Explain an upgrade that found its tables already there, and how to fix the stamp."""
        head = head_revision()
        with self.engine.connect() as conn:
            stamp = MigrationContext.configure(conn).get_current_revision()
            tables = set(inspect(conn).get_table_names())
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            at_head = tables >= set(Base.metadata.tables) and not compare_metadata(context, Base.metadata)
        said = f"revision {stamp}" if stamp else "no revision"
        head_text = (
            f"the schema stamp (alembic_version: {said}) does not match the tables of {self.location}"
            f" ({_first_line(error.orig)})"
        )
        if at_head:
            fix = (
                f"the tables are already at {head}, so set the stamp:"
                f" UPDATE alembic_version SET version_num = '{head}'"
            )
            if stamp is None:
                fix = f"the tables are already at {head}: INSERT INTO alembic_version VALUES ('{head}')"
        else:
            fix = "restore a backup, or set alembic_version to the revision the tables are at"
        return SchemaMismatch(_scrub(f"{head_text}; {fix}", self.engine.url))

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at, or None when it was never migrated."""
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # ------------------------------------------------------------------ file identity

    def _remember_file_identity(self, _dbapi_conn: Any, _record: Any) -> None:
        # The first connection is the file this process means to use; later connections (the pool
        # reopening one) must not adopt a replacement, or check_file_identity could never see it.
        if self._file_identity is None and self.database_file is not None:
            try:
                stat = os.stat(self.database_file)
            except OSError:
                return
            self._file_identity = (stat.st_dev, stat.st_ino)

    def check_file_identity(self) -> None:
        """Raise DatabaseReplaced when the SQLite file this service opened was deleted or replaced.

        SQLite keeps writing into an open file that was unlinked (its data vanish when the process ends),
        and a pooled connection opened later would use whatever file now has the name. A long-lived writer
        calls this on every heartbeat and stops. A no-op on PostgreSQL, in memory, and before the first
        connection (nothing was opened that could have been replaced).
        """
        path = self.database_file
        if path is None or self._file_identity is None:
            return
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            msg = (
                f"the database file {path} was deleted while this process was using it;"
                " stopping before writing into a file that no longer exists"
            )
            raise DatabaseReplaced(msg) from None
        if (stat.st_dev, stat.st_ino) != self._file_identity:
            msg = (
                f"the database file {path} was replaced by another file while this process was using it;"
                " stopping before writing to the wrong database"
            )
            raise DatabaseReplaced(msg)

    # ------------------------------------------------------------------ writes

    def _bulk_upsert(
        self, orm: type[Any], model: type[RecordT], records: Iterable[Any], conn: Connection | None
    ) -> UpsertResult:
        """Validate lazily and write DB_BATCH_SIZE rows at a time, all in one transaction.

        Memory stays flat however many records stream in, and an invalid record anywhere rolls the
        whole call back: nothing from a call that raised is written (a caller's dicts that break the
        schema are a bug to fix, not data to skip). Valid records the database refuses (a block hash
        stored at another height, a check or foreign key) or that contradict another record of their
        batch do not fail the call: the rest is written and they come back in `result.rejects`, with
        their reason, for the caller to count (the ingestors put them in the run's tally).
        """
        if conn is None:
            with self.transaction() as own:
                return self._bulk_upsert(orm, model, records, own)
        result = UpsertResult()
        validated = validate_records(model, records)
        while batch := list(islice(validated, self.batch_size)):
            result += upsert(conn, _SPECS[orm], batch)
        if result.rejects:
            logger.warning(
                "%s: %d records rejected (first: %s)",
                orm.__tablename__,
                result.rejected,
                result.rejects[0].reason,
            )
        return result

    def insert_blocks(self, blocks: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert blocks (models or dicts); pass `conn` to join the caller's transaction.

        A block whose hash is stored at another height, or claimed by another height of the same call's
        batch, is not written and comes back in `result.rejects` with the reason.
        """
        return self._bulk_upsert(BlockchainBlock, BlockchainBlockData, blocks, conn)

    def insert_transactions(
        self, transactions: Iterable[Any], *, conn: Connection | None = None
    ) -> UpsertResult:
        """Upsert transactions (models or dicts)."""
        return self._bulk_upsert(BlockchainTransaction, BlockchainTransactionData, transactions, conn)

    def insert_addresses(self, addresses: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert watched-address snapshots (models or dicts)."""
        return self._bulk_upsert(BlockchainAddress, BlockchainAddressData, addresses, conn)

    def insert_market_prices(self, prices: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Upsert daily prices (models or dicts)."""
        return self._bulk_upsert(MarketPrice, MarketPriceData, prices, conn)

    def upsert_coins(self, coins: Iterable[Any], *, conn: Connection | None = None) -> UpsertResult:
        """Add or change coins (models or dicts)."""
        return self._bulk_upsert(CoinMetadata, CoinMetadataData, coins, conn)

    # ------------------------------------------------------------------ reads

    def _select_models(self, statement: Any, model: type[RecordT]) -> list[RecordT]:
        with self.session() as session:
            return [model.model_validate(row) for row in session.scalars(statement)]

    def get_blocks(
        self,
        coin_symbol: str | None = None,
        start_date: date | datetime | None = None,
        end_date: date | datetime | None = None,
        limit: int | None = 100,
    ) -> list[BlockchainBlockData]:
        """Blocks, newest first, optionally for one coin and a time window (both ends inclusive)."""
        stmt = select(BlockchainBlock).order_by(BlockchainBlock.time.desc(), BlockchainBlock.block_id.desc())
        if coin_symbol:
            stmt = stmt.where(BlockchainBlock.coin_symbol == coin_symbol)
        if start_date is not None:
            stmt = stmt.where(BlockchainBlock.time >= _start_of(start_date))
        if isinstance(end_date, datetime):
            stmt = stmt.where(BlockchainBlock.time <= _as_aware(end_date))
        elif end_date is not None:
            stmt = stmt.where(BlockchainBlock.time < _start_of(end_date) + timedelta(days=1))
        return self._select_models(stmt.limit(limit), BlockchainBlockData)

    def get_transactions(
        self, coin_symbol: str | None = None, block_id: int | None = None, limit: int | None = 100
    ) -> list[BlockchainTransactionData]:
        """Transactions, newest block first, optionally for one coin and block."""
        stmt = select(BlockchainTransaction).order_by(
            BlockchainTransaction.block_id.desc(), BlockchainTransaction.source_id
        )
        if coin_symbol:
            stmt = stmt.where(BlockchainTransaction.coin_symbol == coin_symbol)
        if block_id is not None:
            stmt = stmt.where(BlockchainTransaction.block_id == block_id)
        return self._select_models(stmt.limit(limit), BlockchainTransactionData)

    def get_addresses(self, coin_symbol: str | None = None) -> list[BlockchainAddressData]:
        """Watched addresses with their last observed balances."""
        stmt = select(BlockchainAddress).order_by(BlockchainAddress.coin_symbol, BlockchainAddress.address)
        if coin_symbol:
            stmt = stmt.where(BlockchainAddress.coin_symbol == coin_symbol)
        return self._select_models(stmt, BlockchainAddressData)

    def get_market_prices(
        self,
        coin_id: str | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
        limit: int | None = 1000,
    ) -> list[MarketPriceData]:
        """Daily prices, newest first, optionally for one coin and an inclusive date range."""
        stmt = select(MarketPrice).order_by(MarketPrice.price_date.desc(), MarketPrice.coin_id)
        if coin_id:
            stmt = stmt.where(MarketPrice.coin_id == coin_id)
        if start_date is not None:
            stmt = stmt.where(MarketPrice.price_date >= start_date)
        if end_date is not None:
            stmt = stmt.where(MarketPrice.price_date <= end_date)
        return self._select_models(stmt.limit(limit), MarketPriceData)

    def get_ingestion_logs(
        self, source: str | None = None, status: str | None = None, limit: int | None = 100
    ) -> list[DataIngestionLogData]:
        """Ingestion runs, newest first."""
        stmt = select(DataIngestionLog).order_by(
            DataIngestionLog.started_at.desc(), DataIngestionLog.id.desc()
        )
        if source:
            stmt = stmt.where(DataIngestionLog.source == source)
        if status:
            stmt = stmt.where(DataIngestionLog.status == status)
        return self._select_models(stmt.limit(limit), DataIngestionLogData)

    def get_coins(self, *, active_only: bool = False) -> list[CoinMetadataData]:
        """Known coins; `active_only` keeps those that are active and enabled for ingestion."""
        stmt = select(CoinMetadata).order_by(CoinMetadata.symbol)
        if active_only:
            stmt = stmt.where(CoinMetadata.is_active.is_(True), CoinMetadata.ingestion_enabled.is_(True))
        return self._select_models(stmt, CoinMetadataData)

    # ------------------------------------------------------------------ stats and health

    def get_database_stats(self) -> DatabaseStats:
        """Row counts, coverage per coin and recent failures."""
        with self.session() as session:
            rows = {
                name: session.scalar(select(func.count()).select_from(orm)) or 0
                for name, orm in _TABLES.items()
            }
            blocks = session.execute(
                select(
                    BlockchainBlock.coin_symbol,
                    func.min(BlockchainBlock.block_id),
                    func.max(BlockchainBlock.block_id),
                    func.count(),
                ).group_by(BlockchainBlock.coin_symbol)
            ).all()
            prices = session.execute(
                select(
                    MarketPrice.coin_id,
                    func.min(MarketPrice.price_date),
                    func.max(MarketPrice.price_date),
                    func.count(),
                ).group_by(MarketPrice.coin_id)
            ).all()
            since = datetime.now(UTC) - timedelta(hours=24)
            failures = session.scalar(
                select(func.count())
                .select_from(DataIngestionLog)
                .where(DataIngestionLog.status == "failed", DataIngestionLog.started_at >= since)
            )
        return DatabaseStats(
            total_blocks=rows["blockchain_blocks"],
            total_transactions=rows["blockchain_transactions"],
            total_addresses=rows["blockchain_addresses"],
            total_prices=rows["market_prices"],
            total_runs=rows["data_ingestion_logs"],
            rows_per_table=rows,
            latest_block_by_coin={coin: high for coin, _low, high, _n in blocks},
            block_coverage=[
                HeightCoverage(coin_symbol=coin, min_height=low, max_height=high, blocks=n)
                for coin, low, high, n in blocks
            ],
            price_coverage=[
                DateCoverage(coin_id=coin, first_date=_as_date(first), last_date=_as_date(last), days=n)
                for coin, first, last, n in prices
            ],
            failures_last_24h=failures or 0,
            database_size_bytes=self.database_size_bytes(),
        )

    def database_size_bytes(self) -> int | None:
        """Size of the database on disk (file plus WAL for SQLite)."""
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if not database or database == ":memory:":
                return None
            paths = [Path(database), Path(f"{database}-wal")]
            return sum(p.stat().st_size for p in paths if p.exists())
        with self.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()

    def health_check(self) -> HealthStatus:
        """Ping the database; never raises. A SQLite file that does not exist yet is reported as a database
        without schema (the dashboard then says to run init-db) instead of being created by the ping."""
        started = time.perf_counter()
        try:
            missing = self.database_file is not None and not self.database_file.exists()
            revision = None if missing else self.schema_revision()
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure
            return HealthStatus(
                ok=False, dialect=self.dialect, latency_ms=_ms_since(started), error=type(exc).__name__
            )
        return HealthStatus(
            ok=True, dialect=self.dialect, latency_ms=_ms_since(started), schema_revision=revision
        )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _as_aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _start_of(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return _as_aware(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)


db_service: DatabaseService = LazyProxy(DatabaseService)  # type: ignore[assignment]
