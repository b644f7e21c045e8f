"""The connection core of the store: engines, URLs, driver errors, transactions, the database clock.

`DatabaseCore` holds what every store mixin needs (settings, the engine, `transaction()`, `session()`,
`db_now()`), so that the mixins of `DatabaseService` type `self` against it instead of importing the
facade back. Driver errors about the database itself (refused, lost, no such database, a damaged file) are
turned into one-line `DatabaseError`s without a password here, on the engine's `handle_error` event.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from pydantic import BaseModel
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

from pipeline.config import Settings, get_settings, is_in_memory, mask_url_password, parse_database_url
from pipeline.errors import (
    DatabaseCorrupt,
    DatabaseNotFound,
    DatabaseReplaced,
    DatabaseUnavailable,
    UnsupportedDatabase,
)
from pipeline.models import Base
from pipeline.ranges import utcnow

RecordT = TypeVar("RecordT", bound=BaseModel)


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


def first_line(error: BaseException) -> str:
    """The first line of an error's text (or its class name when it has none), for one-line messages."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def scrub(text: str, url: URL | None) -> str:
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
    reason = first_line(original)
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
        return DatabaseNotFound(scrub(msg, url))
    return DatabaseUnavailable(scrub(f"database unavailable: {reason}", url))


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
        # open transactions through `DatabaseCore.transaction`).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


class DatabaseCore:
    """Settings, engine, transactions and the database clock: the base every store mixin builds on."""

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

    # ------------------------------------------------------------------ transactions

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

    def _select_models(self, statement: Any, model: type[RecordT]) -> list[RecordT]:
        """Run an ORM select and return its rows as Pydantic models (never ORM objects)."""
        with self.session() as session:
            return [model.model_validate(row) for row in session.scalars(statement)]

    # ------------------------------------------------------------------ where and when

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

    def db_now(self, conn: Connection | None = None) -> datetime:
        """The time liveness, leases and timeouts are judged on: the database's clock, timezone-aware UTC.

        One clock: every timestamp the coordination statements write or compare (beats, leases, claims,
        cutoffs, the start of a run) comes from here, never from the writing process. Workers on several
        hosts share one PostgreSQL server but not a clock: a worker whose clock ran ahead would otherwise
        take every other worker for silent, and one whose clock lagged would itself look dead.

        PostgreSQL: the server's `now()`, i.e. the start of `conn`'s transaction (one value for every
        statement of that transaction; a new connection when none is given). SQLite has no server: every
        process that writes the file runs on the host that holds it (SQLite over a network file system is
        unsupported), so they all share that host's clock, and this is it.
        """
        if self.dialect != "postgresql":
            return utcnow()
        if conn is None:
            with self.engine.connect() as own:
                return self.db_now(own)
        return conn.execute(select(func.now())).scalar_one().astimezone(UTC)

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


def dialect_insert(conn: Connection, table: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """INSERT in the connection's dialect, for its ON CONFLICT clauses."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
